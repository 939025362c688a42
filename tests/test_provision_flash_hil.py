"""Provisioning, flashing (esptool through --dry-run, mpremote on a virtual board) and
the hardware-in-the-loop run against the virtual board."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from host_tools.fleet.server import Server
from host_tools.paths import venv_tool
from tests.test_flash_firmware import combined_image

WEARSAFE = venv_tool("wearsafe")


def wearsafe(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEARSAFE, *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_creates_the_ca_the_identity_and_registers_the_key(tmp_path):
    server_dir, bundle = tmp_path / "server", tmp_path / "bundles" / "dev-1"
    out = wearsafe("provision", "--server", server_dir, "--out", bundle, "--broker-host",
                   "broker.example", "--broker-port", "8883")
    assert out.returncode == 0, out.stderr
    assert "created the fleet CA" in out.stdout
    device_id = (bundle / "device-id").read_text().strip()
    assert len(device_id) == 16 and int(device_id, 16) >= 0
    pki = server_dir / "pki"
    assert mode(pki) == 0o700 and mode(pki / "ca.key") == 0o600
    assert mode(bundle) == 0o700 and mode(bundle / "certs" / "device.key.der") == 0o600
    assert not (pki / f"{device_id}.key").exists()  # the device key lives in the bundle only
    cert = x509.load_der_x509_certificate((bundle / "certs" / "device.der").read_bytes())
    ca = x509.load_der_x509_certificate((bundle / "certs" / "ca.der").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={device_id},OU=esp32_devkitc"  # its class
    cert.verify_directly_issued_by(ca)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    secret = json.loads((bundle / "factory" / "payload-key.json").read_text())
    assert mode(bundle / "factory" / "payload-key.json") == 0o600
    registered = Server(server_dir).device_key(device_id)
    assert registered.key.hex() == secret["key"] and registered.key_id.hex() == secret["key_id"]
    assert secret["key"] not in out.stdout + out.stderr
    settings = json.loads((bundle / "settings.json").read_text())
    assert settings["broker_host"] == "broker.example" and settings["broker_port"] == 8883
    assert "no update-signing key yet" in out.stdout

    again = wearsafe("provision", "--server", server_dir, "--out", bundle)
    assert again.returncode == 1 and "already holds device " + device_id in again.stderr
    assert (bundle / "device-id").read_text().strip() == device_id

    forced = wearsafe("provision", "--server", server_dir, "--out", bundle, "--force")
    assert forced.returncode == 0 and "fleet CA: " in forced.stdout, forced.stderr
    new_id = (bundle / "device-id").read_text().strip()
    assert new_id != device_id and Server(server_dir).device_key(new_id)
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["dev-1"]  # no staging left


@pytest.mark.parametrize("case", ["unknown board", "not a directory", "half a CA", "bad KEK"])
def test_bad_input_is_a_clear_error_and_leaves_nothing_behind(tmp_path, case):
    server_dir, bundle, env = tmp_path / "server", tmp_path / "out" / "dev", dict(os.environ)
    argv = ["provision", "--server", server_dir, "--out", bundle]
    expected = {"unknown board": "unknown board 'pico'",
                "not a directory": "is a file, not a directory",
                "half a CA": "fleet CA's private key is not in",  # or offline: it says where
                "bad KEK": "WEARSAFE_KEK must be 64 hex digits"}[case]
    if case == "unknown board":
        argv += ["--board", "pico"]
    elif case == "not a directory":
        (tmp_path / "file").write_text("x")
        bundle = tmp_path / "file" / "dev"
        argv[-1] = bundle
    elif case == "half a CA":
        assert wearsafe("broker-config", "--server", server_dir, "--out",
                        tmp_path / "conf").returncode == 0
        (server_dir / "pki" / "ca.key").unlink()
    else:
        env["WEARSAFE_KEK"] = "00" * 8
    out = subprocess.run([WEARSAFE, *map(str, argv)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 1 and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not bundle.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if (server_dir / "keys.db").exists():  # no key registered for a device never made
        with sqlite3.connect(server_dir / "keys.db") as db:
            assert db.execute("SELECT count(*) FROM device_keys").fetchone() == (0,)


def test_flash_dry_run_prints_the_esptool_and_mpremote_commands(tmp_path):
    bundle = tmp_path / "dev"
    assert wearsafe("provision", "--server", tmp_path / "server", "--out", bundle).returncode == 0
    firmware = tmp_path / "ESP32_GENERIC-OTA-20260101-v1.29.0.bin"
    firmware.write_bytes(combined_image())  # the OTA variant's layout (test_flash_firmware.py)
    out = wearsafe("flash", "--port", "/dev/ttyUSB7", "--bundle", bundle, "--firmware",
                   firmware, "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    esptool = "esptool --chip esp32 --port /dev/ttyUSB7 --baud 460800 "
    assert lines[0].endswith(esptool + "erase-flash")
    assert lines[1].endswith(esptool + f"write-flash 0x1000 {firmware}")
    # the payload key: an NVS image over the firmware's nvs partition (0x9000, 0x4000)
    assert lines[2].endswith(esptool + "write-flash 0x9000 '<nvs-image>'")
    mpremote = "mpremote connect /dev/ttyUSB7 resume fs cp "
    assert all(mpremote in line for line in lines[3:-1])
    assert lines[3].endswith("fs cp -r build/esp32_devkitc/fs/lib :.")
    assert lines[4].endswith(f"fs cp -r {bundle}/certs :.")
    assert lines[5].endswith("fs cp build/esp32_devkitc/fs/boot.py :boot.py")
    assert lines[8].endswith(f"fs cp {bundle}/settings.json :settings.json")
    assert lines[-1].startswith("(<nvs-image>: the payload key in ") and len(lines) == 10
    assert "NVS partition image of 0x4000 bytes" in lines[-1] and "deleted" in lines[-1]
    assert (bundle / "factory" / "payload-key.json").exists()  # a dry run changes nothing
    # the commands esptool is given are ones it knows
    for command in ("erase-flash", "write-flash"):
        assert wearsafe_tool("esptool", command, "--help").returncode == 0
    missing = wearsafe("flash", "--port", "/dev/ttyUSB7", "--bundle", bundle, "--dry-run")
    assert missing.returncode == 1 and "give --firmware" in missing.stderr


def wearsafe_tool(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool(name), *argv], capture_output=True, text=True, timeout=60)


# esp32_devkitc: the esp32 build on the esp32-port model, as an ESP32 runs it
@pytest.mark.parametrize("board_name", ["sim", "esp32_devkitc"])
def test_flash_then_hil_on_a_virtual_board_end_to_end(fleet, tmp_path, board_name):
    from host_tools.sim.fleet import SIM_HEAP
    from host_tools.testing.vboard import VirtualBoard

    bundle = tmp_path / "bundle"
    out = wearsafe("provision", "--server", fleet.server.directory, "--out", bundle,
                   "--broker-host", "localhost", "--broker-port", fleet.broker.port)
    assert out.returncode == 0, out.stderr
    device_id = (bundle / "device-id").read_text().strip()
    # the whole app on the 64-bit unix port needs the sim's heap (host_tools.sim.fleet)
    wifi = tmp_path / "wifi.json"  # the modelled station joins any network
    wifi.write_text('{"ssid": "lab", "key": "not-a-secret"}')
    with VirtualBoard(tmp_path / "vboard", heapsize=SIM_HEAP, board=board_name) as board:
        out = wearsafe("flash", "--port", board.port, "--bundle", bundle, "--board", board_name,
                       "--app-only", *(["--wifi", wifi] if board_name != "sim" else []))
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"flashed device {device_id}" in out.stdout
        root = board.root
        assert (root / "main.py").exists() and (root / "lib" / "wearsafe" / "app.mpy").exists()
        assert (root / "certs" / "device.key.der").exists()
        assert (root / "nvs-wearsafe.bin").exists()  # the key went into the board's NVS
        assert not (bundle / "factory").exists()  # and left the bundle
        settings = (root / "settings.json").read_bytes()
        app = {p: p.read_bytes() for p in sorted((root / "lib").rglob("*")) if p.is_file()}

        out = wearsafe("hil", "--port", board.port, "--board", board_name, "-k", "test_settings",
                       "--broker", f"localhost:{fleet.broker.port}", "--server",
                       fleet.server.directory, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "5 passed" in out.stdout  # tests/target/test_settings.py
        assert f"board end-to-end: device {device_id} published" in out.stdout
        assert "all opened under its key" in out.stdout
        # the board's application as hil found it: its settings (the end to end
        # changed them for its run), its lib/, and nothing of the harness left
        assert (root / "settings.json").read_bytes() == settings
        assert {p: p.read_bytes() for p in sorted((root / "lib").rglob("*"))
                if p.is_file()} == app
        assert not {"wstest", "tests", "wstest-tmp"} & {p.name for p in root.iterdir()}
    assert fleet.wait_stored(1) >= 1  # the ingest stored it too


def test_hil_without_a_broker_says_what_to_give():
    out = wearsafe("hil", "--port", "/dev/ttyUSB7")
    assert out.returncode == 1 and "give --broker HOST:PORT" in out.stderr
