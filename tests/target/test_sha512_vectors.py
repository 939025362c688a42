# The NIST CAVS SHA-512 ShortMsg and LongMsg vectors (cryptography-vectors).
import os
from binascii import unhexlify

from wearsafe.crypto.sha512 import sha512

UNIX_ONLY = True  # reads the vector files from the host
HEAP = "256K"  # a LongMsg line is 25 KB of hex; the hash itself needs little


def _sha_file(name):
    path = os.getenv("WEARSAFE_VECTORS") + "/hashes/SHA2/" + name
    checked = 0
    length = 0
    msg = b""
    with open(path) as f:
        for line in f:
            if line.startswith("Len = "):
                length = int(line[6:]) // 8
            elif line.startswith("Msg = "):
                msg = unhexlify(line[6:].strip())[:length]
            elif line.startswith("MD = "):
                assert sha512(msg).digest() == unhexlify(line[5:].strip()), length
                checked += 1
    return checked


def test_sha512_nist_short_and_long_messages():
    assert _sha_file("SHA512ShortMsg.rsp") == 129
    assert _sha_file("SHA512LongMsg.rsp") == 128
