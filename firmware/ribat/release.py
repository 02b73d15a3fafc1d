"""Release bundles: what a signed update is made of, and when a node takes one.

A bundle is one file for a whole cell (the host writes it: ribat.deploy.bundle):

    b"RBUN", u32 header length (big-endian), the header, then one firmware pack per target

The header is a signed document (ribat.signed, kind "release") with the signer's public
key beside it: {"body": "<manifest JSON>", "sig": "<hex>", "key": "<hex>"}, and the
manifest is

    {"release": 1, "firmware": "X.Y.Z", "min_version": "X.Y.Z", "revision": ..., "t": ...,
     "targets": [{"board", "mpy", "build", "size", "sha256"}...]}

the packs following the header in the targets' order. A node gets the header and its own
target's pack only; the signature covers every pack's hash, so one signature serves all.

Shared by node and host (symlink host/ribat/release.py); no I/O.
"""

KIND = "release"  # the signed documents' kind (ribat.signed)
MAGIC = b"RBUN"
FORMAT = 1


def version(text: object) -> "tuple | None":
    """ "X.Y.Z" (one to three numbers) as a tuple to compare; None if it is not one."""
    if not isinstance(text, str) or not 0 < len(text) <= 20:
        return None
    parts = text.split(".")
    if len(parts) > 3:
        return None
    out = []
    for p in parts:
        if not p.isdigit() or len(p) > 5:
            return None
        out.append(int(p))
    while len(out) < 3:
        out.append(0)
    return tuple(out)


def target(body: dict, board: object, mpy: object) -> "dict | None":
    """The manifest's target for this board and .mpy format ("6.3"), or None."""
    targets = body.get("targets")
    for t in targets if isinstance(targets, list) else ():
        if isinstance(t, dict) and t.get("board") == board and t.get("mpy") == mpy:
            return t
    return None


def refusal(
    body: dict, board: object, mpy: object, running: object, floor: object
) -> "str | None":
    """Why a node (its board, .mpy format, the version it runs, the highest version it
    ever confirmed) must not take this release; None if it may (its signature apart)."""
    if body.get("release") != FORMAT:
        return "not a release this firmware reads (format %r)" % (body.get("release"),)
    new = version(body.get("firmware"))
    if new is None:
        return "the release names no version"
    t = target(body, board, mpy)
    if t is None:
        return "release %s has no build for board %s with .mpy v%s" % (
            body["firmware"],
            board,
            mpy,
        )
    if not isinstance(t.get("size"), int) or not isinstance(t.get("sha256"), str):
        return "release %s: its %s build has no size or hash" % (body["firmware"], board)
    for what, have in (("running", running), ("has confirmed", floor)):
        old = version(have)
        if old is not None and new <= old:
            return "release %s is not newer than %s, which this node %s: it never goes back" % (
                body["firmware"],
                have,
                what,
            )
    least = version(body.get("min_version"))
    now = version(running)
    if least is not None and now is not None and now < least:
        return "release %s replaces %s or later; this node runs %s: update it to %s first" % (
            body["firmware"],
            body["min_version"],
            running,
            body["min_version"],
        )
    return None
