"""The store and key vault on PostgreSQL (a real server, started by the tests): the
ingest, export, forget and sim paths with the same guarantees as on SQLite; ingest
processes sharing one database; a database restart; and what --db refuses."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from host_tools.fleet.export import export
from host_tools.fleet.forget import forget
from host_tools.fleet.ingest import Ingest, StoreUnavailable
from host_tools.fleet.server import Server, open_server
from host_tools.paths import ToolError, venv_tool


def _stored_on_the_device(fleet, seconds: int = 4):  # type: ignore[no-untyped-def]
    device = fleet.add_device(batch_seconds=2)
    assert fleet.run_app(device, seconds=seconds).returncode == 0
    assert fleet.wait_stored(3) >= 3  # status, two batches
    return device, [(f"devices/{device.device_id}/up", s)
                    for _, s in fleet.server.stored(device.device_id)]


def test_ingest_export_and_forget_on_postgresql_leave_no_readable_key(pg_fleet):
    fleet = pg_fleet
    url = fleet.server.database_url
    assert url and not list(fleet.server.directory.glob("*.db"))  # nothing in SQLite
    device, sealed = _stored_on_the_device(fleet)
    assert "beat/min" in export(fleet.server, device.device_id, "csv")
    assert fleet.ingest.accept(*sealed[0]) == "duplicate"  # unique (key id, partial IV)
    with psycopg.connect(url) as db:
        (wrapped,) = db.execute("SELECT wrapped FROM device_keys WHERE device_id = %s",
                                (device.device_id,)).fetchone()
    kek_before = (fleet.server.directory / "kek").read_bytes()
    aes_key_unwrap(kek_before, wrapped)  # what a WAL record or a backup would hold
    fleet.add_device()  # another device's key stays, rewrapped

    deleted, notes = forget(fleet.server, device.device_id)

    assert deleted == len(sealed)
    assert any("KEK was rotated (1 keys rewrapped)" in n for n in notes), notes
    with pytest.raises(ToolError, match="no key for device .* forgotten"):
        export(fleet.server, device.device_id, "csv")
    with psycopg.connect(url) as db:
        assert db.execute("SELECT count(*) FROM messages WHERE device_id = %s",
                          (device.device_id,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM device_keys").fetchone() == (1,)
    kek_now = (fleet.server.directory / "kek").read_bytes()
    assert kek_now != kek_before
    with pytest.raises(InvalidUnwrap):  # the old copy of its key opens under no KEK left
        aes_key_unwrap(kek_now, wrapped)
    assert len(fleet.server.keys()) == 1  # the other device's key unwraps under the new one


def test_two_ingest_processes_on_one_database_store_each_message_once(pg_fleet):
    """Whatever order two workers see (and commit) the same messages in."""
    fleet = pg_fleet
    _, sealed = _stored_on_the_device(fleet)
    fleet.stop_ingest()
    with psycopg.connect(fleet.server.database_url, autocommit=True) as db:
        db.execute("DELETE FROM messages")
    first, second = Ingest(fleet.server), Ingest(fleet.server)
    verdicts = [first.accept(*m) for m in sealed] + [second.accept(*m) for m in reversed(sealed)]
    assert verdicts.count("stored") == len(sealed) == verdicts.count("duplicate")
    assert len(list(fleet.server.stored(sealed[0][0].split("/")[1]))) == len(sealed)
    fleet.start_ingest()


def test_a_database_restart_costs_the_ingest_nothing_and_its_absence_refuses(pg_fleet,
                                                                            postgres):
    fleet = pg_fleet
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


def test_a_simulated_fleet_on_postgresql_through_an_outage_loses_nothing(tmp_path, postgres):
    url = postgres.new_database()
    out = subprocess.run([venv_tool("wearsafe"), "sim", "--devices", "3", "--duration", "30",
                          "--batch-seconds", "2", "--outage", "8", "--db", url,
                          "--state", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["produced"] >= 3 * 10 and summary["lost"] == summary["duplicates"] == 0
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
