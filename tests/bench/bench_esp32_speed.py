"""ESP32 speed for simulated devices: how many times faster than an ESP32 at 240 MHz
this machine's unix port runs MicroPython (MicroPython's perf_bench scores against
the ones its maintainers published, micropython/micropython#7850), and how close a
device's CPU quota comes to it: the same benchmarks with 10 times the work (so each
run outlasts a quota period), unthrottled and inside the quota, as a ratio measured
in one run. Needs a writable cgroup cpu controller (root here).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.testing import esp32_speed  # noqa: E402


def main() -> None:
    calibration = esp32_speed.calibrate(runs=5)
    print(calibration.line())
    for name, ratio in calibration.ratios.items():
        print(f"  {name:12} {ratio:6.1f} times an ESP32")
    quota = esp32_speed.CpuQuota(f"wearsafe-bench-{os.getpid()}", calibration.slowdown)
    try:
        ratios = [esp32_speed.score(name, size=1000, runs=2)
                  / esp32_speed.score(name, quota, size=1000, runs=1)
                  for name in esp32_speed.ESP32_SCORES]
    finally:
        quota.remove()
    measured = esp32_speed.geometric_mean(ratios)
    print(f"in the quota: {measured:.0f} times slower than unthrottled (wanted "
          f"{calibration.slowdown:.0f}): {measured / calibration.slowdown:.2f} of the aim")


if __name__ == "__main__":
    main()
