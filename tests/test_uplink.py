"""The device's uplink end to end: the firmware on the unix port, a real Mosquitto
with TLS and client certificates, and the ingest storing what arrives."""

from __future__ import annotations

import cbor2

from host_tools.ingest import export, readings


def test_a_device_publishes_and_the_ingest_stores_and_opens_each_batch(fleet):
    device = fleet.add_device(batch_seconds=2)
    done = fleet.run_app(device, seconds=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "link-up" in done.stdout, done.stdout
    assert fleet.wait_stored(5) == 5, fleet.ingest_log.read_text()
    assert fleet.ingest.duplicates == fleet.ingest.rejected == 0
    rows = readings(fleet.server, device.device_id)
    quantities = {r["quantity"] for r in rows}
    assert {"heart-rate", "spo2", "body-temp", "steps"} <= quantities, rows
    assert all(40 <= r["value"] <= 200 for r in rows if r["quantity"] == "heart-rate")
    # what is stored is the sealed message, encrypted at rest
    for _, sealed in fleet.server.stored(device.device_id):
        assert cbor2.loads(sealed).tag == 16
    assert export(fleet.server, device.device_id, "csv").startswith("time,quantity,value,unit")


def test_the_device_log_holds_no_reading_and_no_key(fleet):
    device = fleet.add_device(batch_seconds=2)
    done = fleet.run_app(device, seconds=4)
    assert done.returncode == 0, done.stdout + done.stderr
    key = fleet.server.device_key(device.device_id)
    for line in done.stdout.splitlines():
        assert "beat" not in line and "Cel" not in line
        assert key.key.hex() not in line
    assert "sealed" in done.stdout and "outbox" in done.stdout
