"""Days on a charge (issue 16): the default profile (vitals each second, 60 s
batches, 15-minute upload windows) against always connected, each one simulated
device at ESP32 speed (its process in the calibrated CPU quota, so its awake time
is what an ESP32 takes), both in this one run, for one window interval and a bit.
The devices count their own time per state (firmware/lib/wearsafe/energy.py) and
send it in status messages; the host's energy model (host_tools/fleet/energy.py,
each current cited) turns what the ingest stored into mA and days on 400 mAh.

    python tests/bench/bench_energy.py [SECONDS]   (default 930)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.paths import venv_tool  # noqa: E402

CELL_MAH = 400
PROFILES = {"duty-cycled": 900, "always-connected": 0}  # upload_interval_s


def main() -> None:
    seconds = sys.argv[1] if len(sys.argv) > 1 else "930"
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: subprocess.Popen(
            [venv_tool("wearsafe"), "sim", "--devices", "1", "--duration", seconds,
             "--scenario", "rest", "--batch-seconds", "60", "--speed", "esp32",
             "--upload-interval", str(interval), "--cell-mah", str(CELL_MAH),
             "--state", str(Path(tmp) / name), "--no-live"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, interval in PROFILES.items()}
        days = {}
        for name, run in runs.items():
            out, _ = run.communicate()
            summary = json.loads((Path(tmp) / name / "summary.json").read_text())
            e = summary["energy"]["device-1"]
            if run.returncode or e is None:
                raise SystemExit(f"{name}: the simulation failed:\n{out}")
            days[name] = e["days"]
            print(f"{name}: {e['average_ma']:.2f} mA over {e['counted_h'] * 60:.1f} min, "
                  f"radio on {e['radio_on_share']:.1%}, {e['handshakes_per_hour']:.1f} "
                  f"handshakes/h; delivery: lost={summary['lost']} "
                  f"duplicates={summary['duplicates']} overflows={summary['overflows']}")
    print(f"energy ({CELL_MAH} mAh): duty-cycled {days['duty-cycled']:.1f} days, "
          f"always-connected {days['always-connected']:.1f} days")


if __name__ == "__main__":
    main()
