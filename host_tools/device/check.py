"""`make check`: device code must compile with mpy-cross and use only what its port has.

firmware/ and board/esp32_devkitc are type-checked with mypy against the
MicroPython esp32 stubs, so a call to a module or function the esp32 port
lacks (hashlib.sha512, os.fork, cryptolib.MODE_CTR) fails with file, line and
name. board/sim is checked against the unix port's modules instead.

The stubs are assembled into a custom typeshed: MicroPython's stdlib stubs,
overlaid with the esp32 port's module stubs, overlaid with our corrections in
tools/stubs_overrides/{common,esp32,unix}/ where the published stubs list names the ESP32_GENERIC
firmware does not have (each correction says why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from host_tools.device.build import build
from host_tools.paths import BOARDS, BUILD, FIRMWARE, ROOT, THIRD_PARTY_LIB, ToolError

ESP32_DIST = "micropython_esp32_stubs"
OVERRIDES = ROOT / "tools" / "stubs_overrides"
# Modules of the esp32 stubs that the unix port does not have.
NOT_ON_UNIX = {
    "machine", "umachine", "esp", "esp32", "network", "espnow", "aioespnow", "_espnow",
    "bluetooth", "ubluetooth", "neopixel", "apa106", "dht", "ds18x20", "onewire", "_onewire",
    "flashbdev", "inisetup", "_boot", "ntptime", "webrepl", "webrepl_setup",
}


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _dist_files(dist: str) -> list[str]:
    record = next(_site_packages().glob(f"{dist}-*.dist-info")) / "RECORD"
    return [line.split(",")[0] for line in record.read_text().splitlines()]


def build_typeshed(variant: str) -> Path:
    """A typeshed dir for mypy describing the 'esp32' or 'unix' port."""
    site = _site_packages()
    out = BUILD / "typeshed" / variant
    stamp = out / ".stamp"
    inputs = [site / p for p in _dist_files(ESP32_DIST) if p.endswith(".pyi")]
    overrides = [OVERRIDES / "common", OVERRIDES / variant]
    inputs += [p for tree in overrides for p in tree.rglob("*.pyi")]
    newest = max(p.stat().st_mtime for p in inputs)
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        return out
    shutil.rmtree(out, ignore_errors=True)
    stdlib = out / "stdlib"
    shutil.copytree(site / "stdlib", stdlib)
    shutil.copytree(site / "_mpy_shed", stdlib / "_mpy_shed")
    added = {"_mpy_shed"}
    for rel in _dist_files(ESP32_DIST):
        top = rel.split("/")[0].removesuffix(".pyi")
        if not rel.endswith(".pyi") or (variant == "unix" and top in NOT_ON_UNIX):
            continue
        (stdlib / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(site / rel, stdlib / rel)
        added.add(top)
    for tree in overrides:
        for entry in tree.iterdir():  # an override replaces a module whole
            target = stdlib / entry.name
            if entry.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(entry, target)
            else:
                shutil.copy(entry, target)
    versions = stdlib / "VERSIONS"
    known = {line.split(":")[0].strip() for line in versions.read_text().splitlines()}
    with versions.open("a") as f:
        f.writelines(f"{m}: 3.0-\n" for m in sorted(added - known))
    # mypy needs mypy_extensions from its own bundled typeshed.
    shutil.copytree(site / "mypy" / "typeshed" / "stubs" / "mypy-extensions",
                    out / "stubs" / "mypy-extensions")
    stamp.touch()
    return out


def mypy_device(board: str, extra_files: list[Path] | None = None) -> subprocess.CompletedProcess:
    variant = "unix" if board == "sim" else "esp32"
    board_dir = BOARDS / board
    files = [FIRMWARE / "boot.py", FIRMWARE / "main.py", FIRMWARE / "lib" / "wearsafe", board_dir]
    env = dict(os.environ, MYPYPATH=os.pathsep.join(
        str(p) for p in (FIRMWARE / "lib", board_dir, THIRD_PARTY_LIB)))
    cmd = [
        sys.executable, "-m", "mypy",
        "--custom-typeshed-dir", str(build_typeshed(variant)),
        "--no-site-packages", "--python-version", "3.11",
        "--check-untyped-defs", "--explicit-package-bases",
        "--show-error-codes", "--no-error-summary", "--hide-error-context",
        "--follow-imports", "silent",
        "--exclude", "manifest\\.py$",
        # the esp32-port model stands in for the port itself: not device code
        "--exclude", "esp32port/",
        # Probe files from elsewhere (tests) must not pollute or reuse the tree's cache.
        "--cache-dir", "/dev/null" if extra_files else str(BUILD / ".mypy_cache" / board),
        *map(str, files + (extra_files or [])),
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def check() -> None:
    """Compile every board's tree and type-check it; raise ToolError listing every problem."""
    problems: list[str] = []
    for board in ("sim", "esp32_devkitc"):
        try:
            build(board)
        except ToolError as e:
            problems.append(str(e))
        result = mypy_device(board)
        if result.returncode != 0:
            port = "unix port" if board == "sim" else "esp32 port"
            problems.append(f"device code for board {board} uses what the {port} lacks "
                            f"or is ill-typed:\n{result.stdout.strip()}{result.stderr.strip()}")
    if problems:
        raise ToolError("\n\n".join(problems))
