"""Where things are: the repository, the build tree, and the tools in the venv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
    """The MicroPython unix port: $MICROPYTHON if set, else the pinned one in the venv."""
    override = os.environ.get("MICROPYTHON")
    if override:
        if not os.access(override, os.X_OK):
            raise ToolError(f"MICROPYTHON={override} is not an executable file")
        return override
    return venv_tool("micropython")
