# AES-CCM on the device: RFC 3610 vectors, tamper detection and input checks.
# The full NIST CAVS sweep is in test_ccm_nist.py.
from binascii import unhexlify

from wearsafe.crypto import ccm
from wstest import raises

KEY = bytes(range(0xC0, 0xD0))
# RFC 3610 packet vectors #1 and #2: 8-byte header as AAD, 8-byte tag.
VECTORS = (
    ("00000003020100A0A1A2A3A4A5", 31,
     "588C979A61C663D2F066D0C2C0F989806D5F6B61DAC38417E8D12CFDF926E0"),
    ("00000004030201A0A1A2A3A4A5", 32,
     "72C91A36E135F8CF291CA894085C87E3CC15C439C9E43A3BA091D56E10400916"),
)


def test_rfc3610_packet_vectors():
    for nonce, total, expected in VECTORS:
        nonce = unhexlify(nonce)
        aad, msg = bytes(range(8)), bytes(range(8, total))
        sealed = ccm.encrypt(KEY, nonce, msg, aad, tag_len=8)
        assert sealed == unhexlify(expected)
        assert ccm.decrypt(KEY, nonce, sealed, aad, tag_len=8) == msg


def test_aes192_block_matches_fips197_appendix_c2():
    from wearsafe.crypto import aes192

    out = bytearray(16)
    aes192.aes(bytes(range(24)), 1).encrypt(unhexlify("00112233445566778899aabbccddeeff"), out)
    assert out == unhexlify("dda97ca4864cdfe06eaf70a0ec0d7191")


def test_every_flipped_bit_is_rejected():
    nonce = bytes(13)
    sealed = bytearray(ccm.encrypt(bytes(32), nonce, b"heart", b"topic"))
    for bit in range(len(sealed) * 8):
        sealed[bit // 8] ^= 1 << (bit % 8)
        raises(ccm.AuthError, ccm.decrypt, bytes(32), nonce, sealed, b"topic")
        sealed[bit // 8] ^= 1 << (bit % 8)
    raises(ccm.AuthError, ccm.decrypt, bytes(32), nonce, sealed, b"other topic")
    assert ccm.decrypt(bytes(32), nonce, sealed, b"topic") == b"heart"


def test_long_messages_cross_chunk_boundaries():
    key, nonce = bytes(range(16)), bytes(range(7))
    for size in (0, 1, 15, 16, 17, 1007, 1008, 1009, 3000):
        msg = bytes(i & 0xFF for i in range(size))
        aad = bytes(size % 300)
        assert ccm.decrypt(key, nonce, ccm.encrypt(key, nonce, msg, aad), aad) == msg


def test_wrong_sizes_are_refused_with_a_message():
    e = raises(ValueError, ccm.encrypt, bytes(20), bytes(13), b"")
    assert "key must be 16, 24 or 32 bytes, got 20" in str(e)
    e = raises(ValueError, ccm.encrypt, bytes(16), bytes(6), b"")
    assert "nonce must be 7 to 13 bytes, got 6" in str(e)
    e = raises(ValueError, ccm.encrypt, bytes(16), bytes(13), b"", b"", 5)
    assert "tag length must be even, 4 to 16 bytes, got 5" in str(e)
    raises(ValueError, ccm.encrypt, bytes(16), bytes(13), b"", b"", 18)
    raises(ccm.AuthError, ccm.decrypt, bytes(16), bytes(13), b"short")
