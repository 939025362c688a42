"""The broker goes away for a minute; a device is forgotten."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from host_tools.device.provision import sim_env
from host_tools.fleet.export import export
from host_tools.fleet.forget import forget
from host_tools.fleet.payloads import PayloadError, PayloadOpener
from host_tools.paths import ToolError, micropython
from host_tools.sim.fleet import SIM_HEAP

SPEED = 2  # simulated seconds per real second


def test_a_60_second_broker_outage_loses_nothing_and_duplicates_nothing(fleet, record_property):
    device = fleet.add_device(batch_seconds=2)
    app = subprocess.Popen(
        [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c",
         "import boot, wearsafe.app; wearsafe.app.run(170)"],
        cwd=fleet.fs, env=sim_env(fleet.fs, device.state, WEARSAFE_SIM_SPEED=str(SPEED)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(app.stdout or []), daemon=True)
    reader.start()
    time.sleep(6)
    stored_before = fleet.ingest.stored
    fleet.broker.stop()
    time.sleep(60 / SPEED)  # a minute of the device's time
    fleet.broker.start()
    assert app.wait(timeout=180) == 0, "".join(lines)
    reader.join(5)
    log = "".join(lines)
    sealed = log.count(" info sealed ")
    assert sealed >= 80, log
    assert stored_before >= 1
    assert "link-down" in log and log.count("link-up") >= 2, log
    record_property("faults_injected", 1)
    record_property("messages_lost", sealed - fleet.wait_stored(sealed, timeout=30))
    assert fleet.ingest.stored == sealed, log[-2000:]
    assert fleet.ingest.duplicates <= 1  # at most the one in flight when the broker went
    stored = [int(m) for m in re.findall(r"stored device=\w+ piv=(\d+)",
                                         fleet.ingest_log.read_text())]
    assert stored == sorted(stored) and len(set(stored)) == sealed  # in order, each once
    heaps = [int(h) for h in re.findall(r" heap (\d+)", log)]
    assert max(heaps) < 2 * min(heaps[5:]), heaps  # bounded while the outbox filled
    depth = max(int(d) for d in re.findall(r"sealed .* outbox (\d+)", log))
    assert depth >= 25  # the outage really filled the outbox


@pytest.mark.both_stores
def test_forget_shreds_the_device_and_its_certificate(fleet, store_url):  # type: ignore[no-untyped-def]
    device = fleet.add_device(batch_seconds=2)
    assert fleet.run_app(device, seconds=4).returncode == 0
    assert fleet.wait_stored(3) == 3  # status, two batches
    assert export(fleet.server, device.device_id, "fhir")
    sealed = [s for _, s in fleet.server.stored(device.device_id)]
    assert fleet.ingest.accept(f"devices/{device.device_id}/up", sealed[0]) == "duplicate"
    fleet.add_device()  # another device's key stays
    with fleet.server.keys_db() as db:
        (wrapped,) = db.execute("SELECT wrapped FROM device_keys WHERE device_id = ?",
                                (device.device_id,)).fetchone()
    kek_before = (fleet.server.directory / "kek").read_bytes()

    deleted, notes = forget(fleet.server, device.device_id)

    assert deleted == len(sealed)
    with pytest.raises(ToolError, match="no key for device .* forgotten"):
        export(fleet.server, device.device_id, "csv")
    assert list(fleet.server.stored(device.device_id)) == []
    # No key left anywhere in the server opens what was stored before.
    keys = fleet.server.keys()
    assert len(keys) == 1
    for kid, (_, key) in keys.items():
        for message in sealed:
            with pytest.raises(PayloadError):
                PayloadOpener({kid: key}).open(message, device.device_id,
                                               f"devices/{device.device_id}/up")
    if store_url is None:  # SQLite: overwritten on disk, not just unlinked
        for path in fleet.server.directory.rglob("*.db*"):
            assert wrapped not in path.read_bytes(), path
    else:  # PostgreSQL's WAL and backups keep dead rows: the KEK they were under is gone
        assert not list(fleet.server.directory.glob("*.db"))  # nothing went to SQLite
        assert any("KEK was rotated (1 keys rewrapped)" in n for n in notes), notes
        kek_now = (fleet.server.directory / "kek").read_bytes()
        aes_key_unwrap(kek_before, wrapped)  # what a WAL record or a backup holds ...
        with pytest.raises(InvalidUnwrap):  # ... opens under no KEK left
            aes_key_unwrap(kek_now, wrapped)
    # The broker refuses its certificate now (it rereads the CRL on SIGHUP, in its own time).
    time.sleep(2)
    done = fleet.run_app(device, seconds=2)
    assert "link-up" not in done.stdout and "link-down" in done.stdout, done.stdout
    audit = (fleet.server.directory / "audit.log").read_text()
    assert '"action": "forget"' in audit and device.device_id not in audit
