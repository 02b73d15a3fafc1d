"""A request sent as a session's (ribat.session): loaded when the first one comes, which is
in an unlocked session, or from a host that thinks it is in one."""

import binascii
import json

from ribat import codec, kdf, session
from ribat.link import RequestError


def unwrap(keyring, meta: dict, data: bytes) -> dict:
    """The arguments of a request sent as a session's (ribat.session): a JSON text "a",
    its number "n" and "mac". With the right MAC and a number past the last one taken, the
    request is the session's (keyring.authentic); a wrong one is refused, and counted.
    With no session open here (locked, restarted), it is taken as any request is."""
    # taken out of the frame's meta: parsed below, a large text (a post's body) is not
    # held twice for the whole request
    op, text, n, tag = meta.get("op"), meta.pop("a"), meta.get("n"), meta.get("mac")
    if not (isinstance(op, str) and isinstance(text, str) and isinstance(n, int)) or not (
        isinstance(tag, str)
    ):
        raise RequestError(codec.ARGS, "a session request carries 'op', 'a', 'n' and 'mac'")
    try:
        args = json.loads(text)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise RequestError(codec.ARGS, "'a' must be a JSON object")
    args["op"] = op
    key = keyring.session_key
    if key is None:
        return args
    try:
        good = kdf.equal(session.mac(key, n, op, text, data), binascii.unhexlify(tag))
    except ValueError:
        good = False
    if not good or n <= keyring.session_n:
        raise RequestError(
            codec.AUTH,
            "request %d is not the session's next: replayed, reordered or altered" % n,
        )
    keyring.session_n = n
    keyring.authentic = True
    return args
