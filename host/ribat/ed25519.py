"""Ed25519 signatures (RFC 8032, section 5.1), the host's, in Python's integers.

The reference the node's (firmware/ribat/ed25519.py, machine-code field arithmetic) is
held to: the tests run this one under CPython and MicroPython against RFC 8032's test
vectors, and the node's against both. Points are extended homogeneous coordinates (X, Y,
Z, T) with x = X/Z, y = Y/Z, xy = T/Z (RFC 8032 5.1.4). Not constant-time: a pure-Python
big-integer implementation cannot be, and docs/security.md says what that means.
"""

from ribat import sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = 2 * _D % P
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
BASE = (_BX, _BY, 1, _BX * _BY % P)
_ZERO = (0, 1, 1, 0)
_WINDOW = 4  # bits per step of a scalar multiplication: 16 points kept, 64 additions


def _add(p: tuple, q: tuple) -> tuple:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * _D2 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p: tuple) -> tuple:
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _table(p: tuple) -> list:
    table = [_ZERO, p]
    for _ in range(2, 1 << _WINDOW):
        table.append(_add(table[-1], p))
    return table


def _mul(k: int, table: list) -> tuple:
    """k * p for 0 <= k < 2**256, given p's _table: a fixed window of _WINDOW bits a step."""
    q = _ZERO
    mask = (1 << _WINDOW) - 1
    for shift in range(256 - _WINDOW, -1, -_WINDOW):
        for _ in range(_WINDOW):
            q = _double(q)
        digit = (k >> shift) & mask
        if digit:
            q = _add(q, table[digit])
    return q


def _mul_base(k: int) -> tuple:
    # The base point's table is made afresh each time (14 additions against the 256
    # doublings of the multiplication): kept, it would hold 8 KB of a node's heap.
    return _mul(k, _table(BASE))


def _encode(p: tuple) -> bytes:
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s: bytes) -> "tuple | None":
    """The point encoded by s (RFC 8032 5.1.3), or None if s encodes none."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (_D * y * y + 1) % P
    v3 = v * v * v % P
    x = u * v3 * pow(u * v3 * v3 * v, (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx != u:
        if vxx != P - u:
            return None
        x = x * _SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(sha512.digest(b"".join(parts)), "little")


def _expand(secret: bytes) -> tuple:
    h = sha512.digest(secret)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(secret: bytes) -> bytes:
    """The 32-byte public key of a 32-byte secret key (its seed, in RFC 8032's words)."""
    return _encode(_mul_base(_expand(secret)[0]))


def sign(secret: bytes, message: bytes, public: "bytes | None" = None) -> bytes:
    """The 64-byte signature of message; public saves recomputing the public key."""
    a, prefix = _expand(secret)
    if public is None:
        public = _encode(_mul_base(a))
    r = _hash_int(prefix, message) % L
    big_r = _encode(_mul_base(r))
    k = _hash_int(big_r, public, message) % L
    s = (r + k * a) % L
    return big_r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True if signature is public's signature of message (RFC 8032 5.1.7, cofactorless)."""
    if len(signature) != 64:
        return False
    a = _decode(public)
    r = _decode(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = _hash_int(signature[:32], public, message) % L
    # [s]B = R + [k]A, checked as [s]B + [k](-A) == R
    neg_a = (P - a[0], a[1], a[2], P - a[3])
    q = _add(_mul_base(s), _mul(k, _table(neg_a)))
    return _encode(q) == signature[:32]
