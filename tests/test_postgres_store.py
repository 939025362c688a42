"""The store and key vault on PostgreSQL (a real server, started by the tests), beyond
the tests marked both_stores (the ingest's hostile paths, export and forget, which
run on both engines): ingest processes sharing one database; a database restart;
what --db refuses; and the sim with three ingest workers and a broker outage."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from host_tools.fleet.ingest import Ingest, StoreUnavailable, partition_of
from host_tools.fleet.server import Server, open_server
from host_tools.paths import ToolError, venv_tool
from tests.hostile import DeviceInHand, reading


def _stored_on_the_device(fleet, seconds: int = 4):  # type: ignore[no-untyped-def]
    device = fleet.add_device(batch_seconds=2)
    assert fleet.run_app(device, seconds=seconds).returncode == 0
    assert fleet.wait_stored(3) >= 3  # status, two batches
    return device, [(f"devices/{device.device_id}/up", s)
                    for _, s in fleet.server.stored(device.device_id)]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_ingest_processes_on_one_database_store_each_message_once(fleet):
    """Whatever order two workers see (and commit) the same messages in, in batches
    or one by one."""
    _, sealed = _stored_on_the_device(fleet)
    fleet.stop_ingest()
    with psycopg.connect(fleet.server.database_url, autocommit=True) as db:
        db.execute("DELETE FROM messages")
    first, second = Ingest(fleet.server), Ingest(fleet.server)
    verdicts = first.accept_batch(sealed + sealed[:1]) + [second.accept(*m)
                                                          for m in reversed(sealed)]
    assert verdicts.count("stored") == len(sealed)
    assert verdicts.count("duplicate") == len(sealed) + 1  # a batch's own repeat, too
    assert len(list(fleet.server.stored(sealed[0][0].split("/")[1]))) == len(sealed)
    fleet.start_ingest()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_partitioned_ingest_processes_each_store_their_share(fleet):
    """--processes 2: both read every message; each device's are stored by one."""
    fleet.stop_ingest()
    devices = [DeviceInHand(fleet, fleet.add_device()) for _ in range(4)]
    messages = [(d.up, d.seal(n, reading(d.device_id, 1_790_000_000 + n, 70)))
                for d in devices for n in (1, 2)]
    workers = [Ingest(fleet.server, process=k, processes=2) for k in (1, 2)]
    verdicts = [w.accept_batch(messages) for w in workers]
    for (topic, _), mine in zip(messages, zip(*verdicts, strict=True), strict=True):
        owner = partition_of(topic.split("/")[1], 2)
        assert mine[owner - 1] == "stored" and mine[2 - owner] == "another process's"
    assert sum(w.stored for w in workers) == len(messages)
    with pytest.raises(ToolError, match="ingest process 3 of 2"):
        Ingest(fleet.server, process=3, processes=2)
    fleet.start_ingest()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_database_restart_costs_the_ingest_nothing_and_its_absence_refuses(fleet,
                                                                            postgres):
    _, sealed = _stored_on_the_device(fleet)
    fleet.stop_ingest()
    with psycopg.connect(fleet.server.database_url, autocommit=True) as db:
        db.execute("DELETE FROM messages")
    ingest = Ingest(fleet.server)
    assert ingest.accept(*sealed[0]) == "stored"
    postgres.restart()  # both of the ingest's sessions are cut: it opens new ones
    assert ingest.accept(*sealed[1]) == "stored"
    postgres.stop(remove=False)
    try:
        with pytest.raises(StoreUnavailable):  # not acknowledged: the broker sends it again
            ingest.accept(*sealed[2])
    finally:
        postgres.start_again()
    assert [ingest.accept(*m) for m in sealed[2:]] == ["stored"] * (len(sealed) - 2)
    fleet.start_ingest()


def test_the_database_is_recorded_and_a_second_store_is_refused(tmp_path, postgres):
    url = postgres.new_database()
    Server(tmp_path / "pg").init(url)
    assert open_server(tmp_path / "pg").database_url == url  # later commands find it
    assert (tmp_path / "pg" / "database").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ToolError, match="keeps its store in postgresql://"):
        open_server(tmp_path / "pg", postgres.new_database())
    sqlite_server = Server(tmp_path / "lite").init()
    sqlite_server.keys()  # creates keys.db
    with pytest.raises(ToolError, match="already keeps its store in SQLite"):
        open_server(tmp_path / "lite", url)
    with pytest.raises(ToolError, match="keep the password out of the URL"):
        Server(tmp_path / "pw").init("postgresql://fleet:secret@127.0.0.1:5432/fleet")
    with pytest.raises(ToolError, match="give postgresql://"):
        Server(tmp_path / "bad").init("mysql://127.0.0.1/fleet")
    unreachable = f"postgresql://wearsafe@127.0.0.1:{postgres.port}/no_such_database"
    with pytest.raises(ToolError, match="the store's database"):
        Server(tmp_path / "gone").init(unreachable).keys()


def test_an_sqlite_without_returning_is_refused_with_a_way_out(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ToolError, match=r"SQLite is 3\.34\.1; the store needs 3\.35\.0 .*--db"):
        Server(tmp_path / "old").init().keys()


def test_a_simulated_fleet_on_postgresql_through_an_outage_loses_nothing(tmp_path, postgres):
    """Three partitioned ingest workers, and the broker down for 8 s."""
    url = postgres.new_database()
    out = subprocess.run([venv_tool("wearsafe"), "sim", "--devices", "3", "--duration", "30",
                          "--batch-seconds", "2", "--outage", "8", "--db", url,
                          "--ingest-workers", "3",
                          "--state", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["produced"] >= 3 * 10 and summary["lost"] == summary["duplicates"] == 0
    assert summary["ingest_workers"] == 3 and "ingest: 3 worker(s)" in out.stdout
    with psycopg.connect(url) as db:
        (rows,) = db.execute("SELECT count(*) FROM messages").fetchone()
    assert rows >= summary["produced"]  # every sealed message, and the status messages
    assert not list((tmp_path / "server").glob("*.db"))
    # a later command finds the database in the server directory, without --db
    device_id = (tmp_path / "device-1" / "device-id").read_text().strip()
    exported = subprocess.run([venv_tool("wearsafe"), "export", "--server",
                               str(tmp_path / "server"), "--device", device_id],
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("time,quantity,value,unit")
