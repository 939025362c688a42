# Every case of the Ed25519 sign.input file (cryptography-vectors, from
# the SUPERCOP / RFC 8032 set): each valid signature verifies, and the same
# with one flipped bit in the message, R, S or the public key does not.
import os
from binascii import unhexlify

from wearsafe.crypto import ed25519

UNIX_ONLY = True  # reads the vector files from the host
TIMEOUT = 900


def _flip(data, bit):
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _check_lines(first, last):
    path = os.getenv("WEARSAFE_VECTORS") + "/asymmetric/Ed25519/sign.input"
    checked = 0
    with open(path) as f:
        for index, line in enumerate(f):
            if not first <= index < last:
                continue
            fields = line.split(":")
            pk, msg, sig = unhexlify(fields[1]), unhexlify(fields[2]), unhexlify(fields[3])[:64]
            assert ed25519.verify(pk, msg, sig), "line %d: valid signature rejected" % index
            bit = index * 7 + 3
            if msg:
                assert not ed25519.verify(pk, _flip(msg, bit), sig), "line %d msg" % index
            assert not ed25519.verify(pk, msg, _flip(sig, bit % 256)), "line %d R" % index
            assert not ed25519.verify(pk, msg, _flip(sig, 256 + bit % 256)), "line %d S" % index
            assert not ed25519.verify(_flip(pk, bit), msg, sig), "line %d key" % index
            checked += 1
    return checked


def test_sign_input_lines_0_to_255():
    assert _check_lines(0, 256) == 256


def test_sign_input_lines_256_to_511():
    assert _check_lines(256, 512) == 256


def test_sign_input_lines_512_to_767():
    assert _check_lines(512, 768) == 256


def test_sign_input_lines_768_to_1023():
    assert _check_lines(768, 1024) == 256
