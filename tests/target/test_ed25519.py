# Ed25519 verification and SHA-512 on the device: RFC 8032 vectors and the
# edge cases a verifier must reject. The full vector files: test_ed25519_vectors.py.
from binascii import unhexlify

from wearsafe.crypto import ed25519
from wearsafe.crypto.sha512 import sha512

# RFC 8032 section 7.1, TEST 2 (one-byte message)
PK = unhexlify("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
MSG = b"\x72"
SIG = unhexlify("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")


def test_sha512_fips180_examples():
    assert sha512(b"abc").digest() == unhexlify(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    h = sha512()
    for _ in range(10):
        h.update(b"a" * 100)
    assert h.digest() == sha512(b"a" * 1000).digest()


def test_rfc8032_vector_verifies():
    assert ed25519.verify(PK, MSG, SIG) is True


def test_every_single_bit_flip_fails():
    for buf, which in ((bytearray(PK), 0), (bytearray(MSG), 1), (bytearray(SIG), 2)):
        for bit in range(0, len(buf) * 8, 7):
            buf[bit // 8] ^= 1 << (bit % 8)
            args = [PK, MSG, SIG]
            args[which] = bytes(buf)
            assert ed25519.verify(*args) is False, (which, bit)
            buf[bit // 8] ^= 1 << (bit % 8)


def test_s_at_or_above_the_group_order_is_rejected():
    s = int.from_bytes(SIG[32:], "little") + ed25519.L  # same point, malleated S
    assert ed25519.verify(PK, MSG, SIG[:32] + s.to_bytes(32, "little")) is False


def test_non_canonical_or_undecodable_keys_are_rejected():
    y_too_big = (ed25519.P + 1).to_bytes(32, "little")  # y >= p
    assert ed25519.verify(y_too_big, MSG, SIG) is False
    not_on_curve = (2).to_bytes(32, "little")  # y = 2 has no x
    assert ed25519.verify(not_on_curve, MSG, SIG) is False


def test_malformed_input_returns_false_never_raises():
    for pk, msg, sig in ((PK[:31], MSG, SIG), (PK, MSG, SIG[:63]), (None, MSG, SIG),
                         (PK, MSG, None), (PK, 5, SIG), (b"", b"", b"")):
        assert ed25519.verify(pk, msg, sig) is False
