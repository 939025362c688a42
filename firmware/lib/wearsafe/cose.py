# COSE_Encrypt0 (RFC 9052 section 5.2, CBOR tag 16) with AES-CCM-16-128-256
# (COSE algorithm 31: 256-bit key, 13-byte nonce, 16-byte tag).
#
#   16([ h'A1011F' (protected {1: 31}), {4: kid, 6: partial IV}, ciphertext ])
#
# nonce = base IV XOR partial IV left-padded to 13 bytes (RFC 9052 section
# 3.1); the external AAD binds the device id and the topic, so a message
# replayed under another device or topic does not open.
from micropython import const

from wearsafe import cbor
from wearsafe.crypto import ccm

ALG_AES_CCM_16_128_256 = const(31)
TAG_ENCRYPT0 = const(16)
HDR_ALG = const(1)
HDR_KID = const(4)
HDR_PARTIAL_IV = const(6)
KEY_LEN = const(32)
NONCE_LEN = const(13)
TAG_LEN = const(16)
PROTECTED = b"\xa1\x01\x18\x1f"  # {1: 31}, serialized once


class CoseError(ValueError):
    pass


def external_aad(device_id, topic):
    return cbor.encode([device_id, topic])


def partial_iv(counter):
    """The counter as a minimal big-endian byte string (at least one byte)."""
    n = 1
    while counter >> (8 * n):  # MicroPython ints have no bit_length()
        n += 1
    return counter.to_bytes(n, "big")


def nonce(base_iv, piv):
    if len(base_iv) != NONCE_LEN or not 1 <= len(piv) <= NONCE_LEN:
        raise CoseError("cose: base IV must be %d bytes and partial IV 1..%d"
                        % (NONCE_LEN, NONCE_LEN))
    n = bytearray(base_iv)
    offset = NONCE_LEN - len(piv)
    for i in range(len(piv)):
        n[offset + i] ^= piv[i]
    return bytes(n)


def _aad(protected, ext_aad):
    return cbor.encode(["Encrypt0", protected, ext_aad])


def encrypt0(key, base_iv, kid, counter, plaintext, ext_aad=b""):
    piv = partial_iv(counter)
    ct = ccm.encrypt(key, nonce(base_iv, piv), plaintext, _aad(PROTECTED, ext_aad), TAG_LEN)
    return cbor.encode(cbor.Tag(TAG_ENCRYPT0, [PROTECTED, {HDR_KID: kid, HDR_PARTIAL_IV: piv}, ct]))


def parse(message):
    """(protected bytes, kid, partial IV as int, ciphertext); CoseError on anything else."""
    try:
        obj = cbor.decode(message)
    except ValueError as e:
        raise CoseError("cose: not CBOR: %s" % e)
    if isinstance(obj, cbor.Tag):
        if obj.tag != TAG_ENCRYPT0:
            raise CoseError("cose: tag %d is not COSE_Encrypt0 (16)" % obj.tag)
        obj = obj.value
    if not isinstance(obj, list) or len(obj) != 3:
        raise CoseError("cose: COSE_Encrypt0 must be an array of 3")
    protected, unprotected, ct = obj
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict) \
            or not isinstance(ct, bytes):
        raise CoseError("cose: malformed COSE_Encrypt0 fields")
    try:
        headers = cbor.decode(protected) if protected else {}
    except ValueError:
        raise CoseError("cose: protected header is not CBOR")
    if not isinstance(headers, dict) or headers.get(HDR_ALG) != ALG_AES_CCM_16_128_256:
        raise CoseError("cose: algorithm must be AES-CCM-16-128-256 (31)")
    kid, piv = unprotected.get(HDR_KID), unprotected.get(HDR_PARTIAL_IV)
    if not isinstance(kid, bytes) or not isinstance(piv, bytes) or not 1 <= len(piv) <= NONCE_LEN:
        raise CoseError("cose: kid and a partial IV of 1..13 bytes are required")
    return protected, kid, int.from_bytes(piv, "big"), ct


def decrypt0(key, base_iv, message, ext_aad=b""):
    """(kid, partial IV, plaintext); CoseError or ccm.AuthError when it does not open."""
    protected, kid, counter, ct = parse(message)
    piv = partial_iv(counter)
    return kid, counter, ccm.decrypt(key, nonce(base_iv, piv), ct, _aad(protected, ext_aad),
                                     TAG_LEN)
