"""Messages sealed by the device code open with the host decoder and pycose, and back."""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest
from pycose.algorithms import AESCCM16128256
from pycose.headers import IV, KID, Algorithm, PartialIV
from pycose.keys import SymmetricKey
from pycose.messages import Enc0Message

from host_tools.fleet.payloads import (
    DeviceKey,
    PayloadError,
    PayloadOpener,
    external_aad,
    resolve_senml,
)
from tests.conftest import run_device

DEVICE, TOPIC = "d3adb33f", "devices/d3adb33f/up"


@pytest.fixture
def device_key() -> DeviceKey:
    return DeviceKey(b"kid-1", os.urandom(32), os.urandom(13))


def seal_on_device(state: Path, key: DeviceKey, count: int) -> list[bytes]:
    code = f"""
import board
from binascii import hexlify
from wearsafe import keystore, seal, senml
store = keystore.Keystore(board.nvs("wearsafe"))
if not store.provisioned():
    store.provision({DEVICE!r}, {key.key!r}, {key.key_id!r}, {key.base_iv!r})
sealer = seal.Sealer(store, {TOPIC!r})
for i in range({count}):
    pack = senml.encode_pack({DEVICE!r}, 1700000000 + i, {{"heart-rate": [(0, 60 + i)],
                             "spo2": [(0, 0.96875)], "body-temp": [(0, 36.625)]}})
    print(hexlify(sealer.seal(pack)).decode())
"""
    return [bytes.fromhex(line) for line in run_device(code, state).split()]


def test_device_messages_open_with_the_host_decoder(sim_build, tmp_path, device_key):
    messages = seal_on_device(tmp_path, device_key, 3)
    opener = PayloadOpener({device_key.key_id: device_key})
    for i, message in enumerate(messages):
        records = sorted(opener.open_senml(message, DEVICE, TOPIC), key=lambda r: r["n"])
        assert records == [
            {"n": f"{DEVICE}/body-temp", "u": "Cel", "v": 36.625, "t": 1700000000 + i},
            {"n": f"{DEVICE}/heart-rate", "u": "beat/min", "v": 60 + i, "t": 1700000000 + i},
            {"n": f"{DEVICE}/spo2", "u": "/", "v": 0.96875, "t": 1700000000 + i},
        ]
    with pytest.raises(PayloadError, match="replayed or stale partial IV"):
        opener.open(messages[1], DEVICE, TOPIC)


def test_device_messages_open_with_pycose(sim_build, tmp_path, device_key):
    (message,) = seal_on_device(tmp_path, device_key, 1)
    msg = Enc0Message.decode(message)
    msg.key = SymmetricKey(k=device_key.key)
    msg.external_aad = external_aad(DEVICE, TOPIC)
    piv = msg.uhdr[PartialIV]
    msg.uhdr_update({IV: bytes(a ^ b for a, b in zip(device_key.base_iv,
                                                      piv.rjust(13, b"\0"), strict=True))})
    del msg.uhdr[PartialIV]
    assert msg.phdr == {Algorithm: AESCCM16128256}
    records = resolve_senml(cbor2.loads(msg.decrypt()))
    assert {"n": f"{DEVICE}/body-temp", "u": "Cel", "v": 36.625, "t": 1700000000} in records


def test_partial_ivs_continue_across_device_restarts(sim_build, tmp_path, device_key):
    opener = PayloadOpener({device_key.key_id: device_key})
    for _ in range(3):  # three boots of the same device
        for message in seal_on_device(tmp_path, device_key, 2):
            opener.open(message, DEVICE, TOPIC)


def test_wrong_device_topic_or_tampering_is_rejected(sim_build, tmp_path, device_key):
    (message,) = seal_on_device(tmp_path, device_key, 1)
    opener = PayloadOpener({device_key.key_id: device_key})
    with pytest.raises(PayloadError, match="authentication failed"):
        opener.open(message, "someone-else", TOPIC)
    with pytest.raises(PayloadError, match="authentication failed"):
        opener.open(message, DEVICE, "devices/other/up")
    tampered = bytearray(message)
    tampered[-1] ^= 1
    with pytest.raises(PayloadError, match="authentication failed"):
        opener.open(bytes(tampered), DEVICE, TOPIC)
    with pytest.raises(PayloadError, match="unknown key id"):
        PayloadOpener({}).open(message, DEVICE, TOPIC)
    for junk in (b"", b"\xff", cbor2.dumps([1, 2, 3]), cbor2.dumps(cbor2.CBORTag(17, []))):
        with pytest.raises(PayloadError):
            opener.open(junk, DEVICE, TOPIC)
    assert device_key.key.hex() not in repr(device_key)


def test_a_message_sealed_on_the_host_opens_on_the_device(sim_build, tmp_path, device_key):
    piv = b"\x07"
    msg = Enc0Message(phdr={Algorithm: AESCCM16128256},
                      uhdr={KID: device_key.key_id,
                            IV: bytes(a ^ b for a, b in zip(device_key.base_iv,
                                                            piv.rjust(13, b"\0"), strict=True))},
                      payload=b"sealed on the host", external_aad=external_aad(DEVICE, TOPIC))
    msg.key = SymmetricKey(k=device_key.key)
    encoded = msg.encode(tag=True)
    # Replace the full IV by the partial IV the device expects (RFC 9052 section 3.1).
    tag = cbor2.loads(encoded)
    tag.value[1] = {4: device_key.key_id, 6: piv}
    wire = cbor2.dumps(tag)
    out = run_device(f"""
from wearsafe import cose
print(cose.decrypt0({device_key.key!r}, {device_key.base_iv!r}, {wire!r},
                    cose.external_aad({DEVICE!r}, {TOPIC!r})))
""", tmp_path)
    assert out.strip() == f"({device_key.key_id!r}, 7, b'sealed on the host')"
