"""The mpremote path of the harness, on a virtual board (unix port behind a pty)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from host_tools.paths import TARGET_TESTS, venv_tool
from host_tools.target import collect, heap_bytes
from host_tools.vboard import VirtualBoard
from tests.conftest import run_pytest


def test_mpremote_drives_the_virtual_board(tmp_path: Path):
    with VirtualBoard(tmp_path) as board:
        out = subprocess.run([venv_tool("mpremote"), "connect", board.port, "resume", "exec",
                              "import sys; print(sys.implementation.name, 6 * 7)"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    assert "micropython 42" in out


def test_target_suite_passes_through_mpremote(tmp_path: Path):
    tests = [t for p in sorted(TARGET_TESTS.glob("test_*.py")) for t in collect(p)]
    # One board process serves every module in turn (unlike the unix target,
    # which starts a fresh one per test), and its heap fragments along the
    # way: 96K-per-test modules need about twice that after seventy others.
    heap = max(["192K"] + [t.heap for t in tests], key=heap_bytes)
    with VirtualBoard(tmp_path, heapsize=heap) as board:
        done = run_pytest(str(TARGET_TESTS), f"--target={board.port}", "--target-board=sim",
                          cwd=TARGET_TESTS.parent.parent, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) == len(tests), done.stdout
    assert "target tests on " + board.port in done.stdout
