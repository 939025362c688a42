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
