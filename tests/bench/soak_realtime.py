"""Issue 15's acceptance run (`make soak`, about 15 minutes): one simulated device at
ESP32 speed walks for 10 minutes behind rtt=300ms, 2 % loss, 100 kbit/s and a
forced reconnect every minute, and downloads a signed 1 MiB firmware (published
a minute in). Then the same walk for 2 minutes at desktop speed on a direct link,
for the heart rate's accuracy there. Prints, for each run: FIFO overflows (the
packs' own counts), lost and duplicated messages, the share of seconds with a
heart rate and its gaps, and the heart rate's error against the scenario's.

    .venv/bin/python tests/bench/soak_realtime.py [MINUTES [DIR]]   # DIR: keep the state
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.fleet.export import readings  # noqa: E402
from host_tools.sim.fleet import Faults  # noqa: E402
from host_tools.sim.live_view import PlainView  # noqa: E402
from tests.bench.bench_realtime import OTA_WAIT_S, Script, _events  # noqa: E402

NETWORK = "rtt=300ms,loss=2%,rate=100kbit,drop-every=60s"
TRUE_HR = 95  # the walk scenario's (board/sim/simhw/scenarios.py)
BATCH_S = 5


class Soak(Script):
    """Walk for `duration` seconds from the first link-up; the update a minute in."""

    def _loop(self, fs: Path, duration: float | None, view: Any) -> float:
        device = self.devices[0]
        self.marks = {}
        self._until(fs, lambda: "link-up" in _events(device))
        end = time.monotonic() + (duration or 0)
        if self.calibration:  # at ESP32 speed
            self._settle(fs, 60)
            self._mark(device, "ota")
            self._publish_update()
            self._until(fs, lambda: device.restarts >= 1, OTA_WAIT_S)
        self._settle(fs, end - time.monotonic())
        return time.monotonic()


def heart_rate(rows: list[dict[str, Any]]) -> str:
    """Seconds with a heart rate, the gaps, and the error against the scenario's."""
    times = sorted(r["time"] for r in rows if r["quantity"] == "heart-rate")
    values = [r["value"] for r in rows if r["quantity"] == "heart-rate"]
    if len(times) < 2:
        return "no heart rate stored"
    span = times[-1] - times[0] + 1
    gaps = [f"{b - a - 1:.0f} s" for a, b in itertools.pairwise(times) if b - a > 1.5]
    errors = sorted(abs(v - TRUE_HR) for v in values)
    return (f"heart rate in {len(times)} of {span:.0f} s ({len(times) / span:.1%}), gaps: "
            f"{', '.join(gaps) or 'none'}; error against {TRUE_HR}/min: mean "
            f"{sum(errors) / len(errors):.1f}, 95th percentile "
            f"{errors[int(0.95 * (len(errors) - 1))]:.1f}, largest {errors[-1]:.1f}")


def soak(speed: str, minutes: float, network: str | None, keep: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="wearsafe-soak-") as tmp:
        sim = Soak(Path(keep or tmp) / speed, 1, "walk", BATCH_S, Faults(), speed=speed,
                   network=network)
        summary = sim.run(minutes * 60, PlainView(open("/dev/null", "w")))  # noqa: SIM115
        rows = readings(sim.server, sim.devices[0].device.device_id)
        log = sim.devices[0].log_path.read_text()
        print(f"{speed} speed, {network or 'direct link'}, {minutes:g} min walking:")
        if sim.calibration:
            print(f"  speed: {sim.calibration.line()}")
        print(f"  FIFO overflows {summary['overflows']}, lost {summary['lost']}, duplicates "
              f"{summary['duplicates']} of {summary['produced']} messages; "
              f"{log.count(' link-up ')} connects, {summary['network_drops']} forced drops, "
              f"{log.count(' update-installed ')} update installed, "
              f"{log.count(' info boot ')} boots")
        print(f"  {heart_rate(rows)}")


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    keep = sys.argv[2] if len(sys.argv) > 2 else None
    soak("esp32", minutes, NETWORK, keep)
    soak("desktop", 2, None, keep)


if __name__ == "__main__":
    main()
