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

    def encrypt(self, block: bytes) -> bytes:
        return self._enc.update(block)

    def decrypt(self, block: bytes) -> bytes:
        return self._dec.update(block)
