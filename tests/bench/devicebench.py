"""Helpers for benchmarks that run device code on the MicroPython unix port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from host_tools.device.build import build
from host_tools.paths import micropython

_FS: list[Path] = []


def run(code: str, heap: str = "96K", env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    """Run code on the sim board in simulated time (built once per benchmark run)."""
    if not _FS:
        _FS.append(build("sim"))
    env = dict(os.environ, MICROPYPATH=f"{_FS[0] / 'lib'}:.frozen", WEARSAFE_SIM_SPEED="0",
               WEARSAFE_SIM_SEED="1", WEARSAFE_SIM_DIR=str(_FS[0].parent), **(env or {}))
    # cwd: not the repository, whose board/ folder would shadow the board module
    return subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code], env=env,
                          cwd=_FS[0].parent,
                          capture_output=True, text=True, timeout=600, check=False)


def figures(code: str, heap: str = "96K", env: dict[str, str] | None = None
            ) -> dict[str, float]:
    """Run code that prints `name=value` lines; return them as numbers."""
    done = run(code, heap, env)
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
