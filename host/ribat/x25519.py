"""X25519 key agreement (RFC 7748, section 5), the host's, in Python's integers.

The reference the node's (firmware/ribat/x25519.py, machine-code field arithmetic) is
held to: the tests run this one under CPython and MicroPython against RFC 7748's test
vectors, and the node's against both. The Montgomery ladder of section 5 with its
conditional swaps written as branches: not constant-time (see docs/security.md).
"""

P = 2**255 - 19
_A24 = 121665
BASE = (9).to_bytes(32, "little")


def _clamp(k: bytes) -> int:
    n = int.from_bytes(k, "little")
    n &= (1 << 254) - 8
    return n | (1 << 254)


def x25519(k: bytes, u: bytes) -> bytes:
    """The 32-byte shared value of scalar k and the point with u-coordinate u."""
    if len(k) != 32 or len(u) != 32:
        raise ValueError("X25519 takes 32-byte scalars and points")
    scalar = _clamp(k)
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in range(254, -1, -1):
        bit = (scalar >> t) & 1
        if swap ^ bit:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a = x2 + z2
        aa = a * a % P
        b = x2 - z2
        bb = b * b % P
        e = aa - bb
        c = x3 + z3
        d = x3 - z3
        da = d * a % P
        cb = c * b % P
        s = da + cb
        x3 = s * s % P
        s = da - cb
        z3 = x1 * (s * s) % P
        x2 = aa * bb % P
        z2 = e * (aa + _A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def public_key(secret: bytes) -> bytes:
    return x25519(secret, BASE)
