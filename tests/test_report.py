"""`wearsafe report`: a static page that renders offline in headless Chromium, one plot
per device."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from PIL import Image

from host_tools.paths import venv_tool
from host_tools.sim.report import PANELS

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "Debian chromium is missing: `make deps` installs it"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           *args], capture_output=True, text=True, timeout=120, check=True)


def test_the_report_renders_one_plot_per_device_offline(fleet, tmp_path):
    devices = [fleet.add_device(batch_seconds=2) for _ in range(2)]
    for device in devices:
        done = fleet.run_app(device, 12)
        assert done.returncode == 0, done.stdout + done.stderr
    fleet.wait_stored(2 * 7)
    page = tmp_path / "report.html"
    (tmp_path / "summary.json").write_text(json.dumps({"produced": 14, "lost": 0}))
    out = subprocess.run([venv_tool("wearsafe"), "report", "--server", fleet.server.directory,
                          "--out", page], capture_output=True, text=True, check=True)
    assert "2 devices" in out.stdout
    assert page.stat().st_mode & 0o777 == 0o600
    text = page.read_text()
    assert not re.search(r"<script|<link|\bsrc=|\bhref=|@import|url\(", text)  # offline
    audit = [json.loads(line) for line in (fleet.server.directory / "audit.log").open()]
    assert [entry["action"] for entry in audit] == ["report", "report"]

    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert dom.count('<svg class="plot"') == 2
    for device in devices:
        assert f"device {device.device_id}</h2>" in dom
    for quantity in PANELS:
        assert dom.count(f'<polyline class="{quantity}"') == 2, quantity
    assert "<td>14</td>" in dom  # the fleet figures from the summary

    shot = tmp_path / "page.png"
    chromium(tmp_path, "--window-size=900,1800", f"--screenshot={shot}", page.as_uri())
    pixels = Image.open(shot).convert("RGB").get_flattened_data()
    for quantity, (_, _, _, colour) in PANELS.items():
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        drawn = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, rgb, strict=True)) < 60)
        assert drawn > 200, f"{quantity}: its line is not on the screen ({drawn} pixels)"
