# Seals payloads for one topic under the device's own key: every call takes
# a fresh partial IV from the persistent counter.
from wearsafe import cose


class Sealer:
    def __init__(self, keystore, topic):
        self._key = keystore.payload_key()
        self._base_iv = keystore.base_iv()
        self._kid = keystore.key_id()
        self._aad = cose.external_aad(keystore.device_id(), topic)
        self._counter = keystore.counter()
        self.partial_iv = None  # the last one used: logged, it is on the wire anyway

    def __repr__(self):
        return "<Sealer kid=%s>" % self._kid.hex()

    def seal(self, payload):
        self.partial_iv = self._counter.next()
        return cose.encrypt0(self._key, self._base_iv, self._kid, self.partial_iv,
                             payload, self._aad)
