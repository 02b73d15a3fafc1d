"""SHA-512's compression function (FIPS 180-4 6.4.2) in machine code, for the node.

MicroPython compiles it with viper on every port; sha512.py uses it where `micropython`
exists and keeps its own, in Python's integers, as the reference the tests hold it to. A
64-bit word is two 32-bit ones, high then low (the machine's words: an RP2040's are 32
bits, and viper has no wider integer there); a sum of 64-bit words adds the low words in
16-bit halves, so that their carry into the high word is never lost, and the high words
wrap; each sum is written out where it is made (a call out of viper code goes through the
interpreter, and a block makes some 500 of them). Values are masked to 32 bits where a
wider machine (the unix port's) would keep more.
"""

import micropython

_TYPES = False
if _TYPES:  # the checker's view: viper reads the buffers it takes as ptr32 and ptr8
    from typing import Any, Callable

    _Compress = Callable[[Any, Any, Any, Any], None]


@micropython.viper
def _compress(h: ptr32, block: ptr8, w: ptr32, k: ptr32):
    """h (16 words: 8 of 64 bits) updated with one 128-byte block; w: 160 words of room."""
    m = uint(0xFFFFFFFF)
    t = 0
    while t < 32:
        j = t << 2
        w[t] = (
            (uint(block[j]) << 24)
            | (uint(block[j + 1]) << 16)
            | (uint(block[j + 2]) << 8)
            | uint(block[j + 3])
        )
        t += 1
    t = 16
    while t < 80:
        i = (t - 15) << 1
        xh = uint(w[i])
        xl = uint(w[i + 1])
        s0h = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
        s0l = (((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))) & m
        i = (t - 2) << 1
        xh = uint(w[i])
        xl = uint(w[i + 1])
        s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
        s1l = (((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))) & m
        a = (t - 16) << 1
        b = (t - 7) << 1
        x = uint(w[a + 1])
        y = uint(w[b + 1])
        lo = (x & 0xFFFF) + (s0l & 0xFFFF) + (y & 0xFFFF) + (s1l & 0xFFFF)
        hi = (x >> 16) + (s0l >> 16) + (y >> 16) + (s1l >> 16) + (lo >> 16)
        i = t << 1
        w[i + 1] = (hi << 16) | (lo & 0xFFFF)
        w[i] = uint(w[a]) + s0h + uint(w[b]) + s1h + (hi >> 16)
        t += 1
    ah = uint(h[0])
    al = uint(h[1])
    bh = uint(h[2])
    bl = uint(h[3])
    ch = uint(h[4])
    cl = uint(h[5])
    dh = uint(h[6])
    dl = uint(h[7])
    eh = uint(h[8])
    el = uint(h[9])
    fh = uint(h[10])
    fl = uint(h[11])
    gh = uint(h[12])
    gl = uint(h[13])
    hh = uint(h[14])
    hl = uint(h[15])
    t = 0
    while t < 80:
        i = t << 1
        s1h = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
        s1l = (
            ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
        ) & m
        x = (el & fl) ^ ((el ^ m) & gl)  # Ch, low
        y = uint(k[i + 1])
        z = uint(w[i + 1])
        lo = (hl & 0xFFFF) + (s1l & 0xFFFF) + (x & 0xFFFF) + (y & 0xFFFF) + (z & 0xFFFF)
        hi = (hl >> 16) + (s1l >> 16) + (x >> 16) + (y >> 16) + (z >> 16) + (lo >> 16)
        t1l = ((hi << 16) | (lo & 0xFFFF)) & m
        x = (eh & fh) ^ ((eh ^ m) & gh)  # Ch, high
        t1h = (hh + s1h + x + uint(k[i]) + uint(w[i]) + (hi >> 16)) & m
        s0h = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
        s0l = (((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))) & m
        x = (al & bl) ^ (al & cl) ^ (bl & cl)  # Maj, low
        lo = (s0l & 0xFFFF) + (x & 0xFFFF)
        hi = (s0l >> 16) + (x >> 16) + (lo >> 16)
        t2l = ((hi << 16) | (lo & 0xFFFF)) & m
        x = (ah & bh) ^ (ah & ch) ^ (bh & ch)  # Maj, high
        t2h = (s0h + x + (hi >> 16)) & m
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        lo = (dl & 0xFFFF) + (t1l & 0xFFFF)
        hi = (dl >> 16) + (t1l >> 16) + (lo >> 16)
        el = ((hi << 16) | (lo & 0xFFFF)) & m
        eh = (dh + t1h + (hi >> 16)) & m
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        lo = (t1l & 0xFFFF) + (t2l & 0xFFFF)
        hi = (t1l >> 16) + (t2l >> 16) + (lo >> 16)
        al = ((hi << 16) | (lo & 0xFFFF)) & m
        ah = (t1h + t2h + (hi >> 16)) & m
        t += 1
    _add(h, 0, ah, al)
    _add(h, 2, bh, bl)
    _add(h, 4, ch, cl)
    _add(h, 6, dh, dl)
    _add(h, 8, eh, el)
    _add(h, 10, fh, fl)
    _add(h, 12, gh, gl)
    _add(h, 14, hh, hl)


@micropython.viper
def _add(h: ptr32, i: int, xh: uint, xl: uint):
    y = uint(h[i + 1])
    lo = (xl & 0xFFFF) + (y & 0xFFFF)
    hi = (xl >> 16) + (y >> 16) + (lo >> 16)
    h[i + 1] = (hi << 16) | (lo & 0xFFFF)
    h[i] = uint(h[i]) + xh + (hi >> 16)


compress: "_Compress" = _compress
