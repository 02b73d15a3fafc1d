"""cryptolib for CPython: MicroPython's AES block interface (ECB, what ribat.aead and
ribat.keywrap use) over the `cryptography` package, so the node's code can be checked on
CPython against the same vectors as on MicroPython."""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1


class aes:  # MicroPython's name
    def __init__(self, key: bytes, mode: int) -> None:
        if mode != MODE_ECB:
            raise ValueError("only ECB is provided here")
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        self._enc = cipher.encryptor()
        self._dec = cipher.decryptor()

    def encrypt(self, block: bytes, out: bytearray | None = None) -> bytes:
        return self._into(self._enc.update(bytes(block)), out)

    def decrypt(self, block: bytes, out: bytearray | None = None) -> bytes:
        return self._into(self._dec.update(bytes(block)), out)

    @staticmethod
    def _into(done: bytes, out: bytearray | None) -> bytes:
        """MicroPython's out_buf: the result written there too (it may be the input)."""
        if out is not None:
            out[:] = done
        return done
