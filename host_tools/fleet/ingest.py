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

import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from host_tools.fleet.broker import (
    INGEST_SUBSCRIPTION,
    SHARED_INGEST_SUBSCRIPTION,
    ingest_identity,
)
from host_tools.fleet.mqtt import start_client, tls_client
from host_tools.fleet.payloads import PayloadError, PayloadOpener
from host_tools.fleet.server import Server
from host_tools.paths import ToolError

STORE_RETRY_S = 5  # pause before asking for a redelivery when the store failed
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
            self.db.execute("INSERT INTO quarantine (received_ms, topic, reason, message) "
                            "VALUES (?, ?, ?, ?)",
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

