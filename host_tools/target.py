"""Run MicroPython target tests (tests/target/test_*.py) on the unix port or a board.

A target test module is plain MicroPython: module-level `def test_*()`
functions using `assert`. A module may declare, as module-level constants:
    HEAP = "160K"     the unix port's GC heap for it (default 96K, like an ESP32)
    UNIX_ONLY = True  it needs the simulated board; skipped on a hardware board
    TIMEOUT = 300     seconds before a test counts as hung (default 120)
Each function runs through tests/target/wstest.py, which prints one result
line that the host parses.
"""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from host_tools.paths import ToolError, venv_tool

DEFAULT_HEAP = "96K"
DEFAULT_TIMEOUT = 120.0
MARK = "@@wstest"


@dataclass(frozen=True)
class TargetTest:
    path: Path
    function: str
    heap: str = DEFAULT_HEAP
    unix_only: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @property
    def module(self) -> str:
        return self.path.stem


def heap_bytes(size: str) -> int:
    """A heap size as micropython's -X heapsize takes it ("96K", "1M", "65536") in bytes."""
    units = {"K": 1024, "M": 1024 * 1024}
    return int(size[:-1]) * units[size[-1].upper()] if size[-1].upper() in units else int(size)


@dataclass
class Result:
    passed: bool
    output: str
    allocated: int | None = None  # bytes allocated by the test in all, where the port counts
    live: int | None = None  # GC heap still held after the test
    error: str | None = None


def collect(path: Path) -> list[TargetTest]:
    """The test functions of a target module, with its declarations, read without running it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    settings: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("HEAP", "UNIX_ONLY", "TIMEOUT"):
                settings[target.id] = ast.literal_eval(node.value)
    return [
        TargetTest(
            path=path,
            function=node.name,
            heap=str(settings.get("HEAP", DEFAULT_HEAP)),
            unix_only=bool(settings.get("UNIX_ONLY", False)),
            timeout=float(settings.get("TIMEOUT", DEFAULT_TIMEOUT)),  # type: ignore[arg-type]
        )
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    ]


def parse_output(output: str) -> Result:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK + " "):
            words = line.split()
            alloc, live = (int(w) for w in words[-2:])
            if words[1] == "pass":
                return Result(True, output, alloc if alloc >= 0 else None, live)
            return Result(False, output, alloc if alloc >= 0 else None, live, error=words[2])
    return Result(False, output, error="no result: the test process died or printed no result")


def vectors_dir() -> str:
    """NIST and RFC test vectors (PyPI cryptography-vectors), for unix-only target tests."""
    import cryptography_vectors

    return str(Path(cryptography_vectors.__file__).parent)


def _call(test: TargetTest) -> str:
    return f"import wstest; wstest.run({test.module!r}, {test.function!r})"


class UnixTarget:
    """The MicroPython unix port over build/sim/fs, a fresh process per test."""

    name = "unix"
    board = "sim"

    def __init__(self, micropython: str, fs: Path) -> None:
        self.micropython = micropython
        self.fs = fs

    def command(self, test: TargetTest) -> list[str]:
        return [self.micropython, "-X", f"heapsize={test.heap}", "-c", _call(test)]

    def run(self, test: TargetTest, workdir: Path) -> Result:
        env = dict(
            os.environ,
            MICROPYPATH=os.pathsep.join([str(test.path.parent), str(self.fs / "lib"), ".frozen"]),
            WEARSAFE_SIM_DIR=str(workdir),
            WEARSAFE_VECTORS=vectors_dir(),
            WEARSAFE_SIM_SPEED="0",  # simulated time: tests do not wait in real time
        )
        try:
            done = subprocess.run(self.command(test), cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=test.timeout, check=False)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
                else (e.stdout or "")
            return Result(False, out, error=f"hung: no result within {test.timeout:.0f} s")
        result = parse_output(done.stdout + done.stderr)
        if result.passed and done.returncode != 0:
            result.passed = False
            result.error = f"micropython exited with status {done.returncode}"
        return result


# Each test on a board runs in an empty scratch directory, as on the unix port,
# so that no test touches the board's own files (settings.json, certs, outbox).
BOARD_TEST = """\
import os, sys
root = os.getcwd().rstrip('/')
for p in (root + '/tests', root + '/lib'):
    if p not in sys.path: sys.path.insert(0, p)
def wipe(d):
    for e in os.ilistdir(d):
        q = d + '/' + e[0]
        if e[1] == 0x4000:
            wipe(q); os.rmdir(q)
        else:
            os.remove(q)
try:
    wipe(root + '/wstest-tmp')
except OSError:
    os.mkdir(root + '/wstest-tmp')
os.chdir(root + '/wstest-tmp')
try:
    {call}
finally:
    os.chdir(root or '/')
"""


class BoardTarget:
    """A board (or a virtual one) on a serial port, driven by mpremote.

    The build tree's lib/ and the target tests are copied once; then each test
    runs with `mpremote resume exec` (resume: no soft reset, which would end a
    unix-port virtual board).
    """

    name = "board"

    def __init__(self, port: str, board: str, fs: Path) -> None:
        self.port = port
        self.board = board
        self.fs = fs
        self.prepared = False

    def mpremote(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> str:
        cmd = [venv_tool("mpremote"), "connect", self.port, "resume", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=cwd, check=False)
        except subprocess.TimeoutExpired as e:
            raise ToolError(f"mpremote on {self.port} did not answer within {timeout:.0f} s: "
                            f"{shlex.join(cmd)}") from e
        if done.returncode != 0 and MARK not in done.stdout:
            raise ToolError(f"mpremote on {self.port} failed ({shlex.join(cmd)}):\n"
                            f"{done.stdout}{done.stderr}".strip())
        return done.stdout + done.stderr

    def prepare(self, tests_dir: Path) -> None:
        """Copy lib/ and the target tests to the board, replacing what was there."""
        if self.prepared:
            return
        for stale in (":lib", ":tests"):
            try:
                self.mpremote("fs", "rm", "-r", stale)
            except ToolError:
                pass  # nothing there yet
        self.mpremote("fs", "cp", "-r", "lib", ":.", cwd=self.fs)  # see host_tools.flash
        self.mpremote("fs", "mkdir", ":tests")
        tests = sorted(str(p.name) for p in tests_dir.glob("*.py"))
        self.mpremote("fs", "cp", *tests, ":tests/", cwd=tests_dir)
        self.prepared = True

    def run(self, test: TargetTest, workdir: Path) -> Result:
        self.prepare(test.path.parent)
        code = BOARD_TEST.format(call=_call(test))
        try:
            return parse_output(self.mpremote("exec", code, timeout=test.timeout))
        except ToolError as e:
            return Result(False, str(e), error="mpremote failed")
