"""The mpremote path of the harness, on a virtual board (unix port behind a pty)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from host_tools.paths import TARGET_TESTS, venv_tool
from host_tools.testing.target import collect
from host_tools.testing.vboard import ESP32_HEAP, VirtualBoard
from tests.conftest import run_pytest

MPREMOTE = venv_tool("mpremote")


def mpremote(port: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_mpremote_drives_the_virtual_board(tmp_path: Path):
    with VirtualBoard(tmp_path) as board:
        out = mpremote(board.port, "resume", "exec",
                       "import sys; print(sys.implementation.name, 6 * 7)").stdout
    assert "micropython 42" in out


def test_it_resets_like_a_board(tmp_path: Path):
    """A soft reset (mpremote soft-reset, sys.exit) brings a fresh heap back in the same
    session, running boot.py; Ctrl-C interrupts running code and the heap stays."""
    with VirtualBoard(tmp_path) as board:
        (board.root / "boot.py").write_text("booted = 'yes'\n")
        port = board.port
        assert mpremote(port, "resume", "exec", "x = 6 * 7").returncode == 0
        assert mpremote(port, "resume", "exec", "print(x)").stdout.strip() == "42"
        again = mpremote(port, "soft-reset", "exec", "print('x' in globals(), booted)")
        assert again.stdout.split() == ["False", "yes"], again.stdout + again.stderr
        assert mpremote(port, "resume", "exec", "import sys; sys.exit(3)").returncode == 0
        after_exit = mpremote(port, "resume", "exec", "print(1 + 1)")
        assert after_exit.stdout.strip() == "2", after_exit.stdout + after_exit.stderr
        # a hung exec, as a test that never returns: mpremote is killed at its timeout
        assert mpremote(port, "resume", "exec", "y = 7").returncode == 0
        try:
            mpremote(port, "resume", "exec", "while True:\n    pass", timeout=3)
            raise AssertionError("the loop returned")
        except subprocess.TimeoutExpired:
            pass
        interrupted = mpremote(port, "resume", "exec", "print(y)")  # Ctrl-C, no reset
        assert interrupted.stdout.strip() == "7", interrupted.stdout + interrupted.stderr


def test_esp32_virtual_board_runs_the_esp32_port_model(tmp_path: Path):
    """`wearsafe vboard --board esp32_devkitc`: the esp32 build on the model, _boot at
    each start; machine.reset() is a hard reset the board comes back from."""
    vboard = subprocess.Popen([venv_tool("wearsafe"), "vboard", "--board", "esp32_devkitc",
                               "--dir", str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert vboard.stdout is not None
        line = vboard.stdout.readline()  # printed once the pty is there
        assert f"virtual board (esp32_devkitc, {ESP32_HEAP} heap) on " in line, \
            line + vboard.stderr.read()
        port = str(tmp_path / "tty")
        info = mpremote(port, "resume", "exec",
                        "import esp32; print(esp32.Partition(esp32.Partition.RUNNING).info())")
        assert "(0, 16, 65536, 1572864, 'ota_0', False)" in info.stdout, info.stdout + info.stderr
        model = mpremote(port, "resume", "exec",
                         "import sys, time, machine; print(time.gmtime(0)[0], "
                         "'_boot' in sys.modules, machine.reset_cause())")
        assert model.stdout.split() == ["2000", "True", "1"], model.stdout + model.stderr
        mpremote(port, "resume", "exec", "import machine; machine.reset()", timeout=10)
        deadline = time.monotonic() + 10
        while True:  # a board takes a moment to come back from a hard reset
            back = mpremote(port, "resume", "exec", "import machine; print(machine.reset_cause())")
            if back.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert back.stdout.strip() == "2", back.stdout + back.stderr  # HARD_RESET
        # a soft reset neither resets the chip nor runs the bootloader: a pending
        # trial stays pending (a bootloader step would roll it back)
        trial = '{"seq": 1, "state": "pending-verify"}'
        (tmp_path / "esp32-otadata.json").write_text(trial)
        soft = mpremote(port, "soft-reset", "exec", "import machine; print(machine.reset_cause())")
        assert soft.stdout.strip() == "5", soft.stdout + soft.stderr  # SOFT_RESET
        assert (tmp_path / "esp32-otadata.json").read_text() == trial
    finally:
        os.killpg(vboard.pid, signal.SIGTERM)
        vboard.wait(timeout=10)
    assert vboard.returncode == 0


def test_target_suite_passes_through_mpremote(tmp_path: Path):
    """At an ESP32's GC heap (about 110 KB without PSRAM), as a board runs it: each
    module from a soft reset (a fresh heap), its tests one after another."""
    tests = [t for p in sorted(TARGET_TESTS.glob("test_*.py")) for t in collect(p)
             if not getattr(t, "boards", ()) or "sim" in t.boards]  # a board's own tests
    with VirtualBoard(tmp_path, heapsize=ESP32_HEAP) as board:
        done = run_pytest(str(TARGET_TESTS), f"--target={board.port}", "--target-board=sim",
                          cwd=TARGET_TESTS.parent.parent, timeout=1200)
        assert not (board.root / "wstest").exists()  # the harness removed its directory
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) == len(tests), done.stdout
    assert "target tests on " + board.port in done.stdout
