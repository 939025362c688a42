"""The target harness reports what happened on the MicroPython side, faithfully."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_pytest

OUTCOMES = '''
def test_passes():
    assert sum([1, 2, 3]) == 6

def test_assertion_fails():
    values = [1, 2]
    assert len(values) == 3, "expected three values"

def test_allocates_past_the_heap():
    big = bytearray(200 * 1024)
    assert big
'''


def test_each_function_is_an_item_and_failures_show_micropython_tracebacks(target_dir: Path):
    (target_dir / "test_outcomes.py").write_text(OUTCOMES)
    done = run_pytest(str(target_dir), "-v", cwd=target_dir.parent)
    out = done.stdout
    assert done.returncode == 1, out
    assert "test_outcomes.py::test_passes PASSED" in out
    assert "test_outcomes.py::test_assertion_fails FAILED" in out
    assert "AssertionError: expected three values" in out
    assert 'File "' in out and "line 7" in out  # the MicroPython traceback
    assert "2 failed, 1 passed" in out


def test_allocating_past_the_heap_limit_is_a_memoryerror_failure(target_dir: Path):
    (target_dir / "test_outcomes.py").write_text(OUTCOMES)
    done = run_pytest(str(target_dir), "-k", "heap", cwd=target_dir.parent)
    assert "failed on the target: MemoryError" in done.stdout, done.stdout
    assert "1 failed" in done.stdout


def test_a_module_may_declare_a_larger_heap(target_dir: Path):
    (target_dir / "test_big.py").write_text('HEAP = "512K"\n' + OUTCOMES)
    done = run_pytest(str(target_dir), "-k", "heap", cwd=target_dir.parent)
    assert "1 passed" in done.stdout, done.stdout


def test_a_hung_test_fails_instead_of_hanging(target_dir: Path):
    (target_dir / "test_hang.py").write_text("TIMEOUT = 2\n\ndef test_spins():\n"
                                             "    while True:\n        pass\n")
    done = run_pytest(str(target_dir), cwd=target_dir.parent, timeout=60)
    assert "hung: no result within 2 s" in done.stdout, done.stdout
    assert "1 failed" in done.stdout


def test_heap_use_is_reported_per_test(target_dir: Path):
    (target_dir / "test_heap.py").write_text(
        "def test_small():\n    x = bytearray(100)\n\n"
        "def test_large():\n    x = bytearray(40000)\n")
    done = run_pytest(str(target_dir), cwd=target_dir.parent)
    assert "2 passed" in done.stdout, done.stdout
    heaps = {line.split()[2].rsplit("::", 1)[1]: int(line.split()[0])
             for line in done.stdout.splitlines() if "test_heap.py::" in line
             and line.split()[0].isdigit()}
    assert heaps["test_small"] < 200, heaps
    assert 40000 <= heaps["test_large"] < 40200, heaps


def test_filters_select_target_items(target_dir: Path):
    (target_dir / "test_outcomes.py").write_text(OUTCOMES)
    done = run_pytest(str(target_dir), "-k", "passes", "-m", "target", cwd=target_dir.parent)
    assert "1 passed, 2 deselected" in done.stdout, done.stdout


# -- the board path: mpremote on a virtual board (host_tools.testing.vboard)

HOARDS = '''
import wstest

def test_hoards_what_the_harness_cannot_unload():
    wstest.hoard = bytearray(48 * 1024)  # wstest stays loaded from test to test

def test_the_hoard_stays_within_the_module():
    assert len(wstest.hoard) == 48 * 1024
'''

FRESH = '''
import os

import wstest

def test_the_next_module_starts_from_a_fresh_heap():
    assert not hasattr(wstest, "hoard")
    room = bytearray(56 * 1024)
    assert room

def test_the_test_build_is_imported_not_the_boards_own():
    import board
    assert board.NAME == "sim"

def test_a_test_writes_in_its_scratch_directory():
    with open("settings.json", "w") as f:
        f.write("{}")
    assert os.getcwd().endswith("/wstest/tmp")
'''


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_on_a_board_each_module_starts_fresh_and_the_board_keeps_its_files(
        target_dir: Path, tmp_path: Path):
    from host_tools.testing.vboard import VirtualBoard

    (target_dir / "test_a_hoards.py").write_text(HOARDS)
    (target_dir / "test_b_fresh.py").write_text(FRESH)
    with VirtualBoard(tmp_path / "vboard") as board:
        root = board.root
        # the board's own application: its lib/ (boot.py imports from it at each
        # reset) and settings
        (root / "lib").mkdir()
        (root / "lib" / "board.py").write_text("NAME = 'the board\\'s own'\n")
        (root / "lib" / "app.py").write_text("VERSION = '0.0.1'\n")
        (root / "boot.py").write_text("import board\n")
        (root / "settings.json").write_text('{"broker_host": "mine.example"}\n')
        before = _files(root)
        done = run_pytest(str(target_dir), "-v", f"--target={board.port}",
                          "--target-board=sim", cwd=target_dir.parent, timeout=300)
        after = _files(root)
    out = done.stdout + done.stderr
    assert "test_a_hoards.py::test_the_hoard_stays_within_the_module PASSED" in out, out
    assert "test_b_fresh.py::test_the_next_module_starts_from_a_fresh_heap PASSED" in out, out
    assert "5 passed" in out, out
    assert after == before  # lib/, settings.json, boot.py as they were; :wstest/ removed


def test_on_a_board_a_hung_test_fails_and_the_next_module_runs(target_dir: Path,
                                                              tmp_path: Path):
    from host_tools.testing.vboard import VirtualBoard

    (target_dir / "test_a_hangs.py").write_text("TIMEOUT = 3\n\nx = [0]\n\ndef test_spins():\n"
                                                "    while True:\n        x[0] += 1\n")
    (target_dir / "test_b_after.py").write_text("def test_runs():\n    assert 6 * 7 == 42\n")
    with VirtualBoard(tmp_path / "vboard") as board:
        done = run_pytest(str(target_dir), "-v", f"--target={board.port}",
                          "--target-board=sim", cwd=target_dir.parent, timeout=300)
    out = done.stdout + done.stderr
    assert "hung: no result within 3 s" in out, out
    assert "test_b_after.py::test_runs PASSED" in out, out
    assert "1 failed, 1 passed" in out, out


WORK = '''
import board

def test_working_takes_simulated_time():
    # about 1 s on an ESP32 at 240 MHz (10 ms here: longer than one CFS slice of the
    # quota, which runs at full speed); no simulated time at all at desktop speed
    start, x = board.ticks_ms(), 0
    for i in range(200000):
        x += i * i
    assert board.ticks_diff(board.ticks_ms(), start) >= 300, "the work took no time"
'''


def test_at_esp32_speed_a_target_test_works_in_a_cpu_quota_and_work_takes_time(
        target_dir: Path):
    (target_dir / "test_work.py").write_text(WORK)
    groups = set(Path("/sys/fs/cgroup/cpu").glob("wearsafe-target-*"))  # other runs' may be
    desktop = run_pytest(str(target_dir), cwd=target_dir.parent)
    assert "the work took no time" in desktop.stdout, desktop.stdout  # instant at speed 0
    esp32 = run_pytest(str(target_dir), "--target-speed=esp32", cwd=target_dir.parent)
    assert esp32.returncode == 0, esp32.stdout + esp32.stderr
    assert "target speed: esp32: the unix port runs " in esp32.stdout, esp32.stdout
    assert set(Path("/sys/fs/cgroup/cpu").glob("wearsafe-target-*")) <= groups  # removed
