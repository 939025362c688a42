"""The ingest: takes sealed messages off the broker and stores them, once each.

It connects with its own client certificate and reads devices/+/up in a
persistent session, so what arrives while it is away waits for it, broker
restarts included. Several ingest processes share the load in one of two ways:

- partitioned (`processes`, the default for more than one): every process
  reads every message in its own persistent session and stores only its share
  of the devices (by pseudonym), acknowledging the rest; a broker restart
  loses nothing, at the cost of each message crossing the network N times;
- shared (`shared`): the broker hands each message to one process of the
  subscription $share/ingest/...; but Mosquitto 2.0 forgets shared
  subscriptions when it restarts, so messages published before the ingest
  processes reconnect are dropped.

Each message must open under the key registered for the device its topic
names (AAD binds device and topic); what is stored is the sealed
message itself, keyed by (key id, partial IV): a redelivery or a replay of a
stored message is counted, never stored twice, whichever process commits first.
Messages are taken in batches, as many as have arrived (up to half the broker's
in-flight window, so the next half arrives while one is stored):
one key lookup per key id and one transaction per batch, and the PUBACKs go
out, in one write, only after the batch is committed (or a message is
refused for good): nothing a device sends can raise out of the accept path
(a message that breaks it anyway is kept in the quarantine table and
acknowledged, not redelivered forever). When the store cannot commit (disk
full) or the key vault cannot be read (no KEK, a KEK rotation cut short) no
message of the batch is acknowledged and the ingest reconnects, so the broker
sends them again. The broker takes no packet over MAX_PACKET. Logs name the
device pseudonym, sizes and verdicts, never a reading.
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
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from host_tools.fleet.broker import (
    INFLIGHT_WINDOW,
    INGEST_PROCESSES,
    INGEST_SUBSCRIPTION,
    SHARED_INGEST_SUBSCRIPTION,
    ingest_identity,
)
from host_tools.fleet.mqtt import acknowledge, connect_client, tls_client
from host_tools.fleet.payloads import PayloadError, PayloadOpener, decode_message
from host_tools.fleet.server import Server
from host_tools.fleet.store import insert_new
from host_tools.paths import ToolError

STORE_RETRY_S = 5  # pause before asking for a redelivery when the store failed
DEVICE_ID = re.compile(r"[0-9a-f]{16}")  # a pseudonym, as provision makes them
BATCH = INFLIGHT_WINDOW // 2  # the most messages in one transaction
QUARANTINE_ROWS = 1000  # the newest messages that broke the ingest, kept for a person


class Row(NamedTuple):
    """An opened message, to be stored sealed as it came."""
    kid: bytes
    piv: int
    device_id: str
    message: bytes
    plaintext: bytes


def _decoded(message: bytes) -> tuple[Any, bytes | None]:
    """The message's CBOR item and key id (None where it has none)."""
    try:
        obj = decode_message(message)
        kid = obj.value[1][4]
    except Exception:
        return None, None
    return obj, kid if isinstance(kid, bytes) else None


class Rejection(NamedTuple):
    """A message refused for good: whose (a pseudonym, or ?) and why."""
    who: str
    why: str


class _Opened(NamedTuple):
    """A batch opened, before anything is written: the verdicts; the rows to store,
    by index in the batch; the (topic, message, why) to quarantine; and the
    rejections, counted and logged once the batch is written (a batch the store
    could not take comes again)."""
    verdicts: list[str]
    rows: dict[int, Row]
    broken: list[tuple[str, bytes, str]]
    rejections: list[Rejection]

    def in_key_order(self) -> list[Row]:
        """The rows by (key id, partial IV): two processes inserting overlapping
        batches take the rows' locks in the same order, so neither waits forever."""
        return sorted(self.rows.values(), key=lambda row: (row.kid, row.piv))


class StoreUnavailable(Exception):
    """The store or the key vault cannot be used (disk full, database locked, the KEK
    missing or a rotation cut short): not the message's fault."""


def partition_of(device_id: str, processes: int) -> int:
    """The ingest process (1..processes) that stores this device's messages."""
    return int(device_id, 16) % processes + 1


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
    process: int = 1  # this process's number, and its share of the devices ...
    processes: int = 1  # ... among this many partitioned ingest processes

    def __post_init__(self) -> None:
        most = self.processes if self.processes > 1 else INGEST_PROCESSES  # shared: any
        if not (1 <= self.processes <= INGEST_PROCESSES and 1 <= self.process <= most):
            raise ToolError(f"ingest process {self.process} of {self.processes}: give 1 to "
                            f"{INGEST_PROCESSES} processes, each numbered up to that")
        self.db = self.server.messages_db()
        self.vault = self.server.keys_db()
        self.db.execute("CREATE TABLE IF NOT EXISTS quarantine (received_ms INTEGER NOT NULL, "
                        "topic TEXT NOT NULL, reason TEXT NOT NULL, message BLOB NOT NULL)")
        self._lines: list[str] = []  # this batch's log lines, written at once

    def accept(self, topic: str, message: bytes) -> str:
        """Verdict for one message: see accept_batch."""
        return self.accept_batch([(topic, message)])[0]

    def accept_batch(self, messages: list[tuple[str, bytes]]) -> list[str]:
        """A verdict per (topic, message): 'stored', 'duplicate', 'rejected: why',
        'quarantined: why', or 'another process's' (partitioned). Raises
        StoreUnavailable only: then nothing of the batch is acknowledged, and
        all of it comes again."""
        opened = self._opened(messages)
        return self._judged(opened, self._write(opened))

    def _opened(self, messages: list[tuple[str, bytes]]) -> _Opened:
        """The batch opened and judged; nothing written yet. Raises StoreUnavailable."""
        opened = _Opened([], {}, [], [])
        # another process's share is neither decoded nor looked up here
        decoded = [_decoded(message) if self._mine(topic) else (None, None)
                   for topic, message in messages]
        # looked up for every batch: a device forgotten a moment ago is refused now
        opener, owners = self._opener({kid for _, kid in decoded if kid is not None})
        for (topic, message), (obj, kid) in zip(messages, decoded, strict=True):
            try:
                verdict = self._open(topic, message, obj, kid, opener, owners)
            except Exception as e:  # a bug of ours meets this message: keep it aside
                opened.broken.append((topic, message, type(e).__name__))
                verdict = "quarantined: " + type(e).__name__
            if isinstance(verdict, Row):
                opened.rows[len(opened.verdicts)] = verdict
                verdict = "stored"
            elif isinstance(verdict, Rejection):
                opened.rejections.append(verdict)
                verdict = "rejected: " + verdict.why
            opened.verdicts.append(verdict)
        return opened

    def _write(self, opened: _Opened) -> set[tuple[bytes, int]]:
        """Keep the broken messages in the quarantine and store the rows, in one
        statement; the (key id, partial IV) of the rows stored. Raises StoreUnavailable."""
        try:
            for topic, message, why in opened.broken:
                self._quarantine(topic, message, why)
        finally:
            self._flush_log()
        if not opened.rows:
            return set()
        now = int(time.time() * 1000)
        try:
            return insert_new(self.db, [(row.kid, row.piv, row.device_id, now, row.message)
                                        for row in opened.in_key_order()])
        except sqlite3.Error as e:  # disk full, locked, the database gone: all comes again
            raise StoreUnavailable(str(e)) from None

    def _judged(self, opened: _Opened, inserted: set[tuple[bytes, int]]) -> list[str]:
        """The batch's verdicts, once written: a row not inserted was a duplicate."""
        verdicts = opened.verdicts
        for rejection in opened.rejections:  # counted once: a batch not written comes again
            self._count_rejection(rejection)
        for i, row in opened.rows.items():  # of a key twice in a batch, the first is stored
            if (row.kid, row.piv) not in inserted:
                verdicts[i] = "duplicate"
                self.duplicates += 1
                self._say(f"ingest: duplicate device={row.device_id} piv={row.piv}")
                continue
            inserted.discard((row.kid, row.piv))
            self.stored += 1
            self._say(f"ingest: stored device={row.device_id} piv={row.piv} "
                      f"bytes={len(row.message)}")
            if self.on_stored:
                try:
                    self.on_stored(row.device_id, row.piv, row.plaintext)
                except Exception as e:  # the watcher's fault; the message is stored
                    self._say(f"ingest: the watcher failed: {type(e).__name__}")
        self._flush_log()
        return verdicts

    def _opener(self, kids: set[bytes]) -> tuple[PayloadOpener, dict[bytes, str]]:
        """An opener with the keys registered under `kids`, and each one's device."""
        try:
            found = self.server.keys_by_id(kids, self.vault)
        except (ToolError, sqlite3.Error) as e:  # no KEK, a rotation cut short, a locked
            raise StoreUnavailable(f"the key vault: {e}") from None  # or broken vault
        return (PayloadOpener({kid: key for kid, (_, key) in found.items()}, in_order=False),
                {kid: device_id for kid, (device_id, _) in found.items()})

    def _open(self, topic: str, message: bytes, obj: Any, kid: bytes | None,
              opener: PayloadOpener, owners: dict[bytes, str]) -> str | Row | Rejection:
        """The message's row to store, its rejection, or its verdict."""
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "devices" or parts[2] != "up" \
                or not DEVICE_ID.fullmatch(parts[1]):
            return Rejection("?", "not a device uplink topic")
        device_id = parts[1]
        if not self._mine(topic):
            return "another process's"
        if kid is None:
            return Rejection(device_id, "not a COSE_Encrypt0 message with a key id")
        owner = owners.get(kid)
        if owner is None:
            return Rejection(device_id, "unknown key id")
        if owner != device_id:
            return Rejection(device_id, "topic names another device than the key's")
        try:
            _, piv, plaintext = opener.open_decoded(obj, device_id, topic)
        except PayloadError as e:
            return Rejection(device_id, str(e))
        return Row(kid, piv, device_id, message, plaintext)

    def _mine(self, topic: str) -> bool:
        """Whether this process stores the messages of the topic's device (partitioned);
        a topic that names no device is this process's to refuse."""
        device_id = topic.split("/")[1] if topic.count("/") == 2 else ""
        return self.processes == 1 or not DEVICE_ID.fullmatch(device_id) \
            or partition_of(device_id, self.processes) == self.process

    def _count_rejection(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.reasons[rejection.why.split(":")[0][:60]] += 1
        self._say(f"ingest: rejected from {rejection.who}: {rejection.why}")

    def _quarantine(self, topic: str, message: bytes, why: str) -> None:
        try:
            self.db.execute("INSERT INTO quarantine (received_ms, topic, reason, message) "
                            "VALUES (?, ?, ?, ?)",
                            (int(time.time() * 1000), topic[:200], why, message))
            self.db.execute("DELETE FROM quarantine WHERE rowid <= (SELECT max(rowid) FROM "
                            "quarantine) - ?", (QUARANTINE_ROWS,))
        except sqlite3.Error as e:  # not kept, so not acknowledged: it comes again
            raise StoreUnavailable(f"the quarantine: {e}") from None
        self.quarantined += 1
        self._say(f"ingest: quarantined a message of {len(message)} bytes: {why}")

    def _say(self, line: str) -> None:
        self._lines.append(line)

    def _flush_log(self) -> None:
        if self._lines:
            self.log.write("\n".join(self._lines) + "\n")
            self.log.flush()
            self._lines.clear()

    def run(self, port: int, host: str = "localhost", stop: threading.Event | None = None,
            ready: threading.Event | None = None, shared: bool = False) -> None:
        """Take, store and acknowledge messages until `stop` (or Ctrl-C). One thread
        does all: the packets it acknowledges are always of the connection they came
        on (after a reconnect the broker resends what was not acknowledged)."""
        if shared and self.processes > 1:  # the broker hands each message to one process
            raise ToolError("an ingest process is either partitioned (--processes) or "
                            "shared (--shared), not both")
        # A persistent session: what arrives while this process is away waits for it.
        identity = self.server.identity(ingest_identity(self.process))
        client = tls_client(self.server, identity, clean_session=False, manual_ack=True)
        inbox: list[mqtt.MQTTMessage] = []
        stop = stop or threading.Event()
        backoff = [1.0]  # seconds before the next reconnect: doubles up to 10, reset on CONNACK

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc != 0:
                self._say(f"ingest: broker refused: {rc}")
                return
            backoff[0] = 1.0
            c.subscribe(SHARED_INGEST_SUBSCRIPTION if shared else INGEST_SUBSCRIPTION, qos=1)

        def on_subscribe(*args: Any) -> None:
            self._say(f"ingest: process {self.process} subscribed"
                      + (f", storing its share of {self.processes}" if self.processes > 1 else ""))
            self._flush_log()
            if ready:
                ready.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = lambda c, userdata, m: inbox.append(m)
        connect_client(client, host, port, "ingest")
        try:
            while not stop.is_set():
                if not self._take(client, inbox, 0 if inbox else 0.1):
                    inbox.clear()  # unacknowledged: the broker sends them again
                    self._reconnect(client, backoff[0], stop)
                    backoff[0] = min(2 * backoff[0], 10.0)
                    continue
                # Half the window at a time: the broker sends the next half meanwhile.
                batch, inbox[:] = inbox[:BATCH], inbox[BATCH:]
                if not batch:
                    continue
                try:
                    self.accept_batch([(m.topic, m.payload) for m in batch])
                except StoreUnavailable as e:  # no PUBACK: the broker sends them again
                    self._say(f"ingest: store unavailable ({e}); reconnecting for a redelivery")
                    inbox.clear()
                    self._reconnect(client, STORE_RETRY_S, stop)
                    continue
                acknowledge(client, batch)
        except KeyboardInterrupt:
            pass
        finally:
            client.disconnect()

    @staticmethod
    def _take(client: mqtt.Client, inbox: list[mqtt.MQTTMessage], wait: float) -> bool:
        """Wait up to `wait` seconds for messages, then read what has arrived, up to
        the broker's in-flight window; False when the connection is lost."""
        if client.loop(wait) != mqtt.MQTT_ERR_SUCCESS:
            return False
        while inbox and len(inbox) < INFLIGHT_WINDOW:
            had = len(inbox)
            if client.loop(0) != mqtt.MQTT_ERR_SUCCESS:
                return False
            if len(inbox) == had:
                break
        return True

    def _reconnect(self, client: mqtt.Client, pause: float, stop: threading.Event) -> None:
        self._flush_log()
        if stop.wait(pause):
            return  # stopping: no new session to take the place of ours
        try:
            client.reconnect()
        except OSError as e:
            self._say(f"ingest: cannot reach the broker ({e}); trying again")
            self._flush_log()


# -- export: for an authorised operator only; every export is audited --------

