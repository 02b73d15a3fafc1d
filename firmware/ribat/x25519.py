"""X25519 key agreement (RFC 7748, section 5) on the node, in machine-code field arithmetic.

The Montgomery ladder of section 5 over fe25519's elements, updated in place; its
conditional swaps written as branches: not constant-time (see docs/security.md). The
host's x25519 (host/ribat/x25519.py) is the reference in Python's integers; the tests
hold both to RFC 7748's vectors and to each other.
"""

from ribat import fe25519

BASE = (9).to_bytes(32, "little")


def x25519(k: bytes, u: bytes) -> bytes:
    """The 32-byte shared value of scalar k and the point with u-coordinate u."""
    if len(k) != 32 or len(u) != 32:
        raise ValueError("X25519 takes 32-byte scalars and points")
    add, sub, mul, r = fe25519.add, fe25519.sub, fe25519.mul, fe25519.R
    scalar = bytearray(k)  # clamped (RFC 7748 5), its bits read one at a time
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    x1 = bytearray(u)
    x1[31] &= 127
    x2, z2, x3, z3 = fe25519.element(1), bytearray(32), bytearray(x1), fe25519.element(1)
    a, aa, b, bb, e, c, d, da, cb = [bytearray(32) for _ in range(9)]
    a24 = fe25519.element(121665)
    swap = 0
    for t in range(254, -1, -1):
        bit = (scalar[t >> 3] >> (t & 7)) & 1
        if swap ^ bit:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        add(a, x2, z2)
        mul(aa, a, a, r)
        sub(b, x2, z2)
        mul(bb, b, b, r)
        sub(e, aa, bb)
        add(c, x3, z3)
        sub(d, x3, z3)
        mul(da, d, a, r)
        mul(cb, c, b, r)
        add(x3, da, cb)
        mul(x3, x3, x3, r)
        sub(z3, da, cb)
        mul(z3, z3, z3, r)
        mul(z3, z3, x1, r)
        mul(x2, aa, bb, r)
        mul(z2, e, a24, r)
        add(z2, z2, aa)
        mul(z2, z2, e, r)
    if swap:
        x2, z2 = x3, z3
    fe25519.invert(z2, z2)
    mul(x2, x2, z2, r)
    return fe25519.encode(x2)


def public_key(secret: bytes) -> bytes:
    return x25519(secret, BASE)
