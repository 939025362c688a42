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
after the message is committed, or refused for good: nothing a device sends
can raise out of the accept path (a message that breaks it anyway is kept
in the quarantine table and acknowledged, not redelivered forever). When the
store cannot commit (disk full) or the key vault cannot be read (no KEK, a
KEK rotation cut short) the message is not acknowledged and the ingest
reconnects, so the broker sends it again. Each message costs one key
lookup, by its key id; the broker takes no packet over MAX_PACKET. Logs name
the device pseudonym, sizes and verdicts, never a reading.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from host_tools.broker import (
    INGEST_SUBSCRIPTION,
    SHARED_INGEST_SUBSCRIPTION,
    ingest_identity,
    reload_broker,
)
from host_tools.paths import ToolError
from host_tools.payloads import PayloadError, PayloadOpener
from host_tools.pki import OFFLINE_KEYS, OFFLINE_KEYS_ENV
from host_tools.server import Server

STORE_RETRY_S = 5  # pause before asking for a redelivery when the store failed
LOINC = {  # SenML quantity -> (LOINC code, display, UCUM unit)
    "heart-rate": ("8867-4", "Heart rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "body-temp": ("8310-5", "Body temperature", "Cel"),
    "steps": ("55423-8", "Number of steps in unspecified time Pedometer", "{steps}"),
}


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


def start_client(client: mqtt.Client, host: str, port: int, who: str) -> None:
    """Connect and start the network loop; ToolError when the broker cannot be reached."""
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ToolError(f"{who}: cannot reach the broker at {host}:{port}: {e}") from e
    client.loop_start()


DEVICE_ID = re.compile(r"[0-9a-f]{16}")  # a pseudonym, as provision makes them
QUARANTINE_ROWS = 1000  # the newest messages that broke the ingest, kept for a person


class StoreUnavailable(Exception):
    """The store or the key vault cannot be used (disk full, database locked, the KEK
    missing or a rotation cut short): not the message's fault."""


@dataclass
class Ingest:
    server: Server
    log: Any = sys.stderr
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    # (device id, partial IV, opened payload): for an in-process watcher (the sim)
    on_stored: Callable[[str, int, bytes], None] | None = None
    reasons: Counter[str] = field(default_factory=Counter)  # why messages were rejected

    def __post_init__(self) -> None:
        self.db = self.server.messages_db()
        self.vault = self.server.keys_db()
        self.db.execute("CREATE TABLE IF NOT EXISTS quarantine (received_ms INTEGER NOT NULL, "
                        "topic TEXT NOT NULL, reason TEXT NOT NULL, message BLOB NOT NULL)")

    def accept(self, topic: str, message: bytes) -> str:
        """Verdict for one message: 'stored', 'duplicate', 'rejected: why' or
        'quarantined: why'. Raises StoreUnavailable only: the message is not
        acknowledged then, and comes again."""
        try:
            return self._accept(topic, message)
        except StoreUnavailable:
            raise
        except Exception as e:  # a bug of ours meets this message: keep it aside, go on
            return self._quarantine(topic, message, type(e).__name__)

    def _accept(self, topic: str, message: bytes) -> str:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "devices" or parts[2] != "up" \
                or not DEVICE_ID.fullmatch(parts[1]):
            return self._reject("?", "not a device uplink topic")
        device_id = parts[1]
        try:
            kid = cbor2.loads(message).value[1][4]
        except Exception:
            return self._reject(device_id, "not a COSE_Encrypt0 message with a key id")
        # looked up for every message: a device forgotten a moment ago is refused now
        try:
            owner = self.server.key_by_id(kid, self.vault) if isinstance(kid, bytes) else None
        except (ToolError, sqlite3.OperationalError) as e:  # no KEK, a rotation cut short,
            raise StoreUnavailable(f"the key vault: {e}") from None  # a locked vault
        if owner is None:
            return self._reject(device_id, "unknown key id")
        if owner[0] != device_id:
            return self._reject(device_id, "topic names another device than the key's")
        try:
            _, piv, plaintext = PayloadOpener({kid: owner[1]}, in_order=False).open(
                message, device_id, topic)
        except PayloadError as e:
            return self._reject(device_id, str(e))
        try:
            self.db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                            (kid, piv, device_id, int(time.time() * 1000), message))
        except sqlite3.IntegrityError:
            self.duplicates += 1
            print(f"ingest: duplicate device={device_id} piv={piv}", file=self.log, flush=True)
            return "duplicate"
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(str(e)) from None
        self.stored += 1
        print(f"ingest: stored device={device_id} piv={piv} bytes={len(message)}",
              file=self.log, flush=True)
        if self.on_stored:
            try:
                self.on_stored(device_id, piv, plaintext)
            except Exception as e:  # the watcher's fault; the message is stored
                print(f"ingest: the watcher failed: {type(e).__name__}", file=self.log, flush=True)
        return "stored"

    def _reject(self, who: str, why: str) -> str:
        self.rejected += 1
        self.reasons[why.split(":")[0][:60]] += 1
        print(f"ingest: rejected from {who}: {why}", file=self.log, flush=True)
        return "rejected: " + why

    def _quarantine(self, topic: str, message: bytes, why: str) -> str:
        self.quarantined += 1
        try:
            self.db.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?)",
                            (int(time.time() * 1000), topic[:200], why, message))
            self.db.execute("DELETE FROM quarantine WHERE rowid <= (SELECT max(rowid) FROM "
                            "quarantine) - ?", (QUARANTINE_ROWS,))
        except sqlite3.Error as e:
            why += f" (not kept: {e})"
        print(f"ingest: quarantined a message of {len(message)} bytes: {why}", file=self.log,
              flush=True)
        return "quarantined: " + why

    def run(self, port: int, host: str = "localhost", process: int = 1,
            stop: threading.Event | None = None, ready: threading.Event | None = None,
            shared: bool = False) -> None:
        # A persistent session: what arrives while this process is away waits for it.
        identity = self.server.identity(ingest_identity(process))
        client = tls_client(self.server, identity, clean_session=False, manual_ack=True)
        unavailable = threading.Event()

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc != 0:
                print(f"ingest: broker refused: {rc}", file=self.log, flush=True)
                return
            c.subscribe(SHARED_INGEST_SUBSCRIPTION if shared else INGEST_SUBSCRIPTION, qos=1)

        def on_subscribe(*args: Any) -> None:
            if ready:
                ready.set()

        def on_message(c: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
            try:
                self.accept(m.topic, m.payload)
            except StoreUnavailable as e:  # no PUBACK: the broker sends it again
                print(f"ingest: store unavailable ({e}); reconnecting for a redelivery",
                      file=self.log, flush=True)
                unavailable.set()
                return
            c.ack(m.mid, m.qos)  # only now: stored, a duplicate, or refused for good

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.reconnect_delay_set(1, 10)
        start_client(client, host, port, "ingest")
        try:
            while not (stop and stop.is_set()):
                if unavailable.wait(0.1):
                    # MQTT 3.1.1 resends unacknowledged messages on a new connection
                    time.sleep(STORE_RETRY_S)
                    unavailable.clear()
                    client.reconnect()
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


def forget(server: Server, device_id: str,
           broker: tuple[str, int] | None = None) -> tuple[int, list[str]]:
    """Crypto-shred a device: key, records, certificate; the broker rereads its CRL, and
    its live session is cut at `broker` (host, port; default: this server's local
    broker). (messages deleted, what was done about the broker, for the operator)."""
    deleted = server.forget(device_id)
    if (server.ca.directory / f"{device_id}.crt").exists():
        server.ca.revoke(device_id)
    notes = [reload_broker(server.ca, server.broker_dir)]
    broker = broker or local_broker(server)
    if broker is None:
        notes.append("no broker given (--broker HOST:PORT): a live session of the device "
                     "lasts until it reconnects")
    else:
        try:
            cut_session(server, device_id, *broker)
            notes.append(f"its session at {broker[0]}:{broker[1]} was cut and its retained "
                         "status cleared")
        except ToolError as e:
            notes.append(f"its session was NOT cut: {e}")
    server.audit("forget", device_id, records_deleted=deleted)
    return deleted, notes


def local_broker(server: Server) -> tuple[str, int] | None:
    """(host, port) of the listener in this server's broker configuration, if any."""
    try:
        conf = (server.broker_dir / "mosquitto.conf").read_text()
    except OSError:
        return None
    for line in conf.splitlines():
        if line.startswith("listener "):
            _, port, *host = line.split()
            return (host[0] if host else "localhost"), int(port)
    return None


CUT_SESSION_MINUTES = 10  # the life of the certificate that takes a device's place


def cut_session(server: Server, device_id: str, host: str, port: int) -> None:
    """Close a forgotten or revoked device's live connection and clear its retained
    status (its last will). The broker makes a certificate's CN the client id, so a
    connection as the device takes its place: the CA issues a certificate for it that
    lives minutes, whose key stays in a temporary directory of 0700. Revoke the
    device's own certificate and reload the broker first, or it is back at once.
    ToolError when the broker cannot be reached or refuses."""
    connected = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        server.ca.issue(device_id, days=CUT_SESSION_MINUTES / 1440, into=Path(tmp))
        client = tls_client(server, device_id, cert_dir=Path(tmp))
        client.on_connect = lambda c, u, f, rc, p: rc == 0 and connected.set()
        start_client(client, host, port, "forget")
    try:
        if not connected.wait(10):
            raise ToolError(f"the broker at {host}:{port} did not let the session cut in")
        info = client.publish(f"devices/{device_id}/status", b"", qos=1, retain=True)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def open_server(directory: Path) -> Server:
    if not (directory / "pki" / "ca.crt").exists():
        raise ToolError(f"{directory} is not a wearsafe server directory (no pki/ca.crt): "
                        "create it with `wearsafe broker-config --server DIR`")
    (server := Server(directory)).ca.warn_expiring(server.broker_dir)  # CRL, CA, certs near end
    return server
