"""The esp32-port model's own GC heap: what it holds once loaded stands for C modules
and silicon on a board, so a modelled device gets MODEL_HEAP on top of its heap
limit. The figure is deterministic; the allowance must cover it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from host_tools.device.build import build
from host_tools.paths import micropython
from host_tools.testing.esp32_model import MODEL_HEAP, model_env

LOADED = """
import gc
gc.collect(); before = gc.mem_alloc()
import _boot, esp32, machine, network, ntptime, time
bus = machine.I2C(0)
nvs = esp32.NVS("wearsafe")
running = esp32.Partition(esp32.Partition.RUNNING)
station = network.WLAN(network.STA_IF)
gc.collect(); print(gc.mem_alloc() - before)
"""


def test_the_model_fits_the_heap_it_is_given(tmp_path: Path):
    done = subprocess.run([micropython(), "-X", "heapsize=256K", "-c", LOADED], cwd=tmp_path,
                          env=model_env(build("esp32_devkitc"), tmp_path), capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    held = int(done.stdout)
    print(f"esp32-port model: {held} bytes of GC heap (allowance {MODEL_HEAP})")
    assert 40 * 1024 < held <= MODEL_HEAP
