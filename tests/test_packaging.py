"""`pip install .` into a fresh virtual environment gives a working `wearsafe`
(issue 14): the runtime dependencies are the package's own, not a dev extra's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from host_tools.paths import ROOT


def test_a_fresh_virtual_environment_runs_the_installed_tools(tmp_path: Path) -> None:
    source = tmp_path / "src"  # what git tracks of the package: no build/, no .venv
    tracked = subprocess.run(["git", "ls-files", "host_tools", "pyproject.toml", "README.md"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              str(source)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr
    wearsafe = str(venv / "bin" / "wearsafe")

    def run(*argv: object) -> subprocess.CompletedProcess[str]:
        # run from inside the checkout: the tools find the tree they work on there
        return subprocess.run([wearsafe, *map(str, argv)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    assert run("--help").returncode == 0
    server = tmp_path / "server"
    out = run("broker-config", "--server", server, "--out", tmp_path / "broker")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "broker" / "mosquitto.conf").is_file()
    out = run("provision", "--server", server, "--out", tmp_path / "device",
              "--board", "esp32_devkitc")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "device" / "certs" / "device.der").is_file()
