# COSE_Encrypt0 sealing, the keystore and the nonce counter on the device.
import board
from wearsafe import cbor, cose, keystore, seal
from wearsafe.crypto import ccm
from wstest import raises

KEY = bytes(range(32))
IV = bytes(range(100, 113))


class CountingNVS:
    """The board's NVS, counting commits (flash writes)."""

    def __init__(self, nvs):
        self.nvs = nvs
        self.commits = 0

    def __getattr__(self, name):
        return getattr(self.nvs, name)

    def commit(self):
        self.commits += 1
        self.nvs.commit()


def _fresh_store(name="t"):
    store = keystore.Keystore(board.nvs(name))
    store.factory_reset()
    store.provision("dev-a1b2", KEY, b"k1", IV)
    return store


def test_encrypt0_structure_and_round_trip():
    msg = cose.encrypt0(KEY, IV, b"k1", 5, b"payload", b"aad")
    tag = cbor.decode(msg)
    assert tag.tag == 16
    protected, unprotected, ct = tag.value
    assert protected == b"\xa1\x01\x18\x1f" and unprotected == {4: b"k1", 6: b"\x05"}
    assert len(ct) == len(b"payload") + 16
    assert cose.decrypt0(KEY, IV, msg, b"aad") == (b"k1", 5, b"payload")
    raises(ccm.AuthError, cose.decrypt0, KEY, IV, msg, b"other")


def test_nonce_is_base_iv_xor_left_padded_partial_iv():
    assert cose.nonce(IV, b"\x01\x02") == IV[:11] + bytes((IV[11] ^ 1, IV[12] ^ 2))
    assert cose.partial_iv(0) == b"\x00" and cose.partial_iv(256) == b"\x01\x00"


def test_malformed_messages_raise_cose_errors():
    good = cose.encrypt0(KEY, IV, b"k1", 1, b"x")
    for bad in (b"", b"\xc1\x00", cbor.encode([1, 2]), good[:-3],
                cbor.encode(cbor.Tag(16, [b"\xa1\x01\x18\x1e", {4: b"k", 6: b"\x01"}, b"x"])),
                cbor.encode(cbor.Tag(16, [b"\xa1\x01\x18\x1f", {4: b"k"}, b"x"]))):
        raises(cose.CoseError, cose.decrypt0, KEY, IV, bad)


def test_sealer_binds_device_and_topic_and_never_repeats_a_partial_iv():
    store = _fresh_store()
    sealer = seal.Sealer(store, "devices/dev-a1b2/up")
    aad = cose.external_aad("dev-a1b2", "devices/dev-a1b2/up")
    seen = set()
    for _ in range(5):
        kid, counter, pt = cose.decrypt0(KEY, IV, sealer.seal(b"r"), aad)
        assert kid == b"k1" and pt == b"r" and counter not in seen
        seen.add(counter)
    other = cose.external_aad("dev-ffff", "devices/dev-ffff/up")
    raises(ccm.AuthError, cose.decrypt0, KEY, IV, sealer.seal(b"r"), other)


def test_counter_resumes_above_the_reserved_ceiling_after_a_reboot():
    store = _fresh_store()
    nvs = CountingNVS(board.nvs("t"))
    counter = keystore.NonceCounter(nvs)
    for expected in range(2500):
        assert counter.next() == expected
    assert nvs.commits == 3  # one flash write per 1024 values
    after_reboot = keystore.NonceCounter(board.nvs("t")).next()
    assert after_reboot == 3 * keystore.RESERVE
    assert store.provisioned()


def test_counter_exhaustion_refuses_and_never_wraps():
    _fresh_store()
    counter = keystore.NonceCounter(board.nvs("t"), reserve=4, limit=10)
    assert [counter.next() for _ in range(10)] == list(range(10))
    e = raises(keystore.CounterExhausted, counter.next)
    assert "rotate the payload key" in str(e)
    raises(keystore.CounterExhausted, keystore.NonceCounter(board.nvs("t"), limit=10).next)


def test_keystore_checks_input_and_hides_the_key():
    store = _fresh_store()
    assert repr(store) == "<Keystore provisioned>"
    assert KEY.hex() not in repr(seal.Sealer(store, "t"))
    e = raises(keystore.KeystoreError, store.provision, "dev", KEY, b"k", IV)
    assert "already provisioned" in str(e)
    store.factory_reset()
    for bad in ((bytes(16), b"k", IV), (KEY, b"k", bytes(12)), (KEY, b"", IV)):
        e = raises(keystore.KeystoreError, store.provision, "dev", *bad)
        assert KEY.hex() not in str(e)


def test_factory_reset_erases_everything():
    store = _fresh_store()
    store.factory_reset()
    assert not store.provisioned()
    fresh = keystore.Keystore(board.nvs("t"))
    for read in (fresh.payload_key, fresh.device_id, fresh.base_iv, fresh.key_id, fresh.counter):
        e = raises(keystore.KeystoreError, read)
        assert "not provisioned" in str(e)
