"""Simulated devices: the firmware build for board/sim, run on the MicroPython unix port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from host_tools.build import build
from host_tools.paths import micropython

SIM_HEAP = "96K"


def device_command(fs: Path) -> list[str]:
    # boot.py then main.py, as the ESP32 runs them.
    return [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c", "import boot, main"]


def start_device(fs: Path, state: Path) -> subprocess.Popen[str]:
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ, MICROPYPATH=f"lib{os.pathsep}.frozen", WEARSAFE_SIM_DIR=str(state))
    return subprocess.Popen(device_command(fs), cwd=fs, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(state_dir: Path, duration: float) -> int:
    """Run one simulated device for `duration` seconds, printing its log; return its status."""
    fs = build("sim")
    device = start_device(fs, state_dir / "device-1")
    deadline = time.monotonic() + duration
    crashed = False
    try:
        assert device.stdout is not None
        os.set_blocking(device.stdout.fileno(), False)
        while time.monotonic() < deadline and device.poll() is None:
            line = device.stdout.readline()
            if line:
                sys.stdout.write("device-1 | " + line)
            else:
                time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        # A device that ended by itself crashed; one we stop is fine.
        crashed = device.poll() is not None
        if not crashed:
            device.terminate()
            device.wait(timeout=5)
        else:
            assert device.stdout is not None
            sys.stdout.write("".join("device-1 | " + line for line in device.stdout))
    return 1 if crashed else 0
