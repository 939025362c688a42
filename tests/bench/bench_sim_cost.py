"""What one simulated device costs this machine, and how many it can run, in one run.

The same `wearsafe sim --devices N --duration S` twice: the unix port started
through its console script (CPython with `site`), then through the lean launcher
(WEARSAFE_LEAN_MICROPYTHON=1, host_tools.paths.lean_micropython: no `site`). For each: CPU per
device (percent of a core) and memory per device (its proportional share, PSS,
at peak: pages the devices share count once), then the ratio lean/stock, and
how many devices this machine's memory and cores hold at that cost (the
firmware's own share, the MicroPython heap, is the same in both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.paths import venv_tool  # noqa: E402

DEVICES, SECONDS = 10, 40


def cost(state: Path, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([venv_tool("wearsafe"), "sim", "--devices", str(DEVICES),
                           "--duration", str(SECONDS), "--state", str(state), "--no-live"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: the sim failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = json.loads((state / "summary.json").read_text())
    return dict(summary["per_device"])


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain = {k: v for k, v in os.environ.items()
                 if k not in ("MICROPYTHON", "WEARSAFE_LEAN_MICROPYTHON")}
        stock = cost(Path(tmp) / "stock", plain)
        lean = cost(Path(tmp) / "lean", dict(plain, WEARSAFE_LEAN_MICROPYTHON="1"))
    for name, c in (("console script", stock), ("lean launcher", lean)):
        print(f"per simulated device, {name}: {c['cpu_percent']:.2f} % of a core, "
              f"{c['pss_mb']:.2f} MB ({DEVICES} devices, {SECONDS} s)")
    print(f"lean/stock: CPU {lean['cpu_percent'] / stock['cpu_percent']:.2f}, memory "
          f"{lean['pss_mb'] / stock['pss_mb']:.2f}")
    by_memory = available_mb() / lean["pss_mb"]
    by_cpu = 100 * (os.cpu_count() or 1) / lean["cpu_percent"]
    print(f"this machine ({os.cpu_count()} cores, {available_mb():.0f} MB available) holds "
          f"about {min(by_memory, by_cpu):.0f} devices: {by_memory:.0f} by memory, "
          f"{by_cpu:.0f} by CPU")


if __name__ == "__main__":
    main()
