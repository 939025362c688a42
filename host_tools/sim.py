"""Simulated devices end to end: a real Mosquitto with TLS, the ingest, and the
firmware build for board/sim on the MicroPython unix port.

All state lives under one directory: server/ (CA, broker, key vault, message
store, audit log; see host_tools.server) and device-1/ (the device's bundle,
NVS and outbox, 0700). The device keeps its identity from run to run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from host_tools.broker import Broker
from host_tools.build import build
from host_tools.images import signing_key_for
from host_tools.ingest import Ingest
from host_tools.paths import micropython
from host_tools.provision import Device, provision_sim_device, sim_env
from host_tools.server import Server

# The whole application with every module loaded as .mpy into RAM, on the
# 64-bit unix port (objects up to twice their ESP32 size). On the ESP32 the
# modules are frozen into flash instead (board/esp32_devkitc/manifest.py).
SIM_HEAP = "256K"
RESET_EXIT = 75  # board/sim: the device asked for a reset


def device_in(server: Server, fs: Path, state: Path, port: int, batch_seconds: int) -> Device:
    """The simulated device in `state`, provisioned on first use."""
    known = state / "device-id"
    if known.exists():
        _set_port(state, port)
        return Device(known.read_text().strip(), state)
    device = provision_sim_device(server, fs, state, port, batch_seconds)
    known.write_text(device.device_id + "\n")
    return device


def _set_port(state: Path, port: int) -> None:
    """The broker of this run listens on a new free port: tell the device."""
    settings_path = state / "settings.json"
    settings = json.loads(settings_path.read_text())
    settings["broker_port"] = port
    settings_path.write_text(json.dumps(settings, indent=1) + "\n")


def start_device(fs: Path, device: Device, scenario: str) -> subprocess.Popen[str]:
    # cwd: the device's filesystem root, as on a board; boot.py then main.py.
    command = [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c", "import boot, main"]
    env = sim_env(fs, device.state, WEARSAFE_SCENARIO=scenario, WEARSAFE_SIM_SPEED="1")
    return subprocess.Popen(command, cwd=fs, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def run(state_dir: Path, duration: float, scenario: str = "rest", batch_seconds: int = 5) -> int:
    """Broker, ingest and one simulated device for `duration` seconds; a summary at the end."""
    fs = build("sim")
    server = Server(state_dir / "server").init()
    stop = threading.Event()
    with Broker(server.broker_dir, server.ca) as broker, \
            open(state_dir / "ingest.log", "a") as ingest_log:
        ingest = Ingest(server, log=ingest_log)
        ready = threading.Event()
        thread = threading.Thread(target=ingest.run, args=(broker.port,),
                                  kwargs={"stop": stop, "ready": ready}, daemon=True)
        thread.start()
        ready.wait(10)
        signing_key_for(server, state_dir / "signing" / "update-key.pem")
        device = device_in(server, fs, state_dir / "device-1", broker.port, batch_seconds)
        print(f"broker on localhost:{broker.port} (TLS, client certificates); ingest on "
              f"{server.directory}", flush=True)
        print(f"device-1: pseudonym {device.device_id}, scenario {scenario}", flush=True)
        log, crashed = "", False
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:  # a reset starts the device again, as power-on
            part, code = _follow(start_device(fs, device, scenario), deadline)
            log += part
            if code != RESET_EXIT:
                crashed = code is not None
                break
            print("device-1 | (reset)", flush=True)
        produced = len(re.findall(r" info sealed ", log))
        deadline = time.monotonic() + 5
        while ingest.stored < produced and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
    lost = max(0, produced - ingest.stored)
    print(f"produced={produced} stored={ingest.stored} lost={lost} "
          f"duplicates={ingest.duplicates} rejected={ingest.rejected}", flush=True)
    return 1 if crashed else 0


def _follow(process: subprocess.Popen[str], deadline: float) -> tuple[str, int | None]:
    """Print the device's log until `deadline`; (the log, its exit code if it ended by itself)."""
    assert process.stdout is not None
    lines: list[str] = []
    os.set_blocking(process.stdout.fileno(), False)
    try:
        while time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
            if line:
                lines.append(line)
                sys.stdout.write("device-1 | " + line)
            else:
                time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        code = process.poll()
        if code is None:
            process.terminate()
            process.wait(timeout=5)
        rest = process.stdout.read() or ""
        lines.append(rest)
        sys.stdout.write("".join("device-1 | " + line for line in rest.splitlines(True)))
    return "".join(lines), code
