# AES-192 encryption (FIPS 197) in MicroPython, for the one key size
# cryptolib lacks (it takes 16- and 32-byte keys only). Same interface as
# cryptolib.aes for what CCM needs: encrypt(in_buf, out_buf) in ECB (1) or
# CBC (2) mode, CBC state carried across calls. Not constant-time: wearsafe's
# own keys are 256-bit and always go through cryptolib.


def _sbox():
    box = bytearray(256)
    p = q = 1
    while True:  # walk GF(2^8) by multiplying p by 3 and q by 3^-1
        p ^= (p << 1) ^ (0x1B if p & 0x80 else 0)
        p &= 0xFF
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ _rotl(q, 1) ^ _rotl(q, 2) ^ _rotl(q, 3) ^ _rotl(q, 4)
        box[p] = x ^ 0x63
        if p == 1:
            break
    box[0] = 0x63
    return bytes(box)


def _rotl(x, n):
    return ((x << n) | (x >> (8 - n))) & 0xFF


def _xtime(b):
    b <<= 1
    return (b ^ 0x1B) & 0xFF if b & 0x100 else b


SBOX = _sbox()


def _expand(key):
    nk, rounds = 6, 12
    w = bytearray(key)
    rcon = 1
    while len(w) < 16 * (rounds + 1):
        t = bytearray(w[-4:])
        if (len(w) // 4) % nk == 0:
            t = bytearray((SBOX[t[1]] ^ rcon, SBOX[t[2]], SBOX[t[3]], SBOX[t[0]]))
            rcon = _xtime(rcon)
        for i in range(4):
            t[i] ^= w[len(w) - 4 * nk + i]
        w += t
    return bytes(w[:16 * (rounds + 1)]), rounds


def _encrypt_block(rk, rounds, s):
    for i in range(16):
        s[i] ^= rk[i]
    for r in range(1, rounds + 1):
        # SubBytes and ShiftRows (state is column-major: s[row + 4*col])
        t = bytes(SBOX[s[(i + 4 * (i % 4)) % 16]] for i in range(16))
        if r < rounds:  # MixColumns
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                x = a0 ^ a1 ^ a2 ^ a3
                s[c] = a0 ^ x ^ _xtime(a0 ^ a1)
                s[c + 1] = a1 ^ x ^ _xtime(a1 ^ a2)
                s[c + 2] = a2 ^ x ^ _xtime(a2 ^ a3)
                s[c + 3] = a3 ^ x ^ _xtime(a3 ^ a0)
        else:
            s[:] = t
        for i in range(16):
            s[i] ^= rk[16 * r + i]


class aes:
    def __init__(self, key, mode, iv=None):
        if len(key) != 24:
            raise ValueError("aes192 takes a 24-byte key")
        self._rk, self._rounds = _expand(key)
        self._cbc = mode == 2
        self._iv = bytearray(iv or bytes(16))

    def encrypt(self, data, out):
        block = bytearray(16)
        for off in range(0, len(data), 16):
            block[:] = data[off:off + 16]
            if self._cbc:
                for i in range(16):
                    block[i] ^= self._iv[i]
            _encrypt_block(self._rk, self._rounds, block)
            if self._cbc:
                self._iv[:] = block
            out[off:off + 16] = block
        return out
