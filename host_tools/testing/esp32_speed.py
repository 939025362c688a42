"""Simulated devices at ESP32 speed: each device's unix-port process gets a CPU quota
(a cgroup) that makes MicroPython run its bytecode about as fast as an ESP32 does.

Calibration: MicroPython's own performance benchmarks (tests/bench/perf_bench,
copied from micropython/micropython tests/perf_bench) are scored on this
machine's unix port and compared with the scores the MicroPython maintainers
published for an ESP32 at 240 MHz (micropython/micropython pull request #7850,
"esp32: enable some optimisations", 2021-09-24, column esp32-perf, N=100
M=100; those optimisations are in every release since 1.18). The slowdown is
the geometric mean of the per-benchmark ratios; the quota gives a device that
share of one core. The same benchmarks run again inside a quota say how close
it came.

The kernel's CFS bandwidth control hands the quota out per period (at least
1 ms of CPU each period): a throttled device runs at full speed for 1 ms, then
waits out the rest of the period, where an ESP32 runs slowly all the time.
Work per second is the ESP32's; the finest grain of a delay is one period
(about 65 ms here), well below the FIFOs' 1.28 s.

What the quota gets wrong, each measured by `make bench`: the quota is handed out
in periods (above), and the kernel enforces it at its ticks (CONFIG_HZ=250 here),
so a device may overrun a period and wait out the next ones: the same work
stalls 8 to 13 periods. And C code is not bytecode: mbedTLS's elliptic-curve
arithmetic gains more from a 64-bit desktop, so under the quota one P-256
verification takes 3 to 5 times what an ESP32 takes (tests/bench/
bench_tls_pieces.py, with the published figures). Both make the simulator
harsher than a board in a TLS handshake, never kinder.

Throttling needs a writable cpu controller: cgroup v1 (/sys/fs/cgroup/cpu) or
v2 (cpu.max); root has one on these machines. Where there is none the tools
say so and stop, never run unthrottled while claiming ESP32 speed.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from host_tools.paths import ROOT, ToolError, micropython

BENCHMARKS = ROOT / "tests" / "bench" / "perf_bench"
# micropython/micropython#7850: ESP32 (240 MHz) scores, higher is faster.
ESP32_SCORES = {"bm_fannkuch": 71.63, "bm_fft": 2467.62, "bm_float": 3467.35,
                "bm_nqueens": 2232.22, "bm_pidigits": 591.97, "misc_mandel": 1966.91}
PUBLISHED = "micropython/micropython#7850 (ESP32 at 240 MHz, perf_bench N=100 M=100)"
MIN_QUOTA_US = 1000  # the kernel refuses a smaller CFS quota
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")


@dataclass(frozen=True)
class Calibration:
    slowdown: float  # how many times faster than an ESP32 the unix port runs here
    ratios: dict[str, float]  # per benchmark: unix-port score / ESP32 score

    def line(self) -> str:
        spread = f"{min(self.ratios.values()):.0f} to {max(self.ratios.values()):.0f}"
        return (f"esp32: the unix port runs {self.slowdown:.0f} times an ESP32 here "
                f"(geometric mean of {len(self.ratios)} MicroPython benchmarks, {spread}, "
                f"against {PUBLISHED}); each device gets 1/{self.slowdown:.0f} of a core")


def score(name: str, cgroup: CpuQuota | None = None, runs: int = 5, size: int = 100) -> float:
    """MicroPython's score for one benchmark on the unix port (the best of `runs`);
    `size` is perf_bench's N and M (100, as published; 1000 for more work per run)."""
    script = ((BENCHMARKS / f"{name}.py").read_text() + (BENCHMARKS / "benchrun.py").read_text()
              + f"bm_run({size}, {size})\n")
    best = 0.0
    for _ in range(runs):
        done = subprocess.run([micropython(), "-c", script], capture_output=True, text=True,
                              timeout=600, check=False,
                              preexec_fn=cgroup.enter if cgroup else None)
        fields = done.stdout.split(None, 2)
        if done.returncode != 0 or len(fields) < 2 or int(fields[0]) <= 0:
            raise ToolError(f"benchmark {name} failed on the unix port: "
                            f"{(done.stdout + done.stderr).strip()[-300:]}")
        best = max(best, 1e6 * int(fields[1]) / int(fields[0]))
    return best


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def calibrate(cgroup: CpuQuota | None = None, runs: int = 5) -> Calibration:
    """This machine's unix port (inside `cgroup` if given) against the ESP32's scores."""
    ratios = {name: score(name, cgroup, runs) / esp32 for name, esp32 in ESP32_SCORES.items()}
    return Calibration(geometric_mean(list(ratios.values())), ratios)


class CpuQuota:
    """A cgroup whose processes share `1/slowdown` of one core (CFS bandwidth control)."""

    def __init__(self, name: str, slowdown: float) -> None:
        self.slowdown = slowdown
        self.period_us = max(int(MIN_QUOTA_US * slowdown), MIN_QUOTA_US)
        if CGROUP_V1.is_dir() and os.access(CGROUP_V1, os.W_OK):
            self.path = CGROUP_V1 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(f"{self.period_us}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{MIN_QUOTA_US}\n")
        elif (CGROUP_V2 / "cgroup.controllers").is_file() \
                and "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
            self.path = CGROUP_V2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{MIN_QUOTA_US} {self.period_us}\n")
        else:
            raise ToolError("cannot run devices at ESP32 speed: no writable cgroup cpu "
                            f"controller ({CGROUP_V1} or a cgroup v2 with cpu at {CGROUP_V2}); "
                            "run as root on a machine with CFS bandwidth control, or leave "
                            "out --speed esp32")

    def holds(self, pid: int) -> bool:
        """Whether process `pid` is in this group."""
        try:
            return str(pid) in (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return False

    def enter(self) -> None:
        """preexec_fn: the starting process (and what it starts) joins the group."""
        (self.path / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the group once its processes are gone (they may still be exiting)."""
        deadline = time.monotonic() + wait_s
        while self.path.exists():
            try:
                self.path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    return  # still busy: the kernel keeps it until it is empty
                time.sleep(0.05)
