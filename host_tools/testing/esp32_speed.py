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
(about 125 ms here), well below the FIFOs' 1.28 s.

C code is not bytecode: mbedTLS's elliptic-curve arithmetic gains about three
times more from a 64-bit desktop than the interpreter does, so under the
bytecode quota a TLS handshake took 3 to 5 times what it takes on an ESP32.
mbedTLS therefore has its own rate (mbedtls_speed.py: one P-256 verification
here against the published ESP32 figure), applied exactly rather than by a
second quota (a quota runs C in tick-long bursts: a verification stalled 0.6 of
an ESP32's time): each device's thread moves for every call into the TLS session
into an unlimited sibling group, and when mbedTLS calls back into Python or
returns it moves back and waits until that stretch has taken the slowdown
times the CPU it used (board/sim/esp32speed/ssl.py). A move is one write of "0"
to a group's tasks file, about 3 us with no global lock (kernel/cgroup/
cgroup-v1.c: for a single thread cgroup_procs_write_start skips the threadgroup
lock).

What the model still gets wrong, measured by `make bench`: the kernel enforces
the bytecode quota at its ticks (CONFIG_HZ=250 here), so a device may overrun a
period by up to a tick and then wait out the next periods until the debt is
paid: bytecode runs in bursts of up to 4 ms of this machine's CPU, and a long
stretch of Python may stall a few periods longer than on an ESP32. Everything
else C does (hashlib, cryptolib, the sockets; hardware-assisted on an ESP32)
runs at the bytecode rate: harsher, never kinder.

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
from host_tools.testing import mbedtls_speed

BENCHMARKS = ROOT / "tests" / "bench" / "perf_bench"
# micropython/micropython#7850: ESP32 (240 MHz) scores, higher is faster.
ESP32_SCORES = {"bm_fannkuch": 71.63, "bm_fft": 2467.62, "bm_float": 3467.35,
                "bm_nqueens": 2232.22, "bm_pidigits": 591.97, "misc_mandel": 1966.91}
PUBLISHED = "micropython/micropython#7850 (ESP32 at 240 MHz, perf_bench N=100 M=100)"
MIN_QUOTA_US = 1000  # the kernel refuses a smaller CFS quota
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")
# The device half of the model: the port's ssl, its TLS calls at mbedTLS's ESP32 speed.
DEVICE_MODEL = ROOT / "board" / "sim" / "esp32speed"


@dataclass(frozen=True)
class Calibration:
    slowdown: float  # how many times faster than an ESP32 the unix port runs here
    ratios: dict[str, float]  # per benchmark: unix-port score / ESP32 score
    verify_ms: float | None = None  # one P-256 verification in the unix port's mbedTLS here

    @property
    def crypto_slowdown(self) -> float | None:
        """How many times faster than an ESP32 the unix port's mbedTLS runs here."""
        return mbedtls_speed.ESP32_VERIFY_MS / self.verify_ms if self.verify_ms else None

    def quota(self, name: str) -> CpuQuota:
        return CpuQuota(name, self.slowdown, self.crypto_slowdown)

    def line(self) -> str:
        spread = f"{min(self.ratios.values()):.0f} to {max(self.ratios.values()):.0f}"
        line = (f"esp32: the unix port runs {self.slowdown:.0f} times an ESP32 here "
                f"(geometric mean of {len(self.ratios)} MicroPython benchmarks, {spread}, "
                f"against {PUBLISHED}); each device gets 1/{self.slowdown:.0f} of a core")
        if self.verify_ms:
            line += (f"; its mbedTLS runs {self.crypto_slowdown:.0f} times an ESP32 (a P-256 "
                     f"verification {self.verify_ms:.1f} ms here against "
                     f"{mbedtls_speed.ESP32_VERIFY_MS} ms, {mbedtls_speed.PUBLISHED}), "
                     f"each stretch of TLS paced to {self.crypto_slowdown:.0f} times its CPU")
        return line


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
    """This machine's unix port (inside `cgroup` if given: its bytecode only) against
    the ESP32's scores, and (unthrottled) its mbedTLS against the ESP32's."""
    ratios = {name: score(name, cgroup, runs) / esp32 for name, esp32 in ESP32_SCORES.items()}
    verify_ms = None if cgroup else mbedtls_speed.verify_ms()
    return Calibration(geometric_mean(list(ratios.values())), ratios, verify_ms)


def _period_us(slowdown: float) -> int:
    return max(int(MIN_QUOTA_US * slowdown), MIN_QUOTA_US)


def _cpu_group(name: str, slowdown: float | None) -> Path:
    """A cgroup whose threads share 1/slowdown of one core (None: unlimited); its
    tasks file."""
    period_us = _period_us(slowdown or 1)
    quota_us = MIN_QUOTA_US if slowdown else -1
    if CGROUP_V1.is_dir() and os.access(CGROUP_V1, os.W_OK):
        path = CGROUP_V1 / name
        path.mkdir(exist_ok=True)
        (path / "cpu.cfs_period_us").write_text(f"{period_us}\n")
        (path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
        return path / "tasks"  # one thread moves, without the threadgroup lock
    if (CGROUP_V2 / "cgroup.controllers").is_file() \
            and "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
        path = CGROUP_V2 / name
        path.mkdir(exist_ok=True)
        (path / "cpu.max").write_text(f"{quota_us if slowdown else 'max'} {period_us}\n")
        return path / "cgroup.procs"
    raise ToolError("cannot run devices at ESP32 speed: no writable cgroup cpu "
                    f"controller ({CGROUP_V1} or a cgroup v2 with cpu at {CGROUP_V2}); "
                    "run as root on a machine with CFS bandwidth control, or leave "
                    "out --speed esp32")


class CpuQuota:
    """A cgroup whose processes share `1/slowdown` of one core (CFS bandwidth control),
    and, given `crypto_slowdown`, an unlimited one their TLS calls move into, paced
    to that slowdown by the device half of the model."""

    def __init__(self, name: str, slowdown: float, crypto_slowdown: float | None = None) -> None:
        self.slowdown = slowdown
        self.crypto_slowdown = crypto_slowdown
        self.period_us = _period_us(slowdown)
        self.tasks = [_cpu_group(name, slowdown)]
        if crypto_slowdown:
            self.tasks.append(_cpu_group(f"{name}-tls", None))
        self.path = self.tasks[0].parent

    def holds(self, pid: int) -> bool:
        """Whether process `pid` is in these groups."""
        try:
            return any(str(pid) in (tasks.parent / "cgroup.procs").read_text().split()
                       for tasks in self.tasks)
        except OSError:
            return False

    def enter(self) -> None:
        """preexec_fn: the starting process (and what it starts) joins the group."""
        (self.path / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def device_env(self, env: dict[str, str]) -> dict[str, str]:
        """`env` (a device's, with MICROPYPATH) with the device half of the model:
        its ssl moves the process into the TLS group for each call into mbedTLS."""
        if len(self.tasks) < 2:
            return env
        return dict(env, MICROPYPATH=f"{DEVICE_MODEL}{os.pathsep}{env['MICROPYPATH']}",
                    WEARSAFE_CPU_GROUPS=os.pathsep.join(map(str, self.tasks)),
                    WEARSAFE_TLS_SLOWDOWN=f"{self.crypto_slowdown:.2f}")

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the groups once their processes are gone (they may still be exiting)."""
        deadline = time.monotonic() + wait_s
        for path in (tasks.parent for tasks in self.tasks):
            while path.exists():
                try:
                    path.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        return  # still busy: the kernel keeps it until it is empty
                    time.sleep(0.05)
