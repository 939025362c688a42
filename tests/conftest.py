from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.paths import ROOT

WSTEST = ROOT / "tests" / "target" / "wstest.py"


def run_pytest(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """pytest in a child process with the target plugin, as a user would run it."""
    cmd = [sys.executable, "-m", "pytest", "-p", "host_tools.target_plugin",
           "-p", "no:cacheprovider", "--rootdir", str(cwd), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), check=False)


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    """An empty folder of target tests, with the device runner beside them."""
    d = tmp_path / "target"
    d.mkdir()
    (d / "wstest.py").write_text(WSTEST.read_text())
    return d


def device_env(state: Path) -> dict[str, str]:
    """Environment of a simulated device whose state lives in `state`."""
    from host_tools.build import BUILD

    lib = BUILD / "sim" / "fs" / "lib"
    return dict(os.environ, MICROPYPATH=f"{lib}:.frozen", WEARSAFE_SIM_DIR=str(state))


def run_device(code: str, state: Path, heap: str = "96K") -> str:
    """Run MicroPython code on the sim board (the build must exist); return its stdout."""
    from host_tools.paths import micropython

    done = subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code], cwd=state,
                          env=device_env(state), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def sim_build() -> Path:
    from host_tools.build import build

    return build("sim")
