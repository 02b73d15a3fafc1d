"""Signed documents: a JSON body, kept as the exact string that was signed, and an Ed25519
signature over a prefix naming its kind and version, then that string.

    {"body": "<JSON text>", "sig": "<128 hex digits>"}

The prefix ("ribat-roster v1\\n", "ribat-identity v1\\n"...) keeps a signature made for one
kind of document from being accepted as another. Verifying the exact string, not a
re-encoding, spares both interpreters a canonical JSON. Shared by node and host (symlink
host/ribat/signed.py); no I/O.
"""

import json
from binascii import hexlify, unhexlify
from hashlib import sha256

IDENTITY = "identity"
ROSTER = "roster"
CHECKPOINT = "audit-checkpoint"


def _message(kind: str, body: str) -> bytes:
    return b"ribat-" + kind.encode() + b" v1\n" + body.encode()


def sign(kind: str, body: dict, secret: bytes, public: bytes) -> dict:
    from ribat import ed25519  # here: a node that signs nothing keeps it out of its heap

    text = json.dumps(body)
    sig = ed25519.sign(secret, _message(kind, text), public)
    return {"body": text, "sig": hexlify(sig).decode()}


def verify(kind: str, doc: object, public: bytes) -> "dict | None":
    """The body of doc if public signed it as kind; None if it is not such a document."""
    if not isinstance(doc, dict):
        return None
    text, sig = doc.get("body"), doc.get("sig")
    if not isinstance(text, str) or not isinstance(sig, str) or len(sig) != 128:
        return None
    try:
        raw = unhexlify(sig)
    except ValueError:
        return None
    from ribat import ed25519

    if not ed25519.verify(public, _message(kind, text), raw):
        return None
    return json_object(text)


def json_object(text: object) -> "dict | None":
    """The JSON object in text; None if text holds something else, or no JSON."""
    try:
        value = json.loads(text)  # type: ignore[arg-type, type-var, unused-ignore]
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def body_of(doc: object) -> "dict | None":
    """doc's body without checking its signature (to find out who claims to have signed)."""
    return json_object(doc.get("body")) if isinstance(doc, dict) else None


def fingerprint(sign_public: bytes, kx_public: bytes = b"") -> str:
    """A node's or an authority's short name for its public keys: 64 bits of SHA-256, in
    four groups a person can read out over the phone."""
    h = hexlify(sha256(sign_public + kx_public).digest()[:8]).decode()
    return "-".join(h[i : i + 4] for i in range(0, 16, 4))
