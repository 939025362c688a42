"""Simulated devices: the firmware build for board/sim, run on the MicroPython unix port.

Each device lives in its own directory (0700) under the state directory: its
NVS (keys, counter), settings.json, and device.json (0600), the host's copy
of its payload key for the ingest.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from host_tools.build import build
from host_tools.paths import ToolError, micropython

# The whole application with every module loaded as .mpy into RAM, on the
# 64-bit unix port (objects up to twice their ESP32 size). On the ESP32 the
# modules are frozen into flash instead (board/esp32_devkitc/manifest.py).
SIM_HEAP = "192K"

PROVISION = """
import sys, board
from binascii import unhexlify
from wearsafe import keystore
device_id, key, kid, iv = sys.stdin.read().split()
store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
store.provision(device_id, unhexlify(key), unhexlify(kid), unhexlify(iv))
"""


def device_env(fs: Path, state: Path, scenario: str, speed: str = "1") -> dict[str, str]:
    return dict(os.environ, MICROPYPATH=f"{fs / 'lib'}{os.pathsep}.frozen",
                WEARSAFE_SIM_DIR=str(state), WEARSAFE_SCENARIO=scenario,
                WEARSAFE_SIM_SPEED=speed)


def provision(fs: Path, state: Path) -> dict[str, str]:
    """Give a simulated device a random pseudonym and payload key (once)."""
    record = state / "device.json"
    if record.exists():
        return json.loads(record.read_text())
    device = {"device_id": secrets.token_hex(8), "key_id": secrets.token_hex(4),
              "key": secrets.token_hex(32), "base_iv": secrets.token_hex(13)}
    secret_input = " ".join(device[k] for k in ("device_id", "key", "key_id", "base_iv"))
    done = subprocess.run([micropython(), "-c", PROVISION], input=secret_input, text=True,
                          cwd=state, env=device_env(fs, state, "rest"), capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise ToolError(f"provisioning the simulated device in {state} failed:\n{done.stderr}")
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(device, f)
    return device


def prepare(fs: Path, state: Path, batch_seconds: int) -> dict[str, str]:
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    (state / "settings.json").write_text(json.dumps({"batch_seconds": batch_seconds}))
    return provision(fs, state)


def start_device(fs: Path, state: Path, scenario: str) -> subprocess.Popen[str]:
    # cwd: the device's filesystem root, as on a board; boot.py then main.py.
    command = [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c", "import boot, main"]
    return subprocess.Popen(command, cwd=fs, env=device_env(fs, state, scenario), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(state_dir: Path, duration: float, scenario: str = "rest", batch_seconds: int = 5) -> int:
    """Run one simulated device for `duration` seconds, printing its log; return its status."""
    fs = build("sim")
    state = state_dir / "device-1"
    device = prepare(fs, state, batch_seconds)
    print(f"device-1: pseudonym {device['device_id']}, scenario {scenario}, state {state}",
          flush=True)
    process = start_device(fs, state, scenario)
    deadline = time.monotonic() + duration
    crashed = False
    try:
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        while time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
            if line:
                sys.stdout.write("device-1 | " + line)
            else:
                time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        # A device that ended by itself crashed; one we stop is fine.
        crashed = process.poll() is not None
        if not crashed:
            process.terminate()
            process.wait(timeout=5)
        else:
            assert process.stdout is not None
            sys.stdout.write("".join("device-1 | " + line for line in process.stdout))
    return 1 if crashed else 0
