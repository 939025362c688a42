"""Flashing a dev board: stock MicroPython with esptool, then the application
and the device bundle with mpremote, then the payload key into NVS.

Steps (`--dry-run` prints them as commands):
  1. esptool erase-flash                      (skipped with --app-only)
  2. esptool write-flash at the chip's offset (board/<board>/flash.json)
  3. mpremote copies build/<board>/fs: boot.py, main.py, lib/ (not lib/ with
     --frozen: a firmware built with board/<board>/manifest.py has it)
  4. mpremote copies the bundle: device-id, settings.json, certs/ (and wifi.json)
  5. mpremote runs a one-off script that writes the payload key into the
     board's NVS; the key file then leaves the bundle (factory/ is deleted)

mpremote runs with `resume` (no soft reset), which a unix-port virtual
board needs and a real board does not mind. The key goes to the board as a
script over the serial link, never on a command line (others can read
those in `ps`).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from host_tools.build import build
from host_tools.paths import BOARDS, ToolError, check_board, venv_tool
from host_tools.provision import FACTORY_KEY, provisioned_id

BUNDLE_FILES = ("device-id", "settings.json", "nvs-wearsafe.bin")  # what exists of these
NVS_SCRIPT = """\
import board
from binascii import unhexlify
from wearsafe import keystore
store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
store.provision({device_id!r}, unhexlify({key!r}), unhexlify({key_id!r}), unhexlify({base_iv!r}))
print("nvs-provisioned", store.device_id())
"""


def flash_settings(board: str) -> dict[str, object]:
    path = BOARDS / check_board(board) / "flash.json"
    if not path.is_file():
        raise ToolError(f"board {board} has no flash.json: it is not flashed with esptool "
                        "(use --app-only to copy the application onto it)")
    return json.loads(path.read_text())


def esptool_steps(port: str, board: str, firmware: Path | None, baud: int | None
                  ) -> list[list[str]]:
    chip = flash_settings(board)
    if firmware is None:
        raise ToolError(f"give --firmware: the {chip['firmware']}")
    base = [venv_tool("esptool"), "--chip", str(chip["chip"]), "--port", port,
            "--baud", str(baud or chip["baud"])]
    return [base + ["erase-flash"],
            base + ["write-flash", str(chip["firmware_offset"]), str(firmware)]]


def mpremote_steps(port: str, fs: Path, bundle: Path, wifi: Path | None,
                   frozen: bool = False) -> list[list[str]]:
    """One mpremote call per source: a file by its name, a directory into ":." (with
    ":" mpremote 1.29 copies a directory's contents into the root where it cannot
    stat "", as on the unix port)."""
    mp = [venv_tool("mpremote"), "connect", port, "resume", "fs", "cp"]
    files = [fs / "boot.py", fs / "main.py"] \
        + [bundle / name for name in BUNDLE_FILES if (bundle / name).exists()]
    dirs = [bundle / "certs"] if frozen else [fs / "lib", bundle / "certs"]
    steps = [mp + ["-r", str(d), ":."] for d in dirs]
    steps += [mp + [str(f), f":{f.name}"] for f in files]
    if wifi:
        steps.append(mp + [str(wifi), ":wifi.json"])
    return steps


def check_bundle(bundle: Path) -> str:
    device_id = provisioned_id(bundle)
    if not device_id or not (bundle / "certs" / "device.der").is_file():
        raise ToolError(f"{bundle} is not a device bundle: create one with "
                        "`wearsafe provision --out DIR`")
    return device_id


def flash(port: str, board: str, bundle: Path, *, firmware: Path | None = None,
          app_only: bool = False, frozen: bool = False, wifi: Path | None = None,
          baud: int | None = None, dry_run: bool = False,
          say: Callable[[str], None] = print) -> None:
    device_id = check_bundle(bundle)
    if firmware is not None and not firmware.is_file():
        raise ToolError(f"firmware {firmware} not found")
    if wifi is not None and not wifi.is_file():
        raise ToolError(f"Wi-Fi settings {wifi} not found (JSON: {{\"ssid\": ..., \"key\": ...}})")
    steps = [] if app_only else esptool_steps(port, board, firmware, baud)
    fs = build(board) if not dry_run else Path("build") / board / "fs"
    steps += mpremote_steps(port, fs, bundle, wifi, frozen)
    key_file = bundle / FACTORY_KEY
    if dry_run:
        for step in steps:
            say(shlex.join(step))
        if key_file.exists():
            say(f"(then the payload key in {key_file} is written into the board's NVS by "
                "an mpremote run script, and deleted from the bundle)")
        return
    for n, step in enumerate(steps, 1):
        say(f"[{n}/{len(steps) + key_file.exists()}] {shlex.join(step[1:])}")
        _run(step)
    if key_file.exists():
        say(f"[{len(steps) + 1}/{len(steps) + 1}] payload key into the board's NVS")
        _provision_nvs(port, key_file, device_id)
        shutil.rmtree(key_file.parent)  # the key now lives on the board only
    say(f"flashed device {device_id} on {port}")


def _run(step: list[str], timeout: float = 600) -> None:
    """One step, its progress bars on the terminal."""
    try:
        code = subprocess.run(step, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        raise ToolError(f"no answer within {timeout:.0f} s: {shlex.join(step)}") from None
    if code != 0:
        raise ToolError(f"{Path(step[0]).name} failed (exit {code}): {shlex.join(step)}")


def _provision_nvs(port: str, key_file: Path, device_id: str) -> None:
    secret = json.loads(key_file.read_text())
    with tempfile.TemporaryDirectory() as tmp:  # 0700, removed with the script in it
        script = Path(tmp) / "nvs.py"
        script.write_text(NVS_SCRIPT.format(**secret))
        script.chmod(0o600)
        try:
            done = subprocess.run([venv_tool("mpremote"), "connect", port, "resume", "run",
                                   str(script)], capture_output=True, text=True, timeout=120,
                                  check=False)
            ok = f"nvs-provisioned {device_id}" in done.stdout
        except subprocess.TimeoutExpired:
            ok = False
    if not ok:  # its output is not shown: on an error it could echo the script
        raise ToolError(f"writing the payload key into the board's NVS on {port} failed; "
                        "the key stays in the bundle: check the board and flash again")
