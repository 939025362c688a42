"""Secrets hygiene: no private key, payload key or CA key in git, in any log, or in a
file that group or others can read; no WebREPL in device code."""

from __future__ import annotations

import base64
import re
import stat
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host_tools.fleet.server import Server
from host_tools.paths import ROOT, venv_tool

PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]{40,}-----END")
SECRET_NAMES = (".key", ".key.der", "kek", "keys.db", "payload-key.json")


def test_no_private_key_or_secret_is_tracked_by_git():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    assert len(tracked) > 50  # we are looking at the repository
    named = [f for f in tracked if f.endswith(SECRET_NAMES) or "/nvs-" in f
             or f.startswith(("sim-state/", "build/"))]
    assert not named, f"secret-looking files tracked by git: {named}"
    pem = [f for f in tracked if f and (ROOT / f).is_file()
           and PEM_PRIVATE_KEY.search((ROOT / f).read_bytes())]
    assert not pem, f"PEM private keys tracked by git: {pem}"


def test_device_code_never_starts_webrepl():
    for tree in (ROOT / "firmware", ROOT / "board"):
        for path in tree.rglob("*.py"):
            assert "webrepl" not in path.read_text(), f"{path} mentions WebREPL"


def _forms(secret: bytes) -> list[bytes]:
    """How a key could be written out by mistake: raw, hex, base64."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            base64.b64encode(secret).rstrip(b"=")]


def _secrets(state: Path) -> dict[str, bytes]:
    server = Server(state / "server")
    found = {"KEK": (state / "server" / "kek").read_bytes()}
    for _, (device_id, key) in server.keys().items():
        found[f"payload key of {device_id}"] = key.key
    for pem in (state / "server").rglob("*.key"):
        key = serialization.load_pem_private_key(pem.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        found[str(pem.relative_to(state))] = key.private_numbers().private_value.to_bytes(32, "big")
    for der in state.rglob("device.key.der"):
        key = serialization.load_der_private_key(der.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        found[str(der.relative_to(state))] = key.private_numbers().private_value.to_bytes(32, "big")
    return found


def test_no_key_appears_in_any_log_and_no_secret_file_is_readable_by_others(tmp_path):
    state = tmp_path / "state"
    run = subprocess.run([venv_tool("wearsafe"), "sim", "--devices", "2", "--duration", "12",
                          "--batch-seconds", "2", "--state", str(state)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    secrets = _secrets(state)
    assert len(secrets) >= 1 + 2 + 2 + 2  # KEK, 2 payload keys, CA + identities, 2 devices
    logs = {"sim output": (run.stdout + run.stderr).encode()}
    logs.update({str(p.relative_to(state)): p.read_bytes() for p in state.rglob("*.log")})
    assert "ingest.log" in logs and "server/broker/mosquitto.log" in logs and len(logs) >= 5
    for name, data in logs.items():
        for what, secret in secrets.items():
            assert not any(form in data for form in _forms(secret)), f"{what} is in {name}"

    holders = [p for p in state.rglob("*") if p.is_file()
               and (p.name.endswith(SECRET_NAMES) or p.name.startswith("nvs-")
                    or any(s in p.read_bytes() for s in secrets.values()))]
    assert len(holders) >= len(secrets)
    for path in holders:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & 0o077, f"{path.relative_to(state)} holds a secret and is {mode:o}"
        parent = stat.S_IMODE(path.parent.stat().st_mode)
        assert not parent & 0o077 or _private_above(path.parent, state), \
            f"{path.parent.relative_to(state)} is {parent:o}"


def _private_above(directory: Path, state: Path) -> bool:
    """Some directory between `directory` and the state root is 0700."""
    while directory != state.parent:
        if not stat.S_IMODE(directory.stat().st_mode) & 0o077:
            return True
        directory = directory.parent
    return False
