# The NIST CAVS SHA-512 ShortMsg and LongMsg vectors (cryptography-vectors).
# A LongMsg line is up to 25 KB of hex: it is streamed into the hash in
# chunks, so the test fits the default heap, as the hash itself does.
import os
from binascii import unhexlify

from wearsafe.crypto.sha512 import sha512

UNIX_ONLY = True  # reads the vector files from the host
_CHUNK = 512  # hex characters per read


def _check_file(name):
    checked = 0
    with open(os.getenv("WEARSAFE_VECTORS") + "/hashes/SHA2/" + name) as f:
        while True:
            line = f.readline()
            if not line:
                return checked
            if not line.startswith("Len = "):
                continue
            length = int(line[6:]) // 8
            assert f.read(6) == "Msg = "
            h = sha512()
            left = 2 * max(length, 1)  # an empty message is written as "00"
            while left:
                chunk = f.read(min(_CHUNK, left))
                left -= len(chunk)
                if length:
                    h.update(unhexlify(chunk))
            f.readline()
            expected = f.readline()
            assert expected.startswith("MD = ")
            assert h.digest() == unhexlify(expected[5:].strip()), length
            checked += 1


def test_sha512_nist_short_messages():
    assert _check_file("SHA512ShortMsg.rsp") == 129


def test_sha512_nist_long_messages():
    assert _check_file("SHA512LongMsg.rsp") == 128
