"""Separate places for separate secrets (issue 13, finding 5): the simulator's server
directory, whose update key is a throwaway, never provisions a real device, and
no production command falls back to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from host_tools.fleet.server import Server
from host_tools.paths import venv_tool

WEARSAFE = venv_tool("wearsafe")


def wearsafe(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEARSAFE, *map(str, argv)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", [["provision", "--out", "b"], ["ingest"],
                                     ["export", "--device", "00"], ["forget", "--device", "00"],
                                     ["broker-config", "--out", "c"],
                                     ["signing-key", "--key", "k.pem"]])
def test_13_5_production_commands_name_their_server_directory(tmp_path, command):
    out = subprocess.run([WEARSAFE, *command], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 2 and "--server" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing made anywhere


def test_13_5_a_simulators_server_never_provisions_a_real_device(tmp_path: Path):
    server = Server(tmp_path / "server").init()
    server.mark_simulator()  # as `wearsafe sim` leaves it
    out = wearsafe("provision", "--server", server.directory, "--out", tmp_path / "dev")
    assert out.returncode == 1 and "simulator's server directory" in out.stderr, out.stderr
    assert not (tmp_path / "dev").exists()
    assert server.keys() == {}


def test_13_6_kek_rotate_rewraps_every_key_and_the_old_kek_opens_nothing(tmp_path: Path):
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    from host_tools.fleet.payloads import DeviceKey

    server = Server(tmp_path / "server").init()
    keys = {f"{n:016x}": DeviceKey(bytes([n]) * 4, bytes([n]) * 32, bytes(13)) for n in (1, 2)}
    for device_id, key in keys.items():
        server.register(device_id, key)
    old_kek = (server.directory / "kek").read_bytes()
    (server.directory / "kek.new").write_bytes(b"\0" * 32)  # a rotation cut short ...
    (server.directory / "kek.new").chmod(0o600)
    with pytest.raises(Exception, match="interrupted"):
        server.keys()
    (server.directory / "kek.new").unlink()  # ... is said, not guessed at
    out = wearsafe("kek-rotate", "--server", server.directory)
    assert out.returncode == 0 and "2 device keys rewrapped" in out.stdout, out.stderr
    new_kek = server.directory / "kek"
    assert new_kek.read_bytes() != old_kek and new_kek.stat().st_mode & 0o077 == 0
    assert {k: v[1].key for k, v in server.keys().items()} == \
        {k.key_id: k.key for k in keys.values()}
    wrapped = [w for (w,) in server.keys_db().execute("SELECT wrapped FROM device_keys")]
    for blob in wrapped:
        with pytest.raises(InvalidUnwrap):
            aes_key_unwrap(old_kek, blob)


def test_13_5_the_ca_and_release_keys_leave_the_ingests_directory(fleet, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from host_tools.fleet.mqtt import start_client, tls_client
    from host_tools.fleet.pki import OFFLINE_KEYS_ENV

    device = fleet.add_device()
    server, offline = fleet.server, tmp_path / "offline"
    keys_before = len(server.keys())
    out = wearsafe("keys-offline", "--server", server.directory, "--out", offline)
    assert out.returncode == 0 and OFFLINE_KEYS_ENV in out.stdout, out.stderr
    assert server.ca.offline and not list(server.directory.rglob("ca.key"))
    assert sorted(p.name for p in offline.iterdir()) == ["ca.key", "release.key"]
    assert offline.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in offline.iterdir())
    again = wearsafe("keys-offline", "--server", server.directory, "--out", tmp_path / "o2")
    assert again.returncode == 1 and "offline already" in again.stderr

    fleet.stop_ingest()  # the ingest needs neither key
    fleet.start_ingest()
    assert fleet.run_app(device, seconds=3).returncode == 0
    assert fleet.wait_stored(1) >= 1

    refused = wearsafe("provision", "--server", server.directory, "--out", tmp_path / "dev")
    assert refused.returncode == 1 and OFFLINE_KEYS_ENV in refused.stderr, refused.stderr
    assert not (tmp_path / "dev").exists() and len(server.keys()) == keys_before
    with pytest.raises(Exception, match=OFFLINE_KEYS_ENV):
        tls_client(server, "release")

    monkeypatch.setenv(OFFLINE_KEYS_ENV, str(offline))
    made = wearsafe("provision", "--server", server.directory, "--out", tmp_path / "dev")
    assert made.returncode == 0, made.stderr
    release = tls_client(server, "release")
    start_client(release, "localhost", fleet.broker.port, "release")
    try:
        assert release.publish("updates/sim/announce", b"{}", qos=1).wait_for_publish(5) is None
    finally:
        release.disconnect()
        release.loop_stop()
    assert server.ca.offline  # nothing came back
