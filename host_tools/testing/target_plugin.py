"""pytest plugin: each function of tests/target/test_*.py is one pytest item run on a target.

    pytest                      # target tests on the unix port (build/sim/fs, 96K heap)
    pytest --target=/dev/ttyUSB0  # the same tests on a board through mpremote
    pytest tests/target --target-speed=esp32  # on the unix port, as fast as an ESP32

Every session rebuilds the build tree the target runs, so a target test
never runs stale firmware.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from host_tools.device.build import build
from host_tools.paths import micropython
from host_tools.testing.esp32_speed import CpuQuota, calibrate
from host_tools.testing.target import BoardTarget, Result, TargetTest, UnixTarget, collect

_TARGET_KEY = pytest.StashKey[Any]()
_HEAP_KEY = pytest.StashKey[dict[str, tuple[int | None, int | None]]]()
_SPEED_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wearsafe target tests")
    group.addoption("--target", default="unix",
                    help="'unix' (the MicroPython unix port, default) or a serial port of a "
                         "board to run tests/target/ on through mpremote")
    group.addoption("--target-board", default=None,
                    help="the board build to test. With --target=unix: sim (default) or "
                         "esp32_devkitc (over the esp32-port model); with a port: "
                         "esp32_devkitc (default) or sim (a virtual board)")
    group.addoption("--target-speed", choices=("desktop", "esp32"), default="desktop",
                    help="esp32: each unix-port test process gets the share of a core that "
                         "makes MicroPython run as on an ESP32 at 240 MHz (calibrated at "
                         "start, as wearsafe sim --speed esp32 is), the time it works passes "
                         "on the simulated clock, and each timeout grows by the slowdown")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "target: a MicroPython test run on the selected target")
    config.stash[_HEAP_KEY] = {}


def _target(config: pytest.Config) -> UnixTarget | BoardTarget:
    if _TARGET_KEY not in config.stash:
        option = config.getoption("--target")
        board = _board(config)
        if option == "unix":
            config.stash[_TARGET_KEY] = UnixTarget(micropython(), build(board), board,
                                                   _quota(config))
        elif _at_esp32_speed(config):
            raise pytest.UsageError("--target-speed: a board runs at its own speed; "
                                    "leave it out with --target=PORT")
        else:
            config.stash[_TARGET_KEY] = BoardTarget(option, board, build(board))
    return config.stash[_TARGET_KEY]


def _at_esp32_speed(config: pytest.Config) -> bool:
    return bool(config.getoption("--target-speed") == "esp32")


def _quota(config: pytest.Config) -> CpuQuota | None:
    """At --target-speed=esp32: the CPU quota every test process runs in."""
    if not _at_esp32_speed(config):
        return None
    calibration = calibrate(runs=3)
    quota = calibration.quota(f"wearsafe-target-{os.getpid()}")
    config.add_cleanup(quota.remove)
    config.stash[_SPEED_KEY] = calibration.line()
    return quota


def _is_target_module(path: Path) -> bool:
    """test_*.py beside the device runner wstest.py (tests/target/, or a test's own folder)."""
    return path.name.startswith("test_") and (path.parent / "wstest.py").is_file()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if _is_target_module(module_path):
        return TargetModule.from_parent(parent, path=module_path)
    return None


def _board(config: pytest.Config) -> str:
    default = "sim" if config.getoption("--target") == "unix" else "esp32_devkitc"
    return config.getoption("--target-board") or default


class TargetModule(pytest.File):
    def collect(self):  # type: ignore[override]
        board = _board(self.config)
        for test in collect(self.path):
            if not test.boards or board in test.boards:  # a board's own tests, for it only
                item = TargetItem.from_parent(self, name=test.function, test=test)
                if _at_esp32_speed(self.config):
                    item.add_marker(pytest.mark.timeout(0))  # the harness's, scaled, instead
                yield item


class TargetFailure(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.error)
        self.result = result


class TargetItem(pytest.Item):
    def __init__(self, *, test: TargetTest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test
        self.add_marker("target")

    def runtest(self) -> None:
        target = _target(self.config)
        if self.test.unix_only and target.name != "unix" and target.board != "sim":
            pytest.skip("unix-only: needs the simulated board")
        workdir = Path(self.config._tmp_path_factory.mktemp(self.name))  # type: ignore[attr-defined]
        result = target.run(self.test, workdir)
        self.user_properties += [("allocated", result.allocated), ("live", result.live)]
        self.config.stash[_HEAP_KEY][self.nodeid] = (result.allocated, result.live)
        if not result.passed:
            raise TargetFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, TargetFailure):
            r = excinfo.value.result
            return f"{self.test.path.name}::{self.name} failed on the target: {r.error}\n" \
                   f"--- MicroPython output ---\n{r.output.rstrip()}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.test.module}::{self.name} [target]"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    heaps = config.stash.get(_HEAP_KEY, {})
    target = config.getoption("--target")
    if heaps:
        terminalreporter.section(f"target tests on {target}: GC heap, bytes")
        terminalreporter.write_line(f"{'allocated':>10} {'kept':>7}  (allocated: in all, "
                                    "during the test; kept: still live after it)")
        for nodeid, (alloc, live) in sorted(heaps.items()):
            terminalreporter.write_line(f"{'-' if alloc is None else alloc:>10} "
                                        f"{'-' if live is None else live:>7}  {nodeid}")
    reports = [r for key in ("passed", "failed", "skipped")
               for r in terminalreporter.stats.get(key, []) if r.when == "call"]
    on_target = sum(1 for r in reports if "target" in r.keywords)
    terminalreporter.write_line(f"host tests: {len(reports) - on_target}, "
                                f"target tests on {target}: {on_target}")
    if _SPEED_KEY in config.stash:
        terminalreporter.write_line(f"target speed: {config.stash[_SPEED_KEY]}")
