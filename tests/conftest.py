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
