"""AES Key Wrap (RFC 3394, NIST SP 800-38F KW) with a 256-bit key-encryption key.

A bulletin's content key is wrapped once per recipient node under the key the origin
shares with it: 40 bytes for a 32-byte key, and unwrapping under any other key fails the
integrity check (the 0xA6 block) instead of yielding a wrong key. Built on cryptolib's ECB
block, like ribat.aead; tested on both interpreters against RFC 3394 4.6.
"""

from cryptolib import aes

_IV = b"\xa6" * 8
_ECB = 1


def wrap(kek: bytes, key: bytes) -> bytes:
    n = len(key) // 8
    cipher = aes(kek, _ECB)
    a = _IV
    r = [key[i * 8 : i * 8 + 8] for i in range(n)]
    for j in range(6):
        for i in range(n):
            b = cipher.encrypt(a + r[i])
            t = n * j + i + 1
            a = (int.from_bytes(b[:8], "big") ^ t).to_bytes(8, "big")
            r[i] = b[8:]
    return a + b"".join(r)


def unwrap(kek: bytes, wrapped: bytes) -> "bytes | None":
    """The key wrapped under kek; None if it was wrapped under another key or altered."""
    n = len(wrapped) // 8 - 1
    if n < 2 or len(wrapped) % 8:
        return None
    cipher = aes(kek, _ECB)  # (a MicroPython aes object decrypts or encrypts, not both)
    a = wrapped[:8]
    r = [wrapped[8 + i * 8 : 16 + i * 8] for i in range(n)]
    for j in range(5, -1, -1):
        for i in range(n - 1, -1, -1):
            t = n * j + i + 1
            a = (int.from_bytes(a, "big") ^ t).to_bytes(8, "big")
            b = cipher.decrypt(a + r[i])
            a = b[:8]
            r[i] = b[8:]
    return b"".join(r) if a == _IV else None
