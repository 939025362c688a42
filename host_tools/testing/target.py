"""Run MicroPython target tests (tests/target/test_*.py) on the unix port or a board.

A target test module is plain MicroPython: module-level `def test_*()`
functions using `assert`. A module may declare, as module-level constants:
    HEAP = "160K"     the unix port's GC heap for it (default 96K, like an ESP32)
    UNIX_ONLY = True  it needs the simulated board; skipped on a hardware board
    BOARDS = ("esp32_devkitc",)  it tests that board's module: collected for it only
    TIMEOUT = 300     seconds before a test counts as hung (default 120)
Each function runs through tests/target/wstest.py, which prints one result
line that the host parses.
"""

from __future__ import annotations

import ast
import atexit
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from host_tools.device.build import compile_module
from host_tools.paths import ToolError, venv_tool
from host_tools.testing.esp32_model import MODEL_HEAP, POWER_ON, model_env
from host_tools.testing.esp32_speed import CpuQuota

DEFAULT_HEAP = "96K"
DEFAULT_TIMEOUT = 120.0
MARK = "@@wstest"


@dataclass(frozen=True)
class TargetTest:
    path: Path
    function: str
    heap: str = DEFAULT_HEAP
    unix_only: bool = False
    boards: tuple[str, ...] = ()
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
            if isinstance(target, ast.Name) and target.id in ("HEAP", "UNIX_ONLY", "TIMEOUT",
                                                                 "BOARDS"):
                settings[target.id] = ast.literal_eval(node.value)
    return [
        TargetTest(
            path=path,
            function=node.name,
            heap=str(settings.get("HEAP", DEFAULT_HEAP)),
            unix_only=bool(settings.get("UNIX_ONLY", False)),
            boards=tuple(settings.get("BOARDS", ())),  # type: ignore[arg-type]
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
    """The MicroPython unix port, a fresh process per test: the sim board's build, or
    board/esp32_devkitc's over the esp32-port model (host_tools.testing.esp32_model)."""

    name = "unix"

    def __init__(self, micropython: str, fs: Path, board: str = "sim",
                 quota: CpuQuota | None = None) -> None:
        self.micropython = micropython
        self.fs = fs
        self.board = board
        # At ESP32 speed each test's process runs in the quota, and working takes
        # simulated time (simhw/clock.py); its timeout grows by the slowdown.
        self.quota = quota

    def command(self, test: TargetTest) -> list[str]:
        call, heap = _call(test), heap_bytes(test.heap)
        if self.board != "sim":
            call = f"{POWER_ON}; {call}"  # the port's power-on: the bootloader's choice
            heap += MODEL_HEAP  # the model's own modules and chips: C and silicon on a board
        return [self.micropython, "-X", f"heapsize={heap}", "-c", call]

    def env(self, test: TargetTest, workdir: Path) -> dict[str, str]:
        env = self._env(test, workdir)
        return self.quota.device_env(env) if self.quota else env

    def _env(self, test: TargetTest, workdir: Path) -> dict[str, str]:
        extra = {"WEARSAFE_VECTORS": vectors_dir(),
                 "WEARSAFE_SIM_SPEED": "0",  # simulated time: tests do not wait in real time
                 "WEARSAFE_SIM_WORK": "1" if self.quota else "0"}
        if self.board == "sim":
            path = [str(test.path.parent), str(self.fs / "lib"), ".frozen"]
            return dict(os.environ, MICROPYPATH=os.pathsep.join(path),
                        WEARSAFE_SIM_DIR=str(workdir), **extra)
        env = model_env(self.fs, workdir, **extra)
        model, rest = env["MICROPYPATH"].split(os.pathsep, 1)
        env["MICROPYPATH"] = os.pathsep.join([model, str(test.path.parent), rest])
        return env

    def run(self, test: TargetTest, workdir: Path) -> Result:
        env = self.env(test, workdir)
        timeout = test.timeout * (self.quota.slowdown if self.quota else 1)
        try:
            done = subprocess.run(self.command(test), cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=timeout, check=False,
                                  preexec_fn=self.quota.enter if self.quota else None)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
                else (e.stdout or "")
            return Result(False, out, error=f"hung: no result within {timeout:.0f} s")
        result = parse_output(done.stdout + done.stderr)
        if result.passed and done.returncode != 0:
            result.passed = False
            result.error = f"micropython exited with status {done.returncode}"
        return result


# On a board the harness works in a directory of its own, :wstest/ (BOARD_HOME),
# beside the board's application and apart from it: the test build's lib/ and
# the target tests, first on sys.path, and an empty scratch directory, each
# test's working directory as on the unix port. No test touches the board's own
# files (lib/, settings.json, certs, outbox). The modules of the application
# that the board's boot.py imported at the reset are dropped first, so that the
# test build's come in their place, imported in the scratch directory.
BOARD_HOME = "wstest"
BOARD_TEST = """\
import os, sys
root = os.getcwd().rstrip('/')
home = root + '/{home}'
for p in (home + '/tests', home + '/lib'):
    if p in sys.path: sys.path.remove(p)
    sys.path.insert(0, p)
for m in list(sys.modules):
    if m.split('.')[0] in {app!r}: del sys.modules[m]
def wipe(d):
    for e in os.ilistdir(d):
        q = d + '/' + e[0]
        if e[1] == 0x4000:
            wipe(q); os.rmdir(q)
        else:
            os.remove(q)
try:
    wipe(home + '/tmp')
except OSError:
    os.mkdir(home + '/tmp')
os.chdir(home + '/tmp')
try:
    {call}
finally:
    os.chdir(root or '/')
"""


class BoardTimeout(ToolError):
    """mpremote did not finish in time (the board runs on: the next call resets it)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class BoardTarget:
    """A board (or a virtual one, host_tools.testing.vboard) on a serial port, driven by mpremote.

    The test build's lib/ and the target tests are copied once into :wstest/
    (BOARD_HOME) and removed when the run ends. Each test module starts from a
    soft reset, as a user resets a board (a fresh heap; the board's boot.py has
    run); its tests then run one by one with `mpremote resume exec`. A test that
    hangs or loses the link gets the next one a reset too.
    """

    name = "board"

    def __init__(self, port: str, board: str, fs: Path) -> None:
        self.port = port
        self.board = board
        self.fs = fs
        self.prepared = False
        self.module: Path | None = None  # the test module run since the last reset
        self.app: tuple[str, ...] = ()  # top-level modules and packages of the test build

    def mpremote(self, *args: str, timeout: float = 300, cwd: Path | None = None,
                 reset: bool = False) -> str:
        """mpremote's commands on the board; reset: soft-reset it first (`soft-reset`),
        else carry on from where the last call left it (`resume`)."""
        cmd = [venv_tool("mpremote"), "connect", self.port,
               "soft-reset" if reset else "resume", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=cwd, check=False)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) \
                else (e.stdout or "")
            raise BoardTimeout(f"mpremote on {self.port} did not answer within {timeout:.0f} s: "
                               f"{shlex.join(cmd)}", out) from e
        if done.returncode != 0 and MARK not in done.stdout:
            raise ToolError(f"mpremote on {self.port} failed ({shlex.join(cmd)}):\n"
                            f"{done.stdout}{done.stderr}".strip())
        return done.stdout + done.stderr

    def prepare(self, tests_dir: Path) -> None:
        """Copy lib/ and the target tests into :wstest/ on the board (replacing one an
        interrupted run left); close() removes it."""
        if self.prepared:
            return
        with tempfile.TemporaryDirectory() as tmp:
            # from a copy: a build meanwhile (another session's) replaces the build tree
            shutil.copytree(self.fs / "lib", Path(tmp) / "lib")
            self.app = tuple(sorted(p.name if p.is_dir() else p.stem
                                    for p in (Path(tmp) / "lib").iterdir()
                                    if p.is_dir() or p.suffix in (".mpy", ".py")))
            self.remove_home()
            home = f":{BOARD_HOME}"
            self.mpremote("fs", "mkdir", home)
            self.mpremote("fs", "cp", "-r", "lib", f"{home}/", cwd=Path(tmp))
            # compiled here, as lib/ is: the board's heap holds the tests, not their
            # compilation (a parse tree of a large module fragments an ESP32's heap)
            compiled = Path(tmp) / "tests"
            for src in sorted(tests_dir.glob("*.py")):
                compile_module(src, compiled / f"{src.stem}.mpy", src.name)
            self.mpremote("fs", "cp", "-r", "tests", f"{home}/", cwd=Path(tmp))
        self.prepared = True
        atexit.register(self.close)  # the plugin has no end-of-run call for a target

    def remove_home(self) -> None:
        """Soft-reset the board and remove :wstest/ from it, if there."""
        try:
            self.mpremote("fs", "rm", "-r", f":{BOARD_HOME}", timeout=120, reset=True)
        except BoardTimeout:
            raise
        except ToolError:
            pass  # not there
        self.module = None

    def close(self) -> None:
        """Leave the board as the run found it: :wstest/ gone, a fresh heap."""
        if self.prepared:
            self.prepared = False
            try:
                self.remove_home()
            except ToolError as e:
                print(f"wearsafe target: could not remove :{BOARD_HOME}/ from {self.port}: {e}")

    def run(self, test: TargetTest, workdir: Path) -> Result:
        self.prepare(test.path.parent)
        fresh = self.module != test.path
        self.module = None  # until the board answers
        code = BOARD_TEST.format(home=BOARD_HOME, app=self.app, call=_call(test))
        try:
            out = self.mpremote("exec", code, timeout=test.timeout, reset=fresh)
        except BoardTimeout as e:
            return Result(False, e.output, error=f"hung: no result within {test.timeout:.0f} s")
        except ToolError as e:
            return Result(False, str(e), error="mpremote failed")
        result = parse_output(out)
        if MARK in out:
            self.module = test.path
        return result
