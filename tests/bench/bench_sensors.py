"""Sensor pipeline benchmark on the MicroPython unix port.

CPU time the firmware spends per second of sensor data (FIFO reads, the
estimators and the per-second vitals), as a fraction of real time, with the
emulated chips' own work left out; and the peak GC heap the pipeline needs,
found as the smallest heap it completes a minute of data in.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.devicebench import figures, min_heap  # noqa: E402

SETUP = """
import time, board
from wearsafe import sensing
hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
out = sensing.Vitals()
"""
PIPELINE = SETUP + """
poll_us = vitals_us = 0
SECONDS = 60
for second in range(SECONDS):
    for _ in range(10):
        board.sleep_ms(100)
        t = time.ticks_us(); hub.poll(); poll_us += time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us(); hub.vitals(out); vitals_us += time.ticks_diff(time.ticks_us(), t)
assert out.heart_rate and hub.ppg.overflows == 0 and hub.accel.overruns == 0
print("poll_us=%d" % poll_us, "vitals_us=%d" % vitals_us, "seconds=%d" % SECONDS,
      "steps=%d" % out.steps)
"""


def main() -> None:
    for scenario in ("rest", "walk"):
        f = figures(PIPELINE, heap="128K", env={"WEARSAFE_SCENARIO": scenario})
        per_second = (f["poll_us"] + f["vitals_us"]) / f["seconds"]
        print(f"sensor pipeline ({scenario}): {per_second / 1000:.2f} ms CPU per second of data "
              f"= {per_second / 1e6:.2%} of real time (FIFO reads and estimators "
              f"{f['poll_us'] / f['seconds'] / 1000:.2f} ms, vitals "
              f"{f['vitals_us'] / f['seconds'] / 1000:.2f} ms; {f['steps']:.0f} steps)")
    idle, peak = min_heap(SETUP), min_heap(PIPELINE)
    print(f"sensor pipeline peak GC heap: {peak / 1024:.1f} KB, of which "
          f"{(peak - idle) / 1024:.1f} KB above idle (idle: the simulator and the firmware "
          f"modules loaded, {idle / 1024:.1f} KB); smallest heaps a minute of data and the "
          "set-up alone complete in, on the unix port, whose 64-bit objects make them an "
          "upper bound for the ESP32")


if __name__ == "__main__":
    main()
