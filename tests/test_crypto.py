"""The node's cryptography against the standards' test vectors, on MicroPython (at a Pico's
heap size) and on CPython: one script, both interpreters. X25519 and Ed25519 are two
implementations: the node's, in machine-code field arithmetic (firmware/ribat/fe25519.py),
under MicroPython, and the reference in Python's integers (host/ribat), under CPython and,
beside the node's, under MicroPython; random inputs hold them to each other and to
`cryptography`'s (OpenSSL's)."""

import json
import os
import subprocess
import sys

from conftest import FIRMWARE, ROOT, micropython

# Runs unchanged on both interpreters; prints OK as its last line.
VECTORS = r"""
from binascii import hexlify, unhexlify as h
from ribat import aead, ed25519, kdf, keywrap, sha512, x25519

def eq(got, want, what):
    assert got == h(want), "%s: got %s" % (what, hexlify(got).decode())

# FIPS 180-4 examples (one block, two blocks)
eq(sha512.pure_digest(b"abc"), "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
   "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f", "sha512 abc")
eq(sha512.pure_digest(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
   b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"), "8e959b75dae313da8cf4f72814fc143f"
   "8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
   "sha512 two blocks")

# RFC 8032 7.1, tests 1 and 2
for sk, pk, msg, sig in (
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", b"",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", b"\x72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
):
    eq(ed25519.public_key(h(sk)), pk, "ed25519 public key")
    eq(ed25519.sign(h(sk), msg), sig, "ed25519 signature")
    assert ed25519.verify(h(pk), msg, h(sig))
    assert not ed25519.verify(h(pk), msg + b"x", h(sig)), "a changed message verifies"
    bad = bytearray(h(sig)); bad[5] ^= 1
    assert not ed25519.verify(h(pk), msg, bytes(bad)), "a changed signature verifies"
    assert not ed25519.verify(h(pk), msg, h(sig)[:63]), "a short signature verifies"
# s >= L must be refused (RFC 8032 5.1.7: malleability)
s = int.from_bytes(h(sig)[32:], "little") + ed25519.L
assert not ed25519.verify(h(pk), msg, h(sig)[:32] + s.to_bytes(32, "little"))

# RFC 7748 5.2 (first vector) and 6.1 (Diffie-Hellman)
eq(x25519.x25519(h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                 h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")),
   "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552", "x25519 5.2")
a = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
b = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
eq(x25519.public_key(a), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", "a")
eq(x25519.public_key(b), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", "bob")
shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
eq(x25519.x25519(a, x25519.public_key(b)), shared, "alice's shared")
eq(x25519.x25519(b, x25519.public_key(a)), shared, "bob's shared")

# RFC 4231 test cases 2 and 6 (a key longer than the block)
eq(kdf.hmac(b"Jefe", b"what do ya want for nothing?"),
   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "hmac 2")
eq(kdf.hmac(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", "hmac 6")
assert kdf.equal(b"abc", b"abc") and not kdf.equal(b"abc", b"abd") and not kdf.equal(b"a", b"ab")

# RFC 5869 A.1
eq(kdf.hkdf(b"\x0b" * 22, h("000102030405060708090a0b0c"), h("f0f1f2f3f4f5f6f7f8f9"), 42),
   "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
   "hkdf A.1")

# RFC 7914 11 (PBKDF2-HMAC-SHA256, c = 1, two output blocks)
eq(kdf.pbkdf2(b"passwd", b"salt", 1, 64),
   "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
   "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783", "pbkdf2 c=1")

# NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt), and F.5.6 (decrypt is the same operation)
key = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
iv = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
       "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
ct = ("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
      "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6")
eq(aead.ctr(key, iv, pt), ct, "ctr encrypt")
eq(aead.ctr(key, iv, h(ct)), hexlify(pt).decode(), "ctr decrypt")
eq(aead.ctr(key, iv, pt[:7]), ct[:14], "ctr partial block")
# the counter wraps at 2**128 (a block boundary inside one message)
wrap = aead.ctr(key, b"\xff" * 16, bytes(32))
assert wrap[16:] == aead.ctr(key, bytes(16), bytes(16))

# encrypt-then-MAC: round trip; any change, a wrong key or a wrong context opens to None
k = bytes(range(64))
box = aead.seal(k, b"secret seed", b"ctx")
assert len(box) == aead.OVERHEAD + 11
assert aead.open_box(k, box, b"ctx") == b"secret seed"
assert aead.open_box(k, box, b"other") is None
assert aead.open_box(bytes(64), box, b"ctx") is None
for i in range(len(box)):
    bad = bytearray(box); bad[i] ^= 0x80
    assert aead.open_box(k, bytes(bad), b"ctx") is None, i
assert aead.open_box(k, box[:-1], b"ctx") is None
assert aead.open_box(k, b"", b"ctx") is None
assert aead.seal(k, b"same", b"") != aead.seal(k, b"same", b""), "IV reused"

# RFC 3394 4.6 (wrap 256 bits of key data with a 256-bit KEK)
kek = h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
data = h("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
wrapped = "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"
eq(keywrap.wrap(kek, data), wrapped, "key wrap")
eq(keywrap.unwrap(kek, h(wrapped)), hexlify(data).decode(), "key unwrap")
assert keywrap.unwrap(bytes(32), h(wrapped)) is None, "unwrapped under the wrong key"
for i in range(40):
    bad = bytearray(h(wrapped)); bad[i] ^= 1
    assert keywrap.unwrap(kek, bytes(bad)) is None, i
assert keywrap.unwrap(kek, h(wrapped)[:-8]) is None and keywrap.unwrap(kek, b"") is None
print("OK")
"""


def test_vectors_on_micropython() -> None:
    micropython(VECTORS)


# Under CPython the firmware's ribat package, with the host's modules before its own where
# both have one (the reference X25519 and Ed25519), and a cryptolib over `cryptography`.
HOST_FIRST = f"import ribat; ribat.__path__.insert(0, {str(ROOT / 'host' / 'ribat')!r})\n"


def test_vectors_on_cpython() -> None:
    path = os.pathsep.join([str(FIRMWARE), str(ROOT / "tests" / "support")])
    done = subprocess.run(
        [sys.executable, "-c", HOST_FIRST + VECTORS],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0 and done.stdout.rstrip().endswith("OK"), done.stderr


def test_kdf_agrees_with_cpython_standard_library() -> None:
    """Beyond the RFCs' few vectors: random keys and lengths against hmac/hashlib."""
    import hashlib
    import hmac
    import random

    sys.path.insert(0, str(FIRMWARE / "ribat"))
    try:
        import kdf  # type: ignore[import-not-found]  # the node's module, by file: the host's ribat package has none
    finally:
        sys.path.pop(0)
    rng = random.Random(5)
    for _ in range(50):
        key = rng.randbytes(rng.randrange(0, 150))
        msg = rng.randbytes(rng.randrange(0, 300))
        assert kdf.hmac(key, msg) == hmac.new(key, msg, "sha256").digest()
    for iterations, length in ((2, 32), (1000, 20), (3, 70)):
        want = hashlib.pbkdf2_hmac("sha256", b"pin", b"salt", iterations, length)
        assert kdf.pbkdf2(b"pin", b"salt", iterations, length) == want


# Runs under MicroPython: the node's X25519 and Ed25519 and the reference (the host's
# modules, loaded by file under other names) on the same random inputs; prints JSON lines
# for the test to check against `cryptography`.
CROSS = r"""
import json, os, sys
from binascii import hexlify
from ribat import ed25519, fe25519, x25519
sys.path.insert(0, "HOST")
import ed25519 as ref_ed25519, x25519 as ref_x25519
sys.path.pop(0)
assert ref_x25519 is not x25519 and ref_ed25519 is not ed25519
P = fe25519.P
EDGES = ((0, 2**256 - 1), (1, P - 1), (P - 1, P - 1), (P, 2**255), (P + 1, 19),
         (2**256 - 1, 2**256 - 1))
def rand():
    return int.from_bytes(os.urandom(32), "little")
def fe(n):
    return bytearray(n.to_bytes(32, "little"))
for i in range(300):  # the field's operations against Python's integers, edges first
    x, y = EDGES[i] if i < len(EDGES) else (rand(), rand())
    a, b, o = fe(x), fe(y), bytearray(32)
    fe25519.mul(o, a, b, fe25519.R); assert fe25519.value(o) == x * y % P, ("mul", x, y)
    fe25519._mul(o, a, b, fe25519.R); assert fe25519.value(o) == x * y % P, ("_mul", x, y)
    fe25519.add(o, a, b); assert fe25519.value(o) == (x + y) % P, ("add", x, y)
    fe25519.sub(o, a, b); assert fe25519.value(o) == (x - y) % P, ("sub", x, y)
    fe25519.mul(a, a, a, fe25519.R); assert fe25519.value(a) == x * x % P, ("square", x)
    if y % P:
        fe25519.invert(o, b); assert fe25519.value(o) * y % P == 1, ("invert", y)
for i, (x, y) in enumerate(ed25519._TEETH):  # the comb's teeth: 2^(64 i) B
    X, Y, Z, _ = ref_ed25519._mul(1 << 64 * i, ref_ed25519._table(ref_ed25519.BASE))
    zi = pow(Z, P - 2, P)
    assert (x, y) == (X * zi % P, Y * zi % P), ("tooth", i)
for k in (0, 1, 2, 2**64 - 1, 2**64, ed25519.L - 1, 2**255 - 1, 2**256 - 1, rand(), rand()):
    w = ed25519._Work()
    got = ed25519._encode(ed25519._mul_base(k, w))
    assert got == ref_ed25519._encode(ref_ed25519._mul_base(k)), ("k B", k)
from ribat import sha512
assert sha512.digest is sha512._machine_digest
for n in (0, 1, 111, 112, 127, 128, 129, 239, 240, 256, 1000):  # the padding's edges
    data = os.urandom(n)
    assert sha512.digest(data) == sha512.pure_digest(data), ("sha512", n)
for i in range(6):
    seed, peer, msg = os.urandom(32), os.urandom(32), os.urandom(i * 40)
    pub = x25519.public_key(peer)
    shared = x25519.x25519(seed, pub)
    assert shared == ref_x25519.x25519(seed, pub) and pub == ref_x25519.public_key(peer)
    sign_pub = ed25519.public_key(seed)
    sig = ed25519.sign(seed, msg)
    assert sign_pub == ref_ed25519.public_key(seed) and sig == ref_ed25519.sign(seed, msg)
    assert ed25519.verify(sign_pub, msg, sig) and ref_ed25519.verify(sign_pub, msg, sig)
    assert not ed25519.verify(sign_pub, msg + b"!", sig)
    print(json.dumps({k: hexlify(v).decode() for k, v in (("seed", seed), ("peer", peer),
        ("pub", pub), ("shared", shared), ("msg", msg), ("sign_pub", sign_pub), ("sig", sig),
        ("sha512", sha512.digest(msg)))}))
print("OK")
"""


def test_node_curves_agree_with_the_reference_and_openssl() -> None:
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = (Encoding.Raw, PublicFormat.Raw)
    out = micropython(CROSS.replace("HOST", str(ROOT / "host" / "ribat")))
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    for row in rows:
        v = {k: bytes.fromhex(x) for k, x in row.items()}
        peer = x25519.X25519PrivateKey.from_private_bytes(v["peer"])
        assert peer.public_key().public_bytes(*raw) == v["pub"]
        mine = x25519.X25519PrivateKey.from_private_bytes(v["seed"])
        assert mine.exchange(x25519.X25519PublicKey.from_public_bytes(v["pub"])) == v["shared"]
        signer = ed25519.Ed25519PrivateKey.from_private_bytes(v["seed"])
        assert signer.public_key().public_bytes(*raw) == v["sign_pub"]
        assert signer.sign(v["msg"]) == v["sig"]  # Ed25519 is deterministic
        assert hashlib.sha512(v["msg"]).digest() == v["sha512"]


def test_the_curve_work_spares_the_node_its_collections() -> None:
    """A signature or an agreement collects its garbage when the heap fills, not at the
    node's every-16-KB threshold (keys.sparing_gc): no threshold while it works, the same
    result, and the node's threshold back afterwards, even when the work fails (its
    error passed on)."""
    out = micropython("""
        import gc
        from ribat import ed25519, keys
        gc.threshold(16384)
        seed = bytes(range(32))
        pub = ed25519.public_key(seed)
        seen = []
        def sign(*args):
            seen.append(gc.threshold())
            return ed25519.sign(*args)
        sig = keys.sparing_gc(sign, seed, b"m" * 200, pub)
        assert seen == [-1] and sig == ed25519.sign(seed, b"m" * 200, pub)
        assert gc.threshold() == 16384
        try:
            keys.sparing_gc(int, "not a number")
            raise AssertionError("its error was lost")
        except ValueError:
            pass
        assert gc.threshold() == 16384
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_ctr_agrees_with_openssl_across_pieces_and_the_counters_wrap() -> None:
    """aead.ctr makes its keystream a piece at a time: lengths about the piece and the
    block, and a counter that wraps past 2^128, on MicroPython as OpenSSL does them."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(32))
    sizes = [0, 1, 15, 16, 17, 255, 256, 257, 511, 1000, 2100]
    ivs = [bytes(range(16, 32)), b"\xff" * 15 + b"\xfe"]
    out = micropython(f"""
        from binascii import hexlify
        from ribat import aead
        for iv in {ivs!r}:
            for n in {sizes!r}:
                data = bytes(i % 253 for i in range(n))
                print(hexlify(aead.ctr({key!r}, iv, data)).decode() or "-")
        print("OK")
    """)
    got = out.split()[:-1]
    want = []
    for iv in ivs:
        for n in sizes:
            enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
            want.append(enc.update(bytes(i % 253 for i in range(n))).hex() or "-")
    assert got == want
