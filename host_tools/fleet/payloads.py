"""Opening device payloads on the host: COSE_Encrypt0 over SenML-CBOR.

The ingest's decoder. It accepts only what the device sends: COSE_Encrypt0
with AES-CCM-16-128-256 (alg 31), a known key id, the external AAD binding
device id and topic, and a partial IV below the device's counter limit. A
PayloadOpener with in_order also refuses a partial IV not above the last one
it accepted; the ingest opens out of order (a backlog arrives in any order)
and refuses replays through the store's unique (key id, partial IV).
Decryption uses `cryptography`'s AESCCM and parsing `cbor2` (which decodes
nested maps as Mapping, not dict): implementations independent of the device's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

ALG_AES_CCM_16_128_256 = 31
NONCE_LEN = 13
TAG_LEN = 16
# firmware/lib/wearsafe/keystore.py COUNTER_LIMIT: a device's partial IVs stay below
# it, so a larger one is forged or broken (and would not fit a 64-bit SQL integer)
PARTIAL_IV_LIMIT = 1 << 48
SENML_BN, SENML_BT, SENML_BU, SENML_BV, SENML_N, SENML_U, SENML_V, SENML_T = \
    -2, -3, -4, -5, 0, 1, 2, 6
SENML_VS = 3  # string value


class PayloadError(Exception):
    """A message that must not be accepted; the message says why (never the key)."""


@dataclass(frozen=True, repr=False)
class DeviceKey:
    key_id: bytes
    key: bytes
    base_iv: bytes

    def __repr__(self) -> str:
        return f"DeviceKey(key_id={self.key_id.hex()})"


# Cached: the ingest opens thousands of messages a second from a few devices each
# (by topic and pseudonym, which the broker's ACL fixes: no device can grow it).
@functools.lru_cache(maxsize=4096)
def external_aad(device_id: str, topic: str) -> bytes:
    return cbor2.dumps([device_id, topic])


def nonce(base_iv: bytes, partial_iv: bytes) -> bytes:
    """RFC 9052 section 3.1: the partial IV, left-padded, XORed into the base IV."""
    if len(base_iv) != NONCE_LEN or len(partial_iv) > NONCE_LEN:
        raise ValueError("a base IV of 13 bytes and a partial IV of at most 13 are needed")
    value = int.from_bytes(base_iv, "big") ^ int.from_bytes(partial_iv, "big")
    return value.to_bytes(NONCE_LEN, "big")


def enc_structure(protected: bytes, aad: bytes) -> bytes:
    return cbor2.dumps(["Encrypt0", protected, aad])


# Cached for the protected headers devices send (a few bytes: {1: 31}); a longer one
# a hostile device makes up is built each time, so the cache holds 4096 small items.
USUAL_PROTECTED = 16


@functools.lru_cache(maxsize=4096)
def _usual_enc_structure(protected: bytes, device_id: str, topic: str) -> bytes:
    return enc_structure(protected, external_aad(device_id, topic))


def message_aad(protected: bytes, device_id: str, topic: str) -> bytes:
    """The Enc_structure (RFC 9052 section 5.3) a device's message is sealed under."""
    if len(protected) <= USUAL_PROTECTED:
        return _usual_enc_structure(protected, device_id, topic)
    return enc_structure(protected, external_aad(device_id, topic))


def decode_message(message: bytes) -> Any:
    """The CBOR item a message is; PayloadError if it is not CBOR."""
    try:
        return cbor2.loads(message)
    except Exception as e:  # cbor2 raises several types on malformed input
        raise PayloadError(f"not CBOR: {e}") from None


def resolve_senml(records: Any) -> list[dict[str, Any]]:
    """RFC 8428 section 4.6 resolution of a SenML-CBOR pack."""
    if not isinstance(records, list | tuple):
        raise PayloadError("payload is not a SenML pack (CBOR array)")
    base_name, base_time, base_unit, base_value = "", 0, None, 0
    resolved = []
    for record in records:
        if not isinstance(record, Mapping):
            raise PayloadError("SenML record is not a map")
        base_name = record.get(SENML_BN, base_name)
        base_time = record.get(SENML_BT, base_time)
        base_unit = record.get(SENML_BU, base_unit)
        base_value = record.get(SENML_BV, base_value)
        value = record.get(SENML_V)
        resolved.append({"n": base_name + record.get(SENML_N, ""),
                         "u": record.get(SENML_U, base_unit),
                         "v": record.get(SENML_VS) if value is None else base_value + value,
                         "t": base_time + record.get(SENML_T, 0)})
    return resolved


@dataclass
class PayloadOpener:
    """Opens messages; with `in_order`, refuses a partial IV not above the last one.

    The ingest turns `in_order` off: with a shared subscription, messages of
    one device may reach several ingest processes and commit in any order,
    so it refuses replays by the store's uniqueness on (key id, partial IV).
    """

    keys: Mapping[bytes, DeviceKey]
    last_partial_iv: dict[bytes, int] = field(default_factory=dict)
    in_order: bool = True
    _ciphers: dict[bytes, AESCCM] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)  # by key id

    def open(self, message: bytes, device_id: str, topic: str) -> tuple[bytes, int, bytes]:
        """(key id, partial IV, plaintext) of an authentic, fresh message."""
        return self.open_decoded(decode_message(message), device_id, topic)

    def open_decoded(self, obj: Any, device_id: str, topic: str) -> tuple[bytes, int, bytes]:
        """open() of a message decode_message() has decoded."""
        if isinstance(obj, cbor2.CBORTag):
            if obj.tag != 16:
                raise PayloadError(f"CBOR tag {obj.tag} is not COSE_Encrypt0 (16)")
            obj = obj.value
        if not (isinstance(obj, list | tuple) and len(obj) == 3):
            raise PayloadError("COSE_Encrypt0 must be an array of three items")
        protected, unprotected, ciphertext = obj
        if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping)
                and isinstance(ciphertext, bytes)):
            raise PayloadError("COSE_Encrypt0 fields have the wrong types")
        try:
            headers = cbor2.loads(protected)
        except Exception:
            raise PayloadError("protected header is not CBOR") from None
        if not isinstance(headers, Mapping) or headers.get(1) != ALG_AES_CCM_16_128_256:
            raise PayloadError("algorithm is not AES-CCM-16-128-256 (31)")
        kid, piv = unprotected.get(4), unprotected.get(6)
        if not isinstance(kid, bytes) or not isinstance(piv, bytes) \
                or not 1 <= len(piv) <= NONCE_LEN:
            raise PayloadError("kid and a partial IV of 1..13 bytes are required")
        device_key = self.keys.get(kid)
        if device_key is None:
            raise PayloadError(f"unknown key id {kid.hex()}")
        counter = int.from_bytes(piv, "big")
        if counter >= PARTIAL_IV_LIMIT:
            raise PayloadError(f"partial IV {counter} is beyond any device's counter "
                               f"(keystore.COUNTER_LIMIT, 2^48)")
        last = self.last_partial_iv.get(kid, -1)
        if self.in_order and counter <= last:
            raise PayloadError(f"replayed or stale partial IV {counter} (last accepted {last})")
        try:
            cipher = self._ciphers.get(kid)
            if cipher is None:
                cipher = self._ciphers[kid] = AESCCM(device_key.key, tag_length=TAG_LEN)
            plaintext = cipher.decrypt(nonce(device_key.base_iv, piv), ciphertext,
                                       message_aad(protected, device_id, topic))
        except InvalidTag:
            raise PayloadError("authentication failed: wrong key, device, topic or "
                               "tampered message") from None
        self.last_partial_iv[kid] = max(counter, last)
        return kid, counter, plaintext

    def open_senml(self, message: bytes, device_id: str, topic: str) -> list[dict[str, Any]]:
        return decode_senml(self.open(message, device_id, topic)[2])


def decode_senml(plaintext: bytes) -> list[dict[str, Any]]:
    """An opened payload's SenML records, resolved; PayloadError if it is not SenML-CBOR."""
    try:
        return resolve_senml(cbor2.loads(plaintext))
    except PayloadError:
        raise
    except Exception as e:
        raise PayloadError(f"payload is not SenML-CBOR: {e}") from None
