"""Arithmetic modulo p = 2**255 - 19 in machine code, for the node's X25519 and Ed25519.

A field element is a 32-byte bytearray: sixteen 16-bit limbs, little-endian, whose value
is below 2**256 but not always below p (a carry out of the top limb is folded back in as
38, since 2**256 = 38 mod p; encode() reduces fully). add, sub and mul write their result
into their first argument, which may also be one of the others, and allocate nothing: a
scalar multiplication makes thousands of them, and on a node each allocation costs a
collection sooner. mul takes the scratch buffer R as its last argument.

MicroPython compiles the functions marked @micropython.viper to machine code on every
port. On an ARM Thumb chip mul is fe25519_thumb's, written in the chip's instructions:
viper's code for a multiply-accumulate takes some 55 cycles on a Cortex-M0+ (it keeps
most of its variables on the stack), and mul is where the time goes: the hand-written
one is four times as fast (measured on the emulated RP2040: bench/chip.py). The
reference, in Python's integers, is the host's (host/ribat/x25519.py, ed25519.py): the
tests hold both to RFC 7748's and RFC 8032's vectors and to each other.
"""

import micropython

_TYPES = False
if _TYPES:  # the checker's view of them: viper reads the buffers it takes as ptr16
    from typing import Callable

    _Op = Callable[[bytearray, bytearray, bytearray], None]
    _Mul = Callable[[bytearray, bytearray, bytearray, bytearray], None]

P = 2**255 - 19
# (The carry fold is written out in each function: a call out of viper code goes through
# the interpreter, and the fold runs in most calls.)
R = bytearray(64)  # mul's scratch: a product's 32 limbs before reduction


@micropython.viper
def _add(o: ptr16, a: ptr16, b: ptr16):
    c = uint(0)
    i = 0
    while i < 16:
        c += uint(a[i]) + uint(b[i])
        o[i] = c
        c >>= 16
        i += 1
    while c:  # 2**256 is 38 mod p (twice at most: the second can no longer carry)
        c *= 38
        i = 0
        while i < 16:
            c += uint(o[i])
            o[i] = c
            c >>= 16
            i += 1


@micropython.viper
def _sub(o: ptr16, a: ptr16, b: ptr16):
    c = 0  # signed: a borrow is -1, and >> keeps the sign
    i = 0
    while i < 16:
        c += int(a[i]) - int(b[i])
        o[i] = c
        c >>= 16
        i += 1
    while c:  # a borrow of 2**256 is one of 38 (twice at most, as in add)
        c *= 38
        i = 0
        while i < 16:
            c += int(o[i])
            o[i] = c
            c >>= 16
            i += 1


@micropython.viper
def _mul(o: ptr16, a: ptr16, b: ptr16, r: ptr16):
    # Product scanning: column k sums a[i] * b[k - i]. Each product fits 32 bits, not
    # two of them, so their low and high halves are summed apart (a 32-bit machine has
    # no wider accumulator); the column's low 16 bits are its limb, the rest carries.
    lo = uint(0)
    hi = uint(0)
    k = 0
    while k < 31:
        i = 0
        if k > 15:
            i = k - 15
        end = k
        if k > 15:
            end = 15
        while i <= end:
            x = uint(a[i]) * uint(b[k - i])
            lo += x & 0xFFFF
            hi += x >> 16
            i += 1
        r[k] = lo
        lo = (lo >> 16) + hi
        hi = uint(0)
        k += 1
    r[31] = lo
    # the high 16 limbs are worth 38 times as much in the low ones
    c = uint(0)
    i = 0
    while i < 16:
        c += uint(r[i]) + uint(r[i + 16]) * 38
        o[i] = c
        c >>= 16
        i += 1
    while c:
        c *= 38
        i = 0
        while i < 16:
            c += uint(o[i])
            o[i] = c
            c >>= 16
            i += 1


add: "_Op" = _add  # type: ignore[assignment]
sub: "_Op" = _sub  # type: ignore[assignment]
mul: "_Mul" = _mul  # type: ignore[assignment]
try:
    from ribat.fe25519_thumb import mul  # an ARM Thumb chip: see the docstring
except (ImportError, SyntaxError):  # (a port without Thumb's assembler cannot compile it)
    pass


def element(n: int) -> bytearray:
    return bytearray((n % P).to_bytes(32, "little"))


def value(a: bytearray) -> int:
    return int.from_bytes(a, "little") % P


def encode(a: bytearray) -> bytes:
    """a's 32-byte little-endian encoding, fully reduced."""
    return value(a).to_bytes(32, "little")


def square(o: bytearray, a: bytearray, n: int) -> None:
    """o = a ** (2 ** n), n >= 1."""
    mul(o, a, a, R)
    for _ in range(n - 1):
        mul(o, o, o, R)


def _pow_2_250_1(z: bytearray) -> tuple:
    """z ** (2**250 - 1) and z ** 11: the chain both inversion and square root start with
    (ref10's, as in RFC 7748 and 8032's references): 250 squarings, 11 multiplications."""
    t0, t1, t2, z11 = bytearray(32), bytearray(32), bytearray(32), bytearray(32)
    square(t0, z, 1)  # z^2
    square(t1, t0, 2)  # z^8
    mul(t1, t1, z, R)  # z^9
    mul(z11, t1, t0, R)  # z^11
    square(t0, z11, 1)  # z^22
    mul(t0, t0, t1, R)  # z^(2^5 - 1)
    square(t1, t0, 5)
    mul(t0, t1, t0, R)  # z^(2^10 - 1)
    square(t1, t0, 10)
    mul(t1, t1, t0, R)  # z^(2^20 - 1)
    square(t2, t1, 20)
    mul(t1, t2, t1, R)  # z^(2^40 - 1)
    square(t1, t1, 10)
    mul(t0, t1, t0, R)  # z^(2^50 - 1)
    square(t1, t0, 50)
    mul(t1, t1, t0, R)  # z^(2^100 - 1)
    square(t2, t1, 100)
    mul(t1, t2, t1, R)  # z^(2^200 - 1)
    square(t1, t1, 50)
    mul(t0, t1, t0, R)  # z^(2^250 - 1)
    return t0, z11


def invert(o: bytearray, z: bytearray) -> None:
    """o = 1 / z (z ** (p - 2), p - 2 = 2**255 - 21); 0 for 0."""
    t, z11 = _pow_2_250_1(z)
    square(t, t, 5)
    mul(o, t, z11, R)


def pow_p58(o: bytearray, z: bytearray) -> None:
    """o = z ** ((p - 5) / 8), that is z ** (2**252 - 3): RFC 8032's square root needs it."""
    t, _ = _pow_2_250_1(z)
    square(t, t, 2)
    mul(o, t, z, R)
