"""The pairwise keys of an unlocked session: derived one at a time in the background
(X25519 then HKDF), and the key that wraps a bulletin's content key for each reader.
Loaded while the node is unlocked; dropped at the lock (keys.unload_crypto).
"""

from binascii import hexlify, unhexlify

from ribat import kdf, keys


def curve():
    """X25519, loaded for the agreement at hand (some 2 KB of heap): derive_next_pair drops
    it once a session has every pairwise key (a Pico W's session needs the room)."""
    from ribat import x25519

    return x25519


def derive_next_pair(keyring) -> bool:
    """Derive one missing pairwise key (X25519 then HKDF); False if none is missing.
    One at a time, so the event loop keeps running between them."""
    if keyring._secrets is None or keyring.roster is None or keyring.identity is None:
        return False
    mine = keyring.identity["fp"]
    for member in keyring.roster["members"]:
        if member["fp"] != mine and member["fp"] not in keyring.pairs:
            _derive_pair(keyring, member)
            return True
    keys.unload("x25519")  # every pair derived: a session has no use for the curve now
    return False


def _derive_pair(keyring, member: dict) -> "bytes | None":
    fp = member["fp"]
    mine = keyring.identity["fp"]
    shared: bytes = keys.sparing_gc(  # type: ignore[assignment]
        curve().x25519, keyring._secrets[1], unhexlify(member["kx"])
    )
    key = None
    if shared != bytes(32):  # a low-order point gives no key to agree on
        cell = keyring.cell() or ""
        ends = mine + fp if mine < fp else fp + mine
        key = kdf.hkdf(shared, cell.encode(), b"ribat-pair v1 " + ends.encode(), 32)
    keyring.pairs[fp] = key
    return key


def content_key(keyring, fp: str) -> "bytes | None":
    """The key that wraps bulletin content keys between this node and node fp: their
    pairwise key, or for this node itself a key of its own; None for a node outside the
    roster (or one with a degenerate agreement key)."""
    assert keyring._secrets is not None and keyring.identity is not None
    if fp == keyring.identity["fp"]:
        return kdf.hkdf(keyring._secrets[1], b"", b"ribat-self v1", 32)
    if fp in keyring.pairs:
        return keyring.pairs[fp]
    for member in keyring.roster["members"] if keyring.roster else ():
        if member["fp"] == fp:
            return _derive_pair(keyring, member)
    return None


def pair_check(key: bytes) -> str:
    """A check value two nodes can compare to show they hold the same pairwise key,
    without showing the key (as key check values do for HSMs)."""
    return hexlify(kdf.hmac(key, b"ribat-pair-check")[:4]).decode()
