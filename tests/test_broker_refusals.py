"""Who the broker and the ingest let in or across, each refusal in its own test.

The attacker is paho-mqtt, an independent client; the broker is a real
Mosquitto with the configuration `wearsafe broker-config` writes.
"""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from host_tools.fleet.broker import reload_broker
from host_tools.fleet.pki import FleetCA
from tests.hostile import connect, device_tls_files


def _connect(fleet, identity, ca: FleetCA | None = None):
    """(client, CONNACK reason or the exception) for a TLS client proving `identity`:
    a provisioned device, a name the CA (default the fleet's) issued to, or "" (none)."""
    if isinstance(identity, str):
        pki = (ca or fleet.server.ca).directory
        files = (str(pki / f"{identity}.crt"), str(pki / f"{identity}.key")) if identity \
            else (None, None)
    else:
        files, identity = device_tls_files(identity.state), identity.device_id
    return connect(fleet, files, identity or "anonymous")


def _refused(fleet, identity, **kw) -> None:
    client, outcome = _connect(fleet, identity, **kw)
    client.loop_stop()
    assert not client.is_connected(), f"{identity or 'no certificate'} was let in: {outcome}"


def test_there_is_no_plaintext_listener(fleet):
    with socket.create_connection(("127.0.0.1", fleet.broker.port), timeout=5) as s:
        # An MQTT CONNECT in the clear: the TLS listener answers with nothing MQTT.
        s.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test")
        s.settimeout(3)
        try:
            reply = s.recv(16)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"\x20"), "a CONNACK came back in the clear"
    conf = (fleet.server.broker_dir / "mosquitto.conf").read_text()
    assert conf.count("listener ") == 1 and "require_certificate true" in conf


def test_a_client_without_a_certificate_is_refused(fleet):
    _refused(fleet, "")


def test_a_certificate_from_another_ca_is_refused(fleet, tmp_path):
    rogue = FleetCA.open_or_create(tmp_path / "rogue-ca", name="wearsafe fleet CA")
    rogue.issue("0123456789abcdef")
    _refused(fleet, "0123456789abcdef", ca=rogue)


def test_an_expired_certificate_is_refused(fleet):
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    fleet.server.ca.issue("00000000000000ee", days=1, not_before=long_ago)
    _refused(fleet, "00000000000000ee")


def test_a_revoked_certificate_is_refused(fleet):
    fleet.server.ca.issue("00000000000000aa")
    client, outcome = _connect(fleet, "00000000000000aa")
    assert client.is_connected(), outcome  # valid until revoked
    client.disconnect()
    client.loop_stop()
    fleet.server.ca.revoke("00000000000000aa")
    reload_broker(fleet.server.ca, fleet.server.broker_dir)
    time.sleep(0.5)
    _refused(fleet, "00000000000000aa")


def test_a_device_cannot_publish_to_another_devices_topic(fleet):
    victim = fleet.add_device()
    attacker = fleet.add_device()
    sealed = _sealed_by(fleet, attacker, 2)[0]  # before: the run takes its client id
    client, outcome = _connect(fleet, attacker)
    assert client.is_connected(), outcome
    info = client.publish(f"devices/{victim.device_id}/up", sealed, qos=1)
    info.wait_for_publish(5)
    client.publish(f"devices/{attacker.device_id}/up", b"marker", qos=1).wait_for_publish(5)
    time.sleep(1)
    client.disconnect()
    client.loop_stop()
    log = fleet.ingest_log.read_text()
    assert f"rejected from {attacker.device_id}" in log  # the marker arrived ...
    assert victim.device_id not in log  # ... the cross-topic publish never did


def test_a_device_subscribing_to_every_device_receives_nothing(fleet):
    device = fleet.add_device()
    spy, outcome = _connect(fleet, fleet.add_device())
    assert spy.is_connected(), outcome
    got: list[bytes] = []
    spy.on_message = lambda c, u, m: got.append(m.payload)
    spy.subscribe("devices/#", qos=1)
    spy.subscribe("#", qos=1)
    time.sleep(0.5)
    assert fleet.run_app(device, seconds=4).returncode == 0
    assert fleet.wait_stored(3) == 3  # its status at boot and two batches
    time.sleep(0.5)
    spy.disconnect()
    spy.loop_stop()
    assert got == []


def _received(fleet, identity, topic: str = "#") -> list[str]:
    """Topics of what `identity` receives when it subscribes to `topic` (retained)."""
    client, outcome = _connect(fleet, identity)
    assert client.is_connected(), outcome
    got: list[str] = []
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.subscribe(topic, qos=1)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    return sorted(got)


def test_a_device_receives_only_its_own_board_classs_updates(fleet):
    release, outcome = _connect(fleet, "release")
    assert release.is_connected(), outcome
    for board in ("sim", "esp32_devkitc"):
        release.publish(f"updates/{board}/announce", b"{}", qos=1, retain=True).wait_for_publish(5)
    release.disconnect()
    release.loop_stop()
    device = fleet.add_device()  # provisioned while the broker runs: the ACL is reloaded
    assert "rereads its CRL and ACL" in device.broker
    time.sleep(0.3)  # Mosquitto rereads at most 100 ms after the SIGHUP (src/loop.c)
    assert _received(fleet, device) == ["updates/sim/announce"]
    assert _received(fleet, device, "updates/esp32_devkitc/#") == []
    fleet.server.ca.issue("00000000000000e5", board_class="esp32_devkitc")
    fleet.server.ca.issue("00000000000000e6", board_class="esp32_devkitc")
    fleet.server.ca.revoke("00000000000000e6")
    fleet.server.ca.issue("00000000000000e7")  # certifies no board class
    reload_broker(fleet.server.ca, fleet.server.broker_dir)
    time.sleep(0.3)
    assert _received(fleet, "00000000000000e5") == ["updates/esp32_devkitc/announce"]
    assert _received(fleet, "00000000000000e7") == []
    assert _received(fleet, "ingest", "updates/#") == []
    acl = (fleet.server.broker_dir / "acl").read_text()
    assert "00000000000000e6" not in acl and "00000000000000e7" not in acl


def _sealed_by(fleet, device, count: int) -> list[bytes]:
    """Messages sealed on the device itself, every one the run sealed, as the ingest
    stored them."""
    before = fleet.ingest.stored  # before the run: by its end they may be stored already
    run = fleet.run_app(device, seconds=2 * count)
    assert run.returncode == 0, run.stdout + run.stderr
    sealed = run.stdout.count(" sealed ")  # its status message and its batches
    assert sealed >= count, run.stdout
    assert fleet.wait_stored(before + sealed, timeout=10) == before + sealed
    return [sealed for _, sealed in fleet.server.stored(device.device_id)]


@pytest.mark.both_stores
def test_a_replayed_message_is_not_stored_twice(fleet):
    device = fleet.add_device()
    sealed = _sealed_by(fleet, device, 2)
    client, outcome = _connect(fleet, device)  # even with the device's own identity
    assert client.is_connected(), outcome
    client.publish(f"devices/{device.device_id}/up", sealed[0], qos=1).wait_for_publish(5)
    time.sleep(1)
    client.disconnect()
    client.loop_stop()
    assert fleet.ingest.duplicates == 1
    assert len(list(fleet.server.stored(device.device_id))) == len(sealed)


@pytest.mark.both_stores
def test_a_message_moved_to_another_devices_topic_is_rejected(fleet):
    first, second = fleet.add_device(), fleet.add_device()
    sealed = _sealed_by(fleet, first, 1)[0]
    # Straight at the ingest, as if the broker had let it through.
    verdict = fleet.ingest.accept(f"devices/{second.device_id}/up", sealed)
    assert verdict == "rejected: topic names another device than the key's"
    assert list(fleet.server.stored(second.device_id)) == []
