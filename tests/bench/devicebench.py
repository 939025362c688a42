"""Helpers for benchmarks that run device code on the MicroPython unix port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from host_tools.build import build
from host_tools.paths import micropython


def run(code: str, heap: str = "96K", state: Path | None = None) -> subprocess.CompletedProcess:
    fs = build("sim") if not (Path("build/sim/fs/lib").exists()) else Path("build/sim/fs")
    env = dict(os.environ, MICROPYPATH=f"{fs.resolve() / 'lib'}:.frozen",
               WEARSAFE_SIM_DIR=str(state or fs))
    return subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def figures(code: str, heap: str = "96K") -> dict[str, float]:
    """Run code that prints `name=value` lines; return them as numbers."""
    done = run(code, heap)
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return {k: float(v) for k, v in (line.split("=", 1) for line in done.stdout.split()
                                     if "=" in line)}


def min_heap(code: str, low: int = 4096, high: int = 512 * 1024, step: int = 256) -> int:
    """The smallest GC heap (bytes) in which code runs to completion: its peak need."""
    if run(code, str(high)).returncode != 0:
        raise RuntimeError(f"fails even with a {high}-byte heap")
    while high - low > step:
        mid = (low + high) // 2
        if run(code, str(mid)).returncode == 0:
            high = mid
        else:
            low = mid
    return high
