"""A hostile authenticated device: a provisioned device's own certificate, TLS key
and payload key in an attacker's hands (they sit in its flash). It connects with
any client id and session, publishes any bytes on any topic, and seals anything
under its own key with any partial IV. Also an honest device's host-side twin,
to count what a victim loses. paho-mqtt is the client; the broker is the real
Mosquitto of the fleet fixture (tests/conftest.py)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from host_tools.fleet.payloads import TAG_LEN, DeviceKey, enc_structure, external_aad, nonce
from host_tools.fleet.pki import FleetCA, write_private

PROTECTED = cbor2.dumps({1: 31})  # AES-CCM-16-128-256, as the firmware's cose.py


def device_tls_files(state: Path) -> tuple[str, str]:
    """The device's own certificate and key, from its bundle, as PEM files for paho."""
    certs = state / "certs"
    cert = x509.load_der_x509_certificate((certs / "device.der").read_bytes())
    key = serialization.load_der_private_key((certs / "device.key.der").read_bytes(), None)
    cert_path, key_path = certs / "device.pem", certs / "device.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def connect(fleet: Any, files: tuple[str | None, str | None], client_id: str,
            clean_session: bool = True, wait: float = 5) -> tuple[mqtt.Client, object]:
    """(client, CONNACK reason or the exception), its network loop running when it is in."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=clean_session)
    client.tls_set(ca_certs=str(fleet.server.ca.cert_path), certfile=files[0],
                   keyfile=files[1], cert_reqs=ssl.CERT_REQUIRED)
    result: list[object] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    client.on_disconnect = lambda *a: result.append(ConnectionError("closed by the broker"))
    try:
        client.connect("localhost", fleet.broker.port, keepalive=10)
    except (OSError, ssl.SSLError) as e:
        return client, e
    client.loop_start()
    deadline = time.monotonic() + wait
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    if not result or not client.is_connected():
        client.loop_stop()
        return client, result[0] if result else ConnectionError("closed by the broker")
    return client, result[0]


def seal(key: DeviceKey, device_id: str, piv: int, plaintext: bytes,
         topic: str | None = None) -> bytes:
    """COSE_Encrypt0 as the firmware seals it, with any partial IV (big-endian, minimal)."""
    raw = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    aad = external_aad(device_id, topic or f"devices/{device_id}/up")
    ct = AESCCM(key.key, tag_length=TAG_LEN).encrypt(nonce(key.base_iv, raw), plaintext,
                                                     enc_structure(PROTECTED, aad))
    return cbor2.dumps(cbor2.CBORTag(16, [PROTECTED, {4: key.key_id, 6: raw}, ct]))


def reading(device_id: str, t: int, heart_rate: float) -> bytes:
    """A SenML-CBOR pack of one heart-rate reading (RFC 8428 labels bn -2, n 0, u 1, v 2, t 6)."""
    return cbor2.dumps([{-2: f"urn:dev:wearsafe:{device_id}/", 0: "heart-rate", 1: "/min",
                         2: heart_rate, 6: t}])


class DeviceInHand:
    """A provisioned device (fleet.add_device()) whose secrets someone holds."""

    def __init__(self, fleet: Any, device: Any) -> None:
        self.fleet = fleet
        self.device_id: str = device.device_id
        self.files = device_tls_files(device.state)
        self.key = fleet.server.device_key(self.device_id)
        self.up = f"devices/{self.device_id}/up"
        self.client: mqtt.Client | None = None
        self.drops: list[float] = []  # when the broker closed its connection

    def connect(self, client_id: str | None = None, clean_session: bool = True) -> object:
        self.client, outcome = connect(self.fleet, self.files, client_id or self.device_id,
                                       clean_session)
        self.client.on_disconnect = lambda *a: self.drops.append(time.monotonic())
        return outcome

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    def publish(self, topic: str, payload: bytes, timeout: float = 5) -> bool:
        """True when the broker acknowledged it (QoS 1)."""
        assert self.client is not None
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def seal(self, piv: int, plaintext: bytes, topic: str | None = None) -> bytes:
        return seal(self.key, self.device_id, piv, plaintext, topic)

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def admitted(ca: FleetCA, port: int, cn: str) -> bool:
    """Whether the broker lets in a client proving identity `cn` (its CONNACK says so)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cn,
                         protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(ca.cert_path), certfile=str(ca.directory / f"{cn}.crt"),
                   keyfile=str(ca.directory / f"{cn}.key"), cert_reqs=ssl.CERT_REQUIRED)
    result: list[object] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    client.on_disconnect = lambda *a: result.append(None)  # closed before any CONNACK
    client.on_connect_fail = lambda *a: result.append(None)
    try:
        client.connect("localhost", port, keepalive=10)
    except (OSError, ssl.SSLError):
        return False  # the handshake failed: the broker refused the certificate
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not result and time.monotonic() < deadline:
            time.sleep(0.05)
        ok = bool(result) and result[0] is not None and not result[0].is_failure  # type: ignore[attr-defined]
        client.disconnect()
        return ok
    finally:
        client.loop_stop()
