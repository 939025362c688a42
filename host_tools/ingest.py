"""The ingest: takes sealed messages off the broker and stores them, once each.

It connects with its own client certificate and reads devices/+/up in a
persistent session, so what arrives while it is away waits for it, broker
restarts included. Several ingest processes may split the load through the
shared subscription $share/ingest/... (`shared`), at a cost: Mosquitto 2.0
forgets shared subscriptions when it restarts, so messages published before
the ingest processes reconnect are dropped.

Each message must open under the key registered for the device its topic
names (AAD binds device and topic); what is stored is the sealed
message itself, keyed by (key id, partial IV): a redelivery or a replay of a
stored message is counted, never stored twice. The PUBACK goes out only
after the message is committed. Logs name the device pseudonym, sizes and
verdicts, never a reading.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from host_tools.broker import INGEST_ID, INGEST_SUBSCRIPTION, SHARED_INGEST_SUBSCRIPTION
from host_tools.paths import ToolError
from host_tools.payloads import PayloadError, PayloadOpener
from host_tools.server import Server

LOINC = {  # SenML quantity -> (LOINC code, display, UCUM unit)
    "heart-rate": ("8867-4", "Heart rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "body-temp": ("8310-5", "Body temperature", "Cel"),
    "steps": ("55423-8", "Number of steps in unspecified time Pedometer", "{steps}"),
}


def tls_client(server: Server, identity: str, client_id: str,
               clean_session: bool = True) -> mqtt.Client:
    """A paho client that proves `identity` (a certificate of the fleet CA)."""
    pki = server.ca.directory
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=clean_session)
    client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / f"{identity}.crt"),
                   keyfile=str(pki / f"{identity}.key"), cert_reqs=ssl.CERT_REQUIRED)
    return client


def start_client(client: mqtt.Client, host: str, port: int, who: str) -> None:
    """Connect and start the network loop; ToolError when the broker cannot be reached."""
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ToolError(f"{who}: cannot reach the broker at {host}:{port}: {e}") from e
    client.loop_start()


@dataclass
class Ingest:
    server: Server
    log: Any = sys.stderr
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    # (device id, partial IV, opened payload): for an in-process watcher (the sim)
    on_stored: Callable[[str, int, bytes], None] | None = None
    _keys: dict[bytes, tuple[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db = self.server.messages_db()

    def _key(self, kid: bytes) -> tuple[str, Any] | None:
        if kid not in self._keys:
            self._keys = self.server.keys()  # a device provisioned since: reload
        return self._keys.get(kid)

    def accept(self, topic: str, message: bytes) -> str:
        """Verdict for one message: 'stored', 'duplicate' or 'rejected: why'."""
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "devices" or parts[2] != "up":
            return self._reject(topic, "not a device uplink topic")
        device_id = parts[1]
        try:
            kid = cbor2.loads(message).value[1][4]
        except Exception:
            return self._reject(device_id, "not a COSE_Encrypt0 message with a key id")
        owner = self._key(kid) if isinstance(kid, bytes) else None
        if owner is None:
            return self._reject(device_id, "unknown key id")
        if owner[0] != device_id:
            return self._reject(device_id, "topic names another device than the key's")
        opener = PayloadOpener({kid: owner[1]}, in_order=False)
        try:
            _, piv, plaintext = opener.open(message, device_id, topic)
        except PayloadError as e:
            return self._reject(device_id, str(e))
        try:
            self.db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                            (kid, piv, device_id, int(time.time() * 1000), message))
        except sqlite3.IntegrityError:
            self.duplicates += 1
            print(f"ingest: duplicate device={device_id} piv={piv}", file=self.log, flush=True)
            return "duplicate"
        self.stored += 1
        print(f"ingest: stored device={device_id} piv={piv} bytes={len(message)}",
              file=self.log, flush=True)
        if self.on_stored:
            self.on_stored(device_id, piv, plaintext)
        return "stored"

    def _reject(self, who: str, why: str) -> str:
        self.rejected += 1
        print(f"ingest: rejected from {who}: {why}", file=self.log, flush=True)
        return "rejected: " + why

    def run(self, port: int, host: str = "localhost", client_id: str = "ingest-1",
            stop: threading.Event | None = None, ready: threading.Event | None = None,
            shared: bool = False) -> None:
        # A persistent session: what arrives while this process is away waits for it.
        client = tls_client(self.server, INGEST_ID, client_id, clean_session=False)

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc != 0:
                print(f"ingest: broker refused: {rc}", file=self.log, flush=True)
                return
            c.subscribe(SHARED_INGEST_SUBSCRIPTION if shared else INGEST_SUBSCRIPTION, qos=1)

        def on_subscribe(*args: Any) -> None:
            if ready:
                ready.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = lambda c, u, m: self.accept(m.topic, m.payload)
        client.reconnect_delay_set(1, 10)
        start_client(client, host, port, "ingest")
        try:
            while not (stop and stop.is_set()):
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            client.disconnect()
            client.loop_stop()


# -- export: for an authorised operator only; every export is audited --------

def readings(server: Server, device_id: str) -> list[dict[str, Any]]:
    """Every stored reading of a device, opened with its key."""
    opener = PayloadOpener({(key := server.device_key(device_id)).key_id: key}, in_order=False)
    topic = f"devices/{device_id}/up"
    out = []
    for _, sealed in server.stored(device_id):
        for record in opener.open_senml(sealed, device_id, topic):
            quantity = record["n"].rsplit("/", 1)[-1]
            out.append({"time": record["t"], "quantity": quantity, "value": record["v"],
                        "unit": record["u"]})
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["time", "quantity", "value", "unit"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"]))
        writer.writerow(dict(row, time=iso))
    return buf.getvalue()


def to_fhir(device_id: str, rows: list[dict[str, Any]]) -> str:
    """A FHIR R4 collection Bundle of vital-signs Observations."""
    entries = []
    for row in rows:
        if row["quantity"] not in LOINC:
            continue
        code, display, unit = LOINC[row["quantity"]]
        value = row["value"] * 100 if row["quantity"] == "spo2" else row["value"]
        entries.append({"resource": {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs" if row["quantity"] != "steps" else "activity"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code,
                                 "display": display}]},
            "device": {"identifier": {"system": "urn:wearsafe:device", "value": device_id}},
            "effectiveDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"])),
            "valueQuantity": {"value": round(value, 2), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries},
                      indent=1)


def export(server: Server, device_id: str, fmt: str) -> str:
    if fmt not in ("csv", "fhir"):
        raise ToolError(f"unknown export format {fmt!r}: choose csv or fhir")
    rows = readings(server, device_id)
    server.audit("export", device_id, readings=len(rows))
    return to_csv(rows) if fmt == "csv" else to_fhir(device_id, rows)


def forget(server: Server, device_id: str) -> int:
    """Crypto-shred a device: key, records, certificate; the broker rereads its CRL."""
    deleted = server.forget(device_id)
    if (server.ca.directory / f"{device_id}.crt").exists():
        server.ca.revoke(device_id)
    reload_broker(server)
    server.audit("forget", device_id, records_deleted=deleted)
    return deleted


def reload_broker(server: Server) -> None:
    """Give a running broker of this server the new CRL (it rereads it on SIGHUP)."""
    broker = server.broker_dir
    if not (broker / "mosquitto.conf").exists():
        return
    shutil.copy2(server.ca.crl_path, broker / "crl.pem")
    pid_file = broker / "mosquitto.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGHUP)
        except (ProcessLookupError, ValueError):
            pass  # not running: it reads the CRL when it starts


def open_server(directory: Path) -> Server:
    if not (directory / "pki" / "ca.key").exists():
        raise ToolError(f"{directory} is not a wearsafe server directory (no pki/ca.key): "
                        "create it with `wearsafe broker-config --server DIR`")
    return Server(directory)
