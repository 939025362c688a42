# Stand-in for the C module cryptolib, which the webassembly port lacks (the
# bench uses the real one wherever the port has it). It is NOT AES: the
# "ciphertext" is the plaintext. What it keeps is what the real one
# allocates, because the heap bench needs the application's allocations, not
# the cipher: one small object per aes() (64 bytes on the 32-bit port; the
# unix port's real one is 416 bytes, its mbedTLS context inside), and an
# output buffer only when the caller gives none (wearsafe's CCM always gives
# one). A pure-Python AES would add its own temporaries to every figure.
_ECB = 1
_CBC = 2


class aes:
    def __init__(self, key, mode, IV=None):
        if len(key) not in (16, 32) or mode not in (_ECB, _CBC):
            raise ValueError("cryptolib stand-in: 16- or 32-byte key, ECB or CBC")
        # the real object holds the key schedule and the IV inside itself
        self._iv = bytearray(IV or bytes(16))

    def encrypt(self, data, out=None):
        n = len(data)
        if n % 16:
            raise ValueError("blksize % 16")
        if out is None:
            out = bytearray(n)
        out[:n] = data
        return out

    decrypt = encrypt
