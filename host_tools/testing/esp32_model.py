"""The esp32-port model: board/esp32_devkitc's build running unchanged on the unix port.

board/sim/esp32port holds MicroPython modules that stand in for what the
esp32 port has and the unix port lacks or does otherwise (time with the 2000
epoch and 30-bit ticks, esp32.NVS and Partition with the stock and OTA
tables and the bootloader's rollback, machine.I2C carrying the sim board's
chips, WLAN, ntptime). They come first on the device's path, as a port's
built-in modules do. It is test equipment: nothing of it is in a board's
build. A modelled device's filesystem root is its state directory (the
working directory), where the model also keeps its flash (esp32-*.bin,
nvs-*.bin).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from host_tools.device.build import compile_module
from host_tools.device.nvs_image import nvs_image
from host_tools.device.provision import FACTORY_KEY, Device, provision
from host_tools.fleet.pki import write_private
from host_tools.fleet.server import Server
from host_tools.paths import BOARDS, BUILD, ToolError, micropython

SOURCES = (BOARDS / "sim" / "esp32port", BOARDS / "sim" / "simhw")
BOARD = "esp32_devkitc"
VARIANTS = ("ota", "stock")
# Before the firmware's boot.py: the port's _boot (the bootloader's choice of slot),
# and the model's modules loaded at once: on a board they are C modules, present from
# reset and costing no GC heap. Loaded late (network at the first upload window), they
# would be compiled code landing in a heap the firmware has fragmented.
POWER_ON = "import _boot, esp32, machine, network, ntptime"
# GC heap the model itself holds once loaded (its modules, the I2C bus with the
# emulated chips, NVS and partition objects): built-in C modules and silicon on
# a board, so a modelled device gets this much on top of its heap limit.
# tests/test_esp32_model.py measures it (54,432 bytes on the 64-bit unix port).
MODEL_HEAP = 56 * 1024


def build_model() -> Path:
    """build/esp32port/lib: the model's modules and the chips it carries, as .mpy."""
    out = BUILD / "esp32port" / "lib"
    for tree in SOURCES:
        for src in sorted(tree.glob("*.py")):
            rel = Path(src.name) if tree.name == "esp32port" else Path(tree.name) / src.name
            target = out / rel.with_suffix(".mpy")
            if not target.exists() or target.stat().st_mtime < src.stat().st_mtime:
                compile_module(src, target, str(rel))
    return out


def power_on(fs: Path, state: Path, code: str, heap: int, **extra: str) -> dict[str, Any]:
    """subprocess arguments: the modelled board in `state` powers on (the port's _boot,
    the bootloader's choice of slot) and runs `code` with `heap` bytes for the firmware."""
    return {"args": [micropython(), "-X", f"heapsize={heap + MODEL_HEAP}", "-c",
                     f"{POWER_ON}; {code}"],
            "cwd": state, "env": model_env(fs, state, **extra)}


def model_env(fs: Path, state: Path, variant: str = "ota", **extra: str) -> dict[str, str]:
    """Environment of a modelled ESP32 running the esp32 build in `fs` on state `state`."""
    if variant not in VARIANTS:
        raise ToolError(f"unknown ESP32 firmware variant {variant!r}: ota or stock")
    path = os.pathsep.join([str(build_model()), str(fs / "lib"), str(fs), ".frozen"])
    env = dict(os.environ, MICROPYPATH=path, WEARSAFE_SIM_DIR=str(state),
               WEARSAFE_ESP32_VARIANT=variant)
    env.update(extra)
    return env


def nvs_partition(variant: str = "ota") -> tuple[str, int]:
    """(label, size) of the nvs partition in the variant's table, as the model has it
    (board/sim/esp32port/flashmodel.py TABLES, plain Python that CPython reads too)."""
    if variant not in VARIANTS:
        raise ToolError(f"unknown ESP32 firmware variant {variant!r}: ota or stock")
    spec = importlib.util.spec_from_file_location("_flashmodel", SOURCES[0] / "flashmodel.py")
    assert spec is not None and spec.loader is not None
    model: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    label, _, _, _, size = next(e for e in model.TABLES[variant] if e[0] == "nvs")
    return label, size


def install_payload_key(state: Path, variant: str = "ota") -> None:
    """What `wearsafe flash` does on a board: the bundle's factory key out of the bundle,
    as an NVS partition image (host_tools.device.nvs_image, the same generator) into the
    modelled nvs partition, which the model's esp32.NVS reads (nvsimage.py beside it).
    As after erase-flash, nothing the namespaces held before survives."""
    key_file = state / FACTORY_KEY
    label, size = nvs_partition(variant)
    image = nvs_image(json.loads(key_file.read_text()), size)
    shutil.rmtree(key_file.parent)  # taken before it is written, as flash.py does
    for store in state.glob("nvs-*.bin"):
        store.unlink()
    write_private(state / f"esp32-{label}.bin", image)


def provision_model_device(server: Server, fs: Path, state: Path, broker_port: int,
                           batch_seconds: int = 60, upload_interval_s: int = 0,
                           broker_host: str = "localhost") -> Device:
    """A modelled ESP32 in `state` as `wearsafe flash` leaves a board: the bundle,
    the payload key in NVS, Wi-Fi credentials for the modelled access point."""
    device = provision(server, BOARD, state, {"batch_seconds": batch_seconds,
                                              "broker_host": broker_host,
                                              "broker_port": broker_port,
                                              "upload_interval_s": upload_interval_s},
                       simulated=True)
    install_payload_key(state)
    (state / "wifi.json").write_text('{"ssid": "wearsafe-sim", "key": "sim"}\n')
    return device
