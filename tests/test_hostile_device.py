"""A provisioned device in an attacker's hands (issue 13): valid certificate, TLS
key and payload key, any client id, session, topic and bytes (tests/hostile.py).
Against the real Mosquitto and the real ingest, no one else may lose a reading.
Each test is named after the finding it reproduces."""

from __future__ import annotations

import io
import os
import sqlite3
import time

import pytest

from host_tools.fleet import ingest as ingest_module
from host_tools.fleet.broker import INGEST_ID, MAX_PACKET
from host_tools.fleet.export import readings
from host_tools.fleet.pki import write_private
from host_tools.fleet.server import Server
from tests.hostile import DeviceInHand, reading

pytestmark = pytest.mark.both_stores  # the ingest's every path, on SQLite and PostgreSQL


def victim_and_attacker(fleet) -> tuple[DeviceInHand, DeviceInHand]:  # type: ignore[no-untyped-def]
    victim = DeviceInHand(fleet, fleet.add_device())
    attacker = DeviceInHand(fleet, fleet.add_device())
    assert victim.connect() == 0 and attacker.connect() == 0
    return victim, attacker


def send_readings(victim: DeviceInHand, pivs: range) -> None:
    for piv in pivs:
        sealed = victim.seal(piv, reading(victim.device_id, 1_790_000_000 + piv, 60 + piv % 40))
        assert victim.publish(victim.up, sealed), f"reading {piv} was not acknowledged"


def exported(fleet, victim: DeviceInHand) -> list[float]:  # type: ignore[no-untyped-def]
    return sorted(r["time"] for r in readings(fleet.server, victim.device_id))


def test_13_1_a_device_cannot_take_the_ingests_session_or_knock_a_device_off(fleet):  # type: ignore[no-untyped-def]
    victim, attacker = victim_and_attacker(fleet)
    fleet.stop_ingest()  # away: its persistent session keeps what arrives
    send_readings(victim, range(1, 6))
    for ingest_client_id in (INGEST_ID, "ingest-1"):  # today's, and the one before
        attacker.disconnect()
        attacker.connect(client_id=ingest_client_id, clean_session=False)  # its session?
        time.sleep(0.5)
        assert attacker.connected  # let in: as itself, whatever client id it asked for
    attacker.disconnect()
    other = DeviceInHand(fleet, fleet.add_device())
    other.connect(client_id=victim.device_id)  # the victim's own client id
    time.sleep(1)
    assert victim.drops == [], "a device with a valid certificate knocked another one off"
    fleet.start_ingest()
    fleet.wait_stored(5)
    assert exported(fleet, victim) == [1_790_000_000 + n for n in range(1, 6)]


def test_13_2_a_poison_partial_iv_is_refused_and_the_ingest_goes_on(fleet):  # type: ignore[no-untyped-def]
    victim, attacker = victim_and_attacker(fleet)
    for piv in (2**64, 2**48, 2**100):  # sealed correctly under the attacker's own key
        assert attacker.publish(attacker.up, attacker.seal(piv, reading(attacker.device_id,
                                                                          1, 70)))
    send_readings(victim, range(1, 3))
    assert fleet.wait_stored(2) == 2, fleet.ingest_log.read_text()
    assert fleet.ingest.rejected == 3 and fleet.ingest.quarantined == 0
    assert "beyond any device's counter" in fleet.ingest_log.read_text()
    fleet.stop_ingest()
    fleet.start_ingest()  # nothing comes again: each was acknowledged once refused
    time.sleep(1)
    assert fleet.ingest.rejected == 0 and fleet.ingest.stored == 0


def test_13_2_a_message_that_breaks_the_ingest_is_quarantined_not_redelivered(fleet,  # type: ignore[no-untyped-def]
                                                                              monkeypatch):
    victim, _ = victim_and_attacker(fleet)
    real = fleet.ingest._open
    broken = []

    def first_one_breaks(topic: str, message: bytes, *rest: object) -> object:
        if not broken:
            broken.append(message)
            raise RuntimeError("a bug of ours")
        return real(topic, message, *rest)

    monkeypatch.setattr(fleet.ingest, "_open", first_one_breaks)
    send_readings(victim, range(1, 4))
    assert fleet.wait_stored(2) == 2
    assert fleet.ingest.quarantined == 1
    with fleet.server.messages_db() as db:
        kept = db.execute("SELECT topic, reason, message FROM quarantine").fetchall()
    assert [tuple(row) for row in kept] == [(victim.up, "RuntimeError", broken[0])]


def test_a_message_the_quarantine_cannot_keep_is_not_acknowledged(fleet, monkeypatch):  # type: ignore[no-untyped-def]
    """Acknowledged only once kept: a full disk under the quarantine refuses the batch."""
    victim, _ = victim_and_attacker(fleet)
    db = fleet.ingest.db

    class FullDisk:
        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("INSERT INTO quarantine"):
                raise sqlite3.OperationalError("database or disk is full")
            return db.execute(sql, *args)

    monkeypatch.setattr(fleet.ingest, "_open", lambda *args: 1 / 0)  # a bug of ours
    monkeypatch.setattr(fleet.ingest, "db", FullDisk())
    sealed = victim.seal(1, reading(victim.device_id, 1_790_000_001, 61))
    with pytest.raises(ingest_module.StoreUnavailable, match="the quarantine"):
        fleet.ingest.accept(victim.up, sealed)


def test_a_store_that_cannot_commit_gets_the_message_again(fleet, monkeypatch):  # type: ignore[no-untyped-def]
    """A full disk is not the message's fault: no PUBACK, and it comes back."""
    monkeypatch.setattr(ingest_module, "STORE_RETRY_S", 0.5)
    victim, _ = victim_and_attacker(fleet)
    db, failures = fleet.ingest.db, []

    class FullDisk:
        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("INSERT INTO messages") and not failures:
                failures.append(sql)
                raise sqlite3.OperationalError("database or disk is full")
            return db.execute(sql, *args)

    fleet.ingest.db = FullDisk()
    send_readings(victim, range(1, 2))
    assert fleet.wait_stored(1, timeout=15) == 1, fleet.ingest_log.read_text()
    assert failures and fleet.ingest.duplicates == 0
    assert "store unavailable" in fleet.ingest_log.read_text()


def test_a_batch_the_store_could_not_take_is_counted_once_when_it_comes_again(fleet):  # type: ignore[no-untyped-def]
    """An attacker's forgery in a batch the store refused, then the same batch
    redelivered: one rejection and one stored message, not two rejections."""
    victim, attacker = victim_and_attacker(fleet)
    ingest = ingest_module.Ingest(fleet.server, log=io.StringIO())  # one of its own
    db = ingest.db
    batch = [(victim.up, attacker.seal(1, reading(victim.device_id, 1_790_000_001, 61))),
             (victim.up, victim.seal(1, reading(victim.device_id, 1_790_000_001, 61)))]

    class FullDisk:
        def execute(self, sql: str, *args: object) -> object:
            raise sqlite3.OperationalError("database or disk is full")

    ingest.db = FullDisk()
    with pytest.raises(ingest_module.StoreUnavailable):
        ingest.accept_batch(batch)
    assert (ingest.rejected, ingest.stored) == (0, 0)
    ingest.db = db
    assert ingest.accept_batch(batch) == [
        "rejected: topic names another device than the key's", "stored"]
    assert (ingest.rejected, ingest.stored, ingest.duplicates) == (1, 1, 0)
    assert sum(ingest.reasons.values()) == 1


def test_a_key_vault_the_ingest_cannot_read_gets_the_message_again(fleet, monkeypatch):  # type: ignore[no-untyped-def]
    """A key-encryption key rotation cut short is the vault's fault, not the
    message's: no PUBACK, no quarantine, and once the rotation is finished the
    broker's redelivery is stored."""
    monkeypatch.setattr(ingest_module, "STORE_RETRY_S", 0.5)
    victim, _ = victim_and_attacker(fleet)
    write_private(fleet.server.directory / "kek.new", os.urandom(32))  # the crash's trace
    send_readings(victim, range(1, 2))
    deadline = time.monotonic() + 10
    while "store unavailable" not in fleet.ingest_log.read_text():
        assert time.monotonic() < deadline, fleet.ingest_log.read_text()
        time.sleep(0.1)
    assert "kek-rotate" in fleet.ingest_log.read_text()  # what the operator has to do
    assert fleet.ingest.stored == 0 and fleet.ingest.quarantined == 0
    fleet.server.rotate_kek()
    assert fleet.wait_stored(1, timeout=15) == 1, fleet.ingest_log.read_text()
    assert exported(fleet, victim) == [1_790_000_001]


def test_13_3_the_running_ingest_refuses_a_forgotten_device_at_once(fleet):  # type: ignore[no-untyped-def]
    victim, _ = victim_and_attacker(fleet)
    send_readings(victim, range(1, 2))
    fleet.wait_stored(1)
    fleet.server.forget(victim.device_id)
    later = victim.seal(2, reading(victim.device_id, 2, 61))
    assert fleet.ingest.accept(victim.up, later) == "rejected: unknown key id"


def test_13_8_each_message_costs_one_key_lookup(fleet, monkeypatch):  # type: ignore[no-untyped-def]
    """Unknown key ids do not make the ingest unwrap the whole vault."""
    for _ in range(3):
        fleet.add_device()
    _, attacker = victim_and_attacker(fleet)
    unwraps = []
    monkeypatch.setattr(Server, "keys", lambda *a, **k: unwraps.append(1) or {})
    for n in range(20):
        forged = attacker.seal(n + 1, b"x")
        forged = forged.replace(attacker.key.key_id, os.urandom(len(attacker.key.key_id)))
        assert fleet.ingest.accept(attacker.up, forged) == "rejected: unknown key id"
    assert unwraps == []


def test_13_8_the_broker_closes_a_connection_that_sends_an_oversized_packet(fleet):  # type: ignore[no-untyped-def]
    victim, attacker = victim_and_attacker(fleet)
    attacker.publish(attacker.up, os.urandom(MAX_PACKET + 1), timeout=3)
    time.sleep(0.5)
    assert not attacker.connected
    send_readings(victim, range(1, 2))
    assert fleet.wait_stored(1) == 1
    assert fleet.ingest.rejected == 0  # it never reached the ingest


@pytest.mark.parametrize("rounds", [3])
def test_a_victims_readings_all_arrive_once_while_a_device_attacks(fleet, rounds):  # type: ignore[no-untyped-def]
    """Session takeover, poison partial IVs, garbage, oversized messages and replays
    of the victim's own messages, interleaved with the victim's readings."""
    victim, attacker = victim_and_attacker(fleet)
    sent = 0
    for r in range(rounds):
        send_readings(victim, range(sent + 1, sent + 11))
        sent += 10
        attacker.disconnect()
        attacker.connect(client_id=INGEST_ID, clean_session=False)
        attacker.publish(attacker.up, attacker.seal(2**64 + r, b"poison"))
        attacker.publish(attacker.up, os.urandom(300))
        attacker.publish(f"devices/{victim.device_id}/up", victim.seal(1, b"not yours"))
        for _, sealed in list(fleet.server.stored(victim.device_id))[:3]:
            attacker.publish(attacker.up, sealed)  # the victim's messages, replayed
        attacker.publish(attacker.up, os.urandom(MAX_PACKET + 1), timeout=2)
        if not attacker.connected:
            attacker.disconnect()
            attacker.connect()
    fleet.wait_stored(sent, timeout=30)
    assert exported(fleet, victim) == [1_790_000_000 + n for n in range(1, sent + 1)]


def test_13_3_forget_cuts_the_live_session_of_the_device(fleet):  # type: ignore[no-untyped-def]
    from host_tools.fleet.forget import forget

    victim, _ = victim_and_attacker(fleet)
    assert victim.publish(f"devices/{victim.device_id}/status", b"online")
    send_readings(victim, range(1, 2))
    fleet.wait_stored(1)
    deleted, notes = forget(fleet.server, victim.device_id)
    assert deleted == 1
    assert any("was cut" in n for n in notes), notes
    time.sleep(3)  # paho tries to reconnect every second: the CRL keeps it out
    assert victim.drops and not victim.connected
    later = victim.seal(2, reading(victim.device_id, 2, 61))
    assert not victim.publish(victim.up, later, timeout=1)
    assert fleet.ingest.stored == 1
