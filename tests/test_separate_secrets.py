"""Separate places for separate secrets (issue 13, finding 5): the simulator's server
directory, whose update key is a throwaway, never provisions a real device, and
no production command falls back to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from host_tools.paths import venv_tool
from host_tools.server import Server

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

    from host_tools.payloads import DeviceKey

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
