"""The fleet's own MQTT clients (ingest, release, hil, forget): paho over mutual TLS,
each proving a certificate of the fleet CA whose CN the broker makes its client id."""

from __future__ import annotations

import ssl
import struct
from pathlib import Path

import paho.mqtt.client as mqtt

from host_tools.fleet.pki import OFFLINE_KEYS, OFFLINE_KEYS_ENV
from host_tools.fleet.server import Server
from host_tools.paths import ToolError

PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 section 3.4: type 4, length 2, packet id


def tls_client(server: Server, identity: str, clean_session: bool = True,
               manual_ack: bool = False, cert_dir: Path | None = None) -> mqtt.Client:
    """A paho client that proves `identity` (a certificate of the fleet CA, in its
    directory or `cert_dir`), which the broker also makes its client id."""
    ca = server.ca
    certs = cert_dir or ca.directory
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity,
                         protocol=mqtt.MQTTv311, clean_session=clean_session,
                         manual_ack=manual_ack)
    key = certs / f"{identity}.key" if cert_dir else ca.private_key_path(f"{identity}.key")
    if not key.is_file():
        raise ToolError(f"no private key for {identity} in {key.parent}"
                        + (f" (set {OFFLINE_KEYS_ENV} to where `wearsafe keys-offline` moved "
                           "it)" if key.name in OFFLINE_KEYS else ""))
    client.tls_set(ca_certs=str(ca.cert_path), certfile=str(certs / f"{identity}.crt"),
                   keyfile=str(key), cert_reqs=ssl.CERT_REQUIRED)
    return client


def connect_client(client: mqtt.Client, host: str, port: int, who: str) -> None:
    """Connect; ToolError when the broker cannot be reached."""
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ToolError(f"{who}: cannot reach the broker at {host}:{port}: {e}") from e


def start_client(client: mqtt.Client, host: str, port: int, who: str) -> None:
    """Connect and start the network loop in a thread of its own."""
    connect_client(client, host, port, who)
    client.loop_start()


def acknowledge(client: mqtt.Client, messages: list[mqtt.MQTTMessage]) -> None:
    """PUBACK the QoS 1 messages, in the order they came (MQTT 3.1.1 section 4.6), in
    one write. paho's ack() sends each on its own (a TLS record and a wake-up of its
    loop each: a tenth of an ingest worker's time), so this puts them in paho's
    outgoing queue as one packet, through its private _packet_queue (paho-mqtt is
    pinned; tests/test_ingest_acks.py checks this against paho's ack())."""
    acks = b"".join(PUBACK.pack(mqtt.PUBACK, 2, m.mid) for m in messages if m.qos == 1)
    if acks:
        client._packet_queue(mqtt.PUBACK, acks, 0, 0)
