"""Ed25519 signatures (RFC 8032, section 5.1) on the node, in machine-code field arithmetic.

Points are extended homogeneous coordinates [X, Y, Z, T] (x = X/Z, y = Y/Z, xy = T/Z; RFC
8032 5.1.4), lists of four fe25519 elements updated in place. A verification takes both
its scalar multiplications in one pass (Straus: their doublings shared). Not
constant-time (docs/security.md says what that means for a node). The host's ed25519
(host/ribat/ed25519.py) is the reference in Python's integers; the tests hold both to RFC
8032's vectors and to each other.
"""

from ribat import fe25519, sha512

P = fe25519.P
L = 2**252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_WINDOW = 4  # bits per step of a scalar multiplication: 16 points kept, 64 additions
# The comb's teeth (Lim and Lee): B, 2^64 B, 2^128 B and 2^192 B, in affine x, y. A
# multiple of B then takes 64 doublings, not 256 (tests/test_crypto.py checks these
# against the host's reference from B itself).
_TEETH = (
    (_BX, _BY),
    (
        44388040078108422381599858079345000847427885062711346041771517276226329616898,
        1423604317745427322790381226394774763053130405907994130724317794966956167955,
    ),
    (
        34445898214599204196824587830670445739267303633182408050117152659121903233060,
        43048524062920118298805915568484795959327268000798232147099016825120495085163,
    ),
    (
        12565258097955692523285632157940150666933275725759344066053586092157591802509,
        44257820073692905562487031197842487206011716534849741297988353661581996935219,
    ),
)


class _Work:
    """The temporaries of the point formulas, made once an operation."""

    def __init__(self) -> None:
        self.t = [bytearray(32) for _ in range(8)]
        self.d2 = fe25519.element(2 * _D)


def _point(x: int, y: int) -> list:
    return [fe25519.element(x), fe25519.element(y), fe25519.element(1), fe25519.element(x * y)]


def _zero() -> list:
    return _point(0, 1)


def _add(o: list, p: list, q: list, w: _Work) -> None:
    """o = p + q (o may be p or q)."""
    add, sub, mul, r = fe25519.add, fe25519.sub, fe25519.mul, fe25519.R
    a, b, c, d, e, f, g, h = w.t
    sub(a, p[1], p[0])
    sub(h, q[1], q[0])
    mul(a, a, h, r)
    add(b, p[1], p[0])
    add(h, q[1], q[0])
    mul(b, b, h, r)
    mul(c, p[3], w.d2, r)
    mul(c, c, q[3], r)
    mul(d, p[2], q[2], r)
    add(d, d, d)
    sub(e, b, a)
    sub(f, d, c)
    add(g, d, c)
    add(h, b, a)
    mul(o[0], e, f, r)
    mul(o[1], g, h, r)
    mul(o[2], f, g, r)
    mul(o[3], e, h, r)


def _double(o: list, p: list, w: _Work) -> None:
    """o = 2p (o may be p)."""
    add, sub, mul, r = fe25519.add, fe25519.sub, fe25519.mul, fe25519.R
    a, b, c, e, f, g, h, _ = w.t
    mul(a, p[0], p[0], r)
    mul(b, p[1], p[1], r)
    mul(c, p[2], p[2], r)
    add(c, c, c)
    add(h, a, b)
    add(e, p[0], p[1])
    mul(e, e, e, r)
    sub(e, h, e)
    sub(g, a, b)
    add(f, c, g)
    mul(o[0], e, f, r)
    mul(o[1], g, h, r)
    mul(o[2], f, g, r)
    mul(o[3], e, h, r)


def _table(p: list, w: _Work) -> list:
    table = [_zero(), p]
    for _ in range(2, 1 << _WINDOW):
        q = [bytearray(32) for _ in range(4)]
        _add(q, table[-1], p, w)
        table.append(q)
    return table


def _mul(scalars: tuple, tables: tuple, w: _Work) -> list:
    """The sum of k * p for each scalar k (0 <= k < 2**256) and p's _table: a fixed
    window of _WINDOW bits a step, the doublings shared by all."""
    q = _zero()
    mask = (1 << _WINDOW) - 1
    for shift in range(256 - _WINDOW, -1, -_WINDOW):
        for _ in range(_WINDOW):
            _double(q, q, w)
        for k, table in zip(scalars, tables):
            digit = (k >> shift) & mask
            if digit:
                _add(q, q, table[digit], w)
    return q


def _comb(w: _Work) -> list:
    """The 16 sums of the teeth: entry d holds the teeth whose bits d has (bit 0 B)."""
    table = [_zero()]
    for x, y in _TEETH:
        tooth = _point(x, y)
        n = len(table)
        table.append(tooth)
        for i in range(1, n):
            q = [bytearray(32) for _ in range(4)]
            _add(q, table[i], tooth, w)
            table.append(q)
    return table


def _mul_base(k: int, w: _Work) -> list:
    """k * B (0 <= k < 2**256), a comb: bit j of each quarter of k picks a sum of teeth,
    64 doublings and 64 additions; the table is made afresh (11 additions): kept, it
    would hold 3 KB of a node's heap. A signature's [r]B took 256 doublings before."""
    table = _comb(w)
    b = k.to_bytes(32, "little")
    q = _zero()
    for j in range(63, -1, -1):
        _double(q, q, w)
        at, bit = j >> 3, j & 7
        d = (b[at] >> bit) & 1
        d |= ((b[at + 8] >> bit) & 1) << 1
        d |= ((b[at + 16] >> bit) & 1) << 2
        d |= ((b[at + 24] >> bit) & 1) << 3
        if d:
            _add(q, q, table[d], w)
    return q


def _encode(p: list) -> bytes:
    zi = bytearray(32)
    fe25519.invert(zi, p[2])
    x, y = bytearray(32), bytearray(32)
    fe25519.mul(x, p[0], zi, fe25519.R)
    fe25519.mul(y, p[1], zi, fe25519.R)
    return (fe25519.value(y) | ((fe25519.value(x) & 1) << 255)).to_bytes(32, "little")


def _decode(s: bytes) -> "list | None":
    """The point encoded by s (RFC 8032 5.1.3), or None if s encodes none."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    mul, r = fe25519.mul, fe25519.R
    fy = fe25519.element(y)
    u, v, t, x = bytearray(32), bytearray(32), bytearray(32), bytearray(32)
    mul(u, fy, fy, r)
    mul(v, u, fe25519.element(_D), r)
    fe25519.sub(u, u, fe25519.element(1))  # u = y^2 - 1
    fe25519.add(v, v, fe25519.element(1))  # v = d y^2 + 1
    mul(t, v, v, r)
    mul(t, t, v, r)  # v^3
    mul(x, t, t, r)
    mul(x, x, v, r)
    mul(x, x, u, r)  # u v^7
    fe25519.pow_p58(x, x)
    mul(x, x, t, r)
    mul(x, x, u, r)  # x = u v^3 (u v^7)^((p-5)/8)
    mul(t, x, x, r)
    mul(t, t, v, r)  # v x^2
    vxx, fu = fe25519.value(t), fe25519.value(u)
    xi = fe25519.value(x)
    if vxx != fu:
        if vxx != (P - fu) % P:
            return None
        xi = xi * _SQRT_M1 % P
    if xi == 0 and sign:
        return None
    if xi & 1 != sign:
        xi = P - xi
    return _point(xi, y)


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
    return _encode(_mul_base(_expand(secret)[0], _Work()))


def sign(secret: bytes, message: bytes, public: "bytes | None" = None) -> bytes:
    """The 64-byte signature of message; public saves recomputing the public key."""
    w = _Work()
    a, prefix = _expand(secret)
    if public is None:
        public = _encode(_mul_base(a, w))
    r = _hash_int(prefix, message) % L
    big_r = _encode(_mul_base(r, w))
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
    fe25519.sub(a[0], bytearray(32), a[0])
    fe25519.sub(a[3], bytearray(32), a[3])
    w = _Work()
    q = _mul((s, k), (_table(_point(_BX, _BY), w), _table(a, w)), w)
    return _encode(q) == signature[:32]
