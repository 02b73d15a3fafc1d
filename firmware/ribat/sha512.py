"""SHA-512 (FIPS 180-4), which Ed25519 needs and MicroPython's hashlib lacks.

Shared by node and host (symlink host/ribat/sha512.py). digest() uses the platform's
hashlib.sha512 where it exists (CPython), and under MicroPython compresses the blocks in
machine code (sha512block.py: 46 times as fast on an RP2040, bench/chip.py); the
implementation here, in Python's integers, is the reference: the tests run it on both
interpreters against FIPS 180-4's examples, and hold the machine code to it. No I/O.
"""

# (imported here, not where used: each time a function imports a built-in module,
# MicroPython looks on the filesystem for one that extends it, 25 ms on an RP2040)
import struct
from array import array

_M = 0xFFFFFFFFFFFFFFFF

# FIPS 180-4 4.2.3: the first 64 bits of the fractional parts of the cube roots of the
# first eighty primes.
_K = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)  # fmt: skip

_H0 = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)  # fmt: skip


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & _M


# The message schedule, made once: a fresh 80-entry list per block is a 1 KB contiguous
# allocation that a fragmented node heap may not have, though it has the bytes free.
_W = [0] * 80


def _compress(h: list, block: bytes) -> None:
    w = _W
    for t in range(16):
        w[t] = int.from_bytes(block[t * 8 : t * 8 + 8], "big")
    for t in range(16, 80):
        x, y = w[t - 15], w[t - 2]
        s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
        s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & _M
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        s1 = _rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)
        t1 = hh + s1 + ((e & f) ^ (~e & g)) + _K[t] + w[t]
        t2 = (_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))
        hh, g, f, e = g, f, e, (d + t1) & _M
        d, c, b, a = c, b, a, (t1 + t2) & _M
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _M


def pure_digest(data: bytes) -> bytes:
    """SHA-512 of data, computed here (for the tests, and where hashlib has none)."""
    padded = _padded(data)
    h = list(_H0)
    for i in range(0, len(padded), 128):
        _compress(h, padded[i : i + 128])
    return struct.pack(">8Q", *h)


def _padded(data: bytes) -> bytes:
    n = len(data)
    return bytes(data) + b"\x80" + bytes((111 - n) % 128) + struct.pack(">QQ", 0, n * 8)


def _machine_digest(data: bytes) -> bytes:
    """SHA-512 of data, its blocks compressed by sha512block's machine code (the node's)."""
    from ribat import sha512block  # type: ignore[attr-defined,unused-ignore]

    if not _WORDS:  # the constants as sha512block reads them (32-bit words, high first)
        k32 = array("I", bytes(640))
        for i, k in enumerate(_K):
            k32[2 * i], k32[2 * i + 1] = k >> 32, k & 0xFFFFFFFF
        _WORDS.append(k32)
        _WORDS.append(array("I", bytes(640)))  # the message schedule's room
    h = array("I", bytes(64))
    for i, v in enumerate(_H0):
        h[2 * i], h[2 * i + 1] = v >> 32, v & 0xFFFFFFFF
    padded = memoryview(_padded(data))
    for i in range(0, len(padded), 128):
        sha512block.compress(h, padded[i : i + 128], _WORDS[1], _WORDS[0])
    return struct.pack(">16I", *h)


_WORDS: list = []  # made at the first digest

try:
    # CPython has it; MicroPython ports do not
    from hashlib import sha512 as _native  # type: ignore[attr-defined,unused-ignore]

    def digest(data: bytes) -> bytes:
        return _native(data).digest()

except ImportError:
    try:
        import micropython  # noqa: F401  (viper: sha512block compiles)

        digest = _machine_digest
    except ImportError:
        digest = pure_digest
