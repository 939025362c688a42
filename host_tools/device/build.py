"""Assemble build/<board>/fs/: the tree mpremote copies to a board and the sim runs.

firmware/boot.py and main.py stay source (the device runs them by name);
every other module (firmware/lib, the board's modules, third-party device
libraries) is compiled to .mpy with mpy-cross into fs/lib/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from host_tools.paths import (
    BOARDS,
    BUILD,
    FIRMWARE,
    THIRD_PARTY_LIB,
    ToolError,
    check_board,
    venv_tool,
)

ROOT_SCRIPTS = ("boot.py", "main.py")
BOARD_HOST_FILES = ("manifest.py",)  # read by the MicroPython build, not the device
# Test equipment beside the sim board, built on its own (host_tools.testing.esp32_model).
NOT_ON_DEVICE = ("esp32port",)


def device_sources(board: str) -> list[tuple[Path, Path]]:
    """(source, path relative to fs/lib) for every module compiled into the build."""
    board_dir = BOARDS / check_board(board)
    trees = [FIRMWARE / "lib", board_dir, THIRD_PARTY_LIB]
    sources = []
    for tree in trees:
        for src in sorted(tree.rglob("*.py")):
            rel = src.relative_to(tree)
            if tree == board_dir and (rel.name in BOARD_HOST_FILES
                                      or rel.parts[0] in NOT_ON_DEVICE):
                continue
            sources.append((src, rel))
    return sources


def compile_module(src: Path, out: Path, source_name: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [venv_tool("mpy-cross"), "-s", source_name, "-o", str(out), str(src)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ToolError(f"mpy-cross failed on {src}:\n{result.stderr.strip()}")


def _stamp(board: str) -> str:
    """What the build is made of: every source's path, size and modification time."""
    files = [FIRMWARE / name for name in ROOT_SCRIPTS] + [src for src, _ in
                                                          device_sources(board)]
    files.append(Path(__file__))
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build(board: str, force: bool = False) -> Path:
    """Build into a fresh directory, then swap it in: no stale or half-built tree.
    A tree built from the same sources is kept (unless `force`): processes running
    from it (other test sessions) never see it swapped under them."""
    check_board(board)
    if not THIRD_PARTY_LIB.exists():
        raise ToolError("third_party/lib is missing: run `make deps` first")
    target = BUILD / board / "fs"
    stamp = _stamp(board)
    stamp_file = BUILD / board / "sources.sha256"
    if not force and target.is_dir() and stamp_file.exists() and \
            stamp_file.read_text() == stamp:
        return target
    staging = BUILD / board / f"fs.new.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ROOT_SCRIPTS:
        shutil.copy2(FIRMWARE / name, staging / name)
    for src, rel in device_sources(board):
        compile_module(src, staging / "lib" / rel.with_suffix(".mpy"), str(rel))
    old = BUILD / board / "fs.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    stamp_file.write_text(stamp)
    return target
