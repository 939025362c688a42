# The device's identity and payload key, in the board's NVS (esp32.NVS on
# hardware, a file-backed emulation on the sim board):
#   dev_id   random pseudonym, the MQTT client id and topic segment
#   pkey     AES-256 payload key      kid  its key id
#   base_iv  13-byte COSE base IV     ctr_ceil  nonce counter ceiling
# No method returns the key in a printable form and no message names it.
from micropython import const

from wearsafe.cose import KEY_LEN, NONCE_LEN

NAMESPACE = "wearsafe"
_FIELDS = ("dev_id", "pkey", "kid", "base_iv", "ctr_ceil")
_MAX_BLOB = const(64)
RESERVE = const(1024)  # nonce counter values reserved per flash write
COUNTER_LIMIT = 1 << 48  # partial IVs stop here: rotate the key long before


class KeystoreError(Exception):
    pass


class CounterExhausted(KeystoreError):
    pass


def _get(nvs, name):
    buf = bytearray(_MAX_BLOB)
    try:
        n = nvs.get_blob(name, buf)
    except OSError:
        return None
    return bytes(buf[:n])


class Keystore:
    def __init__(self, nvs):
        self._nvs = nvs

    def __repr__(self):
        return "<Keystore %s>" % ("provisioned" if self.provisioned() else "empty")

    def provisioned(self):
        return _get(self._nvs, "pkey") is not None

    def provision(self, device_id, payload_key, key_id, base_iv):
        if self.provisioned():
            raise KeystoreError("keystore already provisioned: factory_reset() first")
        if len(payload_key) != KEY_LEN:
            raise KeystoreError("payload key must be %d bytes" % KEY_LEN)
        if len(base_iv) != NONCE_LEN:
            raise KeystoreError("base IV must be %d bytes" % NONCE_LEN)
        if not device_id or len(device_id) > 32 or not 1 <= len(key_id) <= 16:
            raise KeystoreError("device id must be 1..32 characters and key id 1..16 bytes")
        self._nvs.set_blob("dev_id", device_id.encode())
        self._nvs.set_blob("kid", key_id)
        self._nvs.set_blob("base_iv", base_iv)
        self._nvs.set_blob("ctr_ceil", bytes(8))
        self._nvs.set_blob("pkey", payload_key)  # last: its presence means complete
        self._nvs.commit()

    def _need(self, name):
        value = _get(self._nvs, name)
        if value is None:
            raise KeystoreError("keystore is not provisioned (no %s): provision the device"
                                % name)
        return value

    def device_id(self):
        return self._need("dev_id").decode()

    def key_id(self):
        return self._need("kid")

    def base_iv(self):
        return self._need("base_iv")

    def payload_key(self):
        return self._need("pkey")

    def counter(self):
        return NonceCounter(self._nvs)

    def factory_reset(self):
        for name in _FIELDS:
            try:
                self._nvs.erase_key(name)
            except OSError:
                pass  # not there
        self._nvs.commit()


class NonceCounter:
    """Partial IVs that never repeat across reboots and power cuts.

    A block of RESERVE values is written to flash as the new ceiling before
    the first of them is used; after a boot counting resumes at the stored
    ceiling, above anything that may have been used before the cut.
    """

    def __init__(self, nvs, reserve=RESERVE, limit=COUNTER_LIMIT):
        self._nvs = nvs
        self._reserve = reserve
        self._limit = limit
        stored = _get(nvs, "ctr_ceil")
        if stored is None:
            raise KeystoreError("keystore is not provisioned (no ctr_ceil): provision the device")
        self._next = self._ceiling = int.from_bytes(stored, "big")

    def next(self):
        if self._next >= self._limit:
            raise CounterExhausted("nonce counter exhausted: rotate the payload key")
        if self._next >= self._ceiling:
            ceiling = min(self._next + self._reserve, self._limit)
            self._nvs.set_blob("ctr_ceil", ceiling.to_bytes(8, "big"))
            self._nvs.commit()
            self._ceiling = ceiling
        value = self._next
        self._next += 1
        return value
