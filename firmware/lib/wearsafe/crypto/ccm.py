# AES-CCM (NIST SP 800-38C, RFC 3610) on cryptolib's ECB and CBC modes.
#
# The CBC-MAC runs through cryptolib's CBC mode (its chaining state carries
# across calls, so long messages go through in chunks); the CTR keystream is
# one ECB call over a buffer of counter blocks per chunk. Counter blocks and
# XOR are built with big-integer arithmetic, which MicroPython runs in C,
# rather than one block or byte at a time. AES-192, which cryptolib lacks,
# comes from aes192.py.
from cryptolib import aes
from micropython import const

_ECB = const(1)
_CBC = const(2)
_CHUNK_BLOCKS = const(64)  # 1 KiB of keystream or MAC input per cipher call


def _blocks(value_of):
    """64 big-endian 16-byte blocks, block i holding value_of(i), as one integer
    (one 1 KiB buffer, not 128 joined byte strings: the import leaves few fragments)."""
    buf = bytearray(16 * _CHUNK_BLOCKS)
    for i in range(_CHUNK_BLOCKS):
        buf[16 * i + 15] = value_of(i)
    return int.from_bytes(buf, "big")


# 64 blocks of 1, and of 0, 1, 2 ... 63 (most significant first), for _counter_blocks.
_ONES = _blocks(lambda i: 1)
_RAMP = _blocks(lambda i: i)


class AuthError(Exception):
    """The data, nonce, AAD or key do not match the tag: nothing is returned."""


def _check(key, nonce, tag_len):
    if len(key) not in (16, 24, 32):
        raise ValueError("AES-CCM key must be 16, 24 or 32 bytes, got %d" % len(key))
    if not 7 <= len(nonce) <= 13:
        raise ValueError("AES-CCM nonce must be 7 to 13 bytes, got %d" % len(nonce))
    if tag_len < 4 or tag_len > 16 or tag_len & 1:
        raise ValueError("AES-CCM tag length must be even, 4 to 16 bytes, got %d" % tag_len)


def _aes(key, mode, iv=None):
    if len(key) == 24:  # cryptolib takes 16- and 32-byte keys only
        from wearsafe.crypto import aes192

        return aes192.aes(key, mode, iv)
    return aes(key, mode, iv) if iv else aes(key, mode)


def _xor(a, b, n):
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


def _equal(a, b):
    # Constant time in the contents: no early exit on the first difference.
    diff = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        diff |= a[i] ^ b[i]
    return diff == 0


def _aad_header(aad):
    n = len(aad)
    if n == 0:
        return b""
    if n < 0xFF00:
        return n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\xff\xfe" + n.to_bytes(4, "big")
    return b"\xff\xff" + n.to_bytes(8, "big")


def _cbc_feed(cipher, data):
    """CBC-encrypt data (a multiple of 16 bytes) chunk by chunk; return the last block."""
    mv = memoryview(data)
    out = bytearray(min(len(mv), _CHUNK_BLOCKS * 16))
    for offset in range(0, len(mv), len(out)):
        chunk = mv[offset:offset + len(out)]
        dst = out if len(chunk) == len(out) else bytearray(len(chunk))
        cipher.encrypt(chunk, dst)
    return bytes(dst[-16:])


def _mac(key, nonce, aad, msg, tag_len):
    q = 15 - len(nonce)
    if len(msg) >= 1 << (8 * q):
        raise ValueError("message too long for a %d-byte nonce" % len(nonce))
    head = bytearray(16)
    head[0] = (0x40 if aad else 0) | ((tag_len - 2) // 2) << 3 | (q - 1)
    head[1:1 + len(nonce)] = nonce
    head[16 - q:] = len(msg).to_bytes(q, "big")
    if aad:
        head += _aad_header(aad)
        head += aad
        head += bytes(-len(head) % 16)
    cipher = _aes(key, _CBC, bytes(16))
    last = _cbc_feed(cipher, head)
    whole = len(msg) - len(msg) % 16
    if whole:
        last = _cbc_feed(cipher, memoryview(msg)[:whole])
    if whole < len(msg):
        block = bytearray(16)
        block[:len(msg) - whole] = memoryview(msg)[whole:]
        last = _cbc_feed(cipher, block)
    return last[:tag_len]


def _counter_blocks(template, first, count):
    """count counter blocks A_first.. as one integer: (A_first) * 1...1 + 0,1,2...

    Built with a few big-integer operations, which run in C, instead of a
    Python loop over blocks.
    """
    ones = _ONES >> (128 * (_CHUNK_BLOCKS - count))
    ramp = _RAMP >> (128 * (_CHUNK_BLOCKS - count))
    return ((template + first) * ones + ramp).to_bytes(16 * count, "big")


def _ctr(key, nonce, data):
    """(S0, data XOR keystream) with counter blocks A_i = flags | nonce | i."""
    q = 15 - len(nonce)
    template = int.from_bytes(bytes((q - 1,)) + nonce + bytes(q), "big")
    ecb = _aes(key, _ECB)
    total = 1 + (len(data) + 15) // 16  # A_0 for the tag, then one block per 16 bytes
    if total >= 1 << (8 * q):
        raise ValueError("message too long for a %d-byte nonce" % len(nonce))
    out = bytearray(len(data))
    s0 = b""
    for first in range(0, total, _CHUNK_BLOCKS):
        count = min(_CHUNK_BLOCKS, total - first)
        blocks = _counter_blocks(template, first, count)
        stream = memoryview(ecb.encrypt(blocks, bytearray(len(blocks))))
        if first == 0:
            s0 = bytes(stream[:16])
            stream = stream[16:]
        start = max(first - 1, 0) * 16
        end = min(start + len(stream), len(data))
        if end > start:
            out[start:end] = _xor(memoryview(data)[start:end], stream[:end - start], end - start)
    return s0, out


def encrypt(key, nonce, plaintext, aad=b"", tag_len=16):
    """Ciphertext followed by the tag."""
    _check(key, nonce, tag_len)
    tag = _mac(key, nonce, aad, plaintext, tag_len)
    s0, ct = _ctr(key, nonce, plaintext)
    ct += _xor(tag, s0[:tag_len], tag_len)
    return bytes(ct)


def decrypt(key, nonce, data, aad=b"", tag_len=16):
    """The plaintext, or AuthError; unauthenticated plaintext never leaves."""
    _check(key, nonce, tag_len)
    if len(data) < tag_len:
        raise AuthError("message shorter than its %d-byte tag" % tag_len)
    body = memoryview(data)[:len(data) - tag_len]
    s0, pt = _ctr(key, nonce, body)
    expected = _xor(_mac(key, nonce, aad, pt, tag_len), s0[:tag_len], tag_len)
    if not _equal(expected, memoryview(data)[len(data) - tag_len:]):
        for i in range(len(pt)):
            pt[i] = 0
        raise AuthError("authentication failed: wrong key, nonce or AAD, or tampered data")
    return bytes(pt)
