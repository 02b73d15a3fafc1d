"""HMAC-SHA256 (RFC 2104), HKDF-SHA256 (RFC 5869) and PBKDF2-HMAC-SHA256 (RFC 8018), over
the platform's hashlib.sha256 (C on every MicroPython port; MicroPython has no hmac).

Shared by node and host (symlink host/ribat/kdf.py), tested on MicroPython and CPython
against RFC 4231, RFC 5869 and RFC 7914's vectors. No I/O.
"""

from hashlib import sha256

_BLOCK = 64


def _pads(key: bytes) -> tuple:
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _hmac_pads(inner: bytes, outer: bytes, message: bytes, more: "tuple" = ()) -> bytes:
    h = sha256(inner)
    h.update(message)
    for part in more:
        h.update(part)
    o = sha256(outer)
    o.update(h.digest())
    return o.digest()


def hmac(key: bytes, message: bytes, *more: bytes) -> bytes:
    """HMAC-SHA256 under key of message and the parts after it, as one: 32 bytes."""
    inner, outer = _pads(key)
    return _hmac_pads(inner, outer, message, more)


def equal(a: bytes, b: bytes) -> bool:
    """a == b in a time that does not depend on where they first differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256: extract from ikm with salt, expand to length bytes bound to info."""
    prk = hmac(salt or bytes(32), ikm)
    inner, outer = _pads(prk)
    out = b""
    block = b""
    n = 1
    while len(out) < length:
        block = _hmac_pads(inner, outer, block + info + bytes((n,)))
        out += block
        n += 1
    return out[:length]


def pbkdf2(password: bytes, salt: bytes, iterations: int, length: int = 32, tick=None) -> bytes:
    """PBKDF2-HMAC-SHA256 (RFC 8018 5.2): length bytes from password and salt. tick(), if
    given, is called every 512 iterations (a node feeds its watchdog: on an RP2040 a PIN
    check outlasts the watchdog's 8 s)."""
    inner, outer = _pads(password)
    out = b""
    n = 1
    while len(out) < length:
        u = _hmac_pads(inner, outer, salt + n.to_bytes(4, "big"))
        acc = int.from_bytes(u, "big")
        for i in range(iterations - 1):
            u = _hmac_pads(inner, outer, u)
            acc ^= int.from_bytes(u, "big")
            if tick is not None and i & 511 == 511:
                tick()
        out += acc.to_bytes(32, "big")
        n += 1
    return out[:length]
