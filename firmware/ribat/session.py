"""The operator's session on the wire: a PIN that never crosses the link in clear, and
requests that cannot be replayed, reordered or altered.

Shared by node and host (symlink host/ribat/session.py); no I/O. The anchor is CTAP2's PIN
protocol: the node answers `pin.key` with a fresh X25519 key and nonce, kept for one
request; the host makes its own ephemeral key, and both derive from the shared secret

    HKDF-SHA256(X25519(...), salt = nonce, info = "ribat-session v1") = pin key | mac key

The request that follows (unlock, provision, pin.change) carries each PIN sealed under the
pin key (seal_pin): a recording of it is worthless once the node has dropped its key, and
a wrong tag is refused before any PIN is counted. An unlock that opens the seal makes
the mac key the session's: every request of the session then carries a counter, higher
than the last one taken, and an HMAC-SHA256 of it, the operation, its arguments as sent
(a JSON text) and its data (wrap). The node takes a request that needs the session only
when that holds.

Why a PIN is sealed with HKDF and HMAC, not AES: the pin key is used once, for at most
two PINs of at most 64 bytes, so HKDF-Expand's output serves as the one-time pad (a PRF
stream, one block per PIN, the label in its info) and HMAC-SHA256 over label and
ciphertext authenticates it (encrypt-then-MAC, with a key of its own); PINs are padded to
64 bytes so their length does not show. The host needs no AES at run time for it.
"""

from ribat import kdf

PIN_BYTES = 64  # every PIN is sealed at this length
_TAG = 32


def keys(shared: bytes, nonce: bytes) -> tuple:
    """(pin key, mac key) from an X25519 shared secret and the node's nonce."""
    both = kdf.hkdf(shared, nonce, b"ribat-session v1", 64)
    return both[:32], both[32:]


def _pad_and_key(pin_key: bytes, label: bytes) -> tuple:
    stream = kdf.hkdf(pin_key, b"", b"ribat-pin v1 " + label, PIN_BYTES + 32)
    return stream[:PIN_BYTES], stream[PIN_BYTES:]


def seal_pin(pin_key: bytes, label: bytes, pin: str) -> bytes:
    """pin sealed under pin_key for the field label (b"pin", b"new"): 96 bytes."""
    data = pin.encode()
    if len(data) > PIN_BYTES:
        raise ValueError("a PIN is at most %d bytes" % PIN_BYTES)
    pad, mac_key = _pad_and_key(pin_key, label)
    text = data + bytes(PIN_BYTES - len(data))
    sealed = bytes(a ^ b for a, b in zip(text, pad))
    return sealed + kdf.hmac(mac_key, label + sealed)


def open_pin(pin_key: bytes, label: bytes, blob: bytes) -> "str | None":
    """The PIN sealed in blob for label; None if blob is not one sealed under pin_key."""
    if len(blob) != PIN_BYTES + _TAG:
        return None
    pad, mac_key = _pad_and_key(pin_key, label)
    sealed = blob[:PIN_BYTES]
    if not kdf.equal(kdf.hmac(mac_key, label + sealed), blob[PIN_BYTES:]):
        return None
    text = bytes(a ^ b for a, b in zip(sealed, pad))
    end = text.find(b"\x00")
    try:
        return (text if end < 0 else text[:end]).decode()
    except UnicodeError:
        return None


def mac(mac_key: bytes, n: int, op: str, args: str, data: bytes) -> bytes:
    """The session's MAC of request number n: op, its arguments as sent, its data."""
    return kdf.hmac(mac_key, ("%d\n%s\n%s\n" % (n, op, args)).encode(), data)
