"""Flashing a dev board: MicroPython (ESP32_GENERIC, variant OTA) and the payload key
with esptool, then the application and the device bundle with mpremote.

Steps (`--dry-run` prints them as commands, and makes no image):
  0. the firmware file is read first: it must be a combined image for the
     chip (bootloader, partition table, app) whose partition table has
     otadata and two OTA app slots, as MicroPython's ESP32_GENERIC variant OTA
     has, and the nvs partition; a stock image without OTA slots only with
     --stock-firmware. The bundle's payload key is made into an NVS partition
     image of that partition's size (host_tools/device/nvs_image.py: Espressif's
     generator), held in memory: a failure here leaves the board untouched
  1. esptool erase-flash                      (skipped with --app-only)
  2. esptool write-flash at the chip's offset (board/<board>/flash.json)
  3. esptool write-flash of that image at the nvs partition's offset in the
     firmware's own table, as factories write keys. The key file leaves the
     bundle first (factory/ is deleted): a key is sent once, so no retry can
     start its counter at 0 again. The image is on the host only for this step,
     in a private temporary directory deleted after it, whatever esptool did
  4. mpremote copies build/<board>/fs: boot.py, main.py, lib/ (not lib/ with
     --frozen: a firmware built with board/<board>/manifest.py has it)
  5. mpremote copies the bundle: device-id, settings.json, certs/ (and wifi.json)

--app-only is for a board that already runs MicroPython (the project's virtual
board among them): esptool talks only to the chip's ROM bootloader, which a
running board is not in (the virtual board has none at all), and a partition
image would replace the board's whole NVS, the update counters of its other
namespaces with it. A bundle that still holds its key there has it written
after step 5 by a one-off mpremote script running the keystore's own
provision() on the board (NVS_SCRIPT), the key file again leaving the bundle
first.

mpremote runs with `resume`: no soft reset between the steps, so the
application is not started again halfway through its own installation. The
key is never on a command line (others can read those in `ps`): esptool and
the generator are given files, the script goes over the serial link.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from host_tools.device.build import build
from host_tools.device.nvs_image import nvs_image
from host_tools.device.provision import FACTORY_KEY, provisioned_id
from host_tools.fleet.pki import private_temp_file
from host_tools.paths import BOARDS, ToolError, check_board, venv_tool

BUNDLE_FILES = ("device-id", "settings.json", "nvs-wearsafe.bin")  # what exists of these
NVS_IMAGE = "<nvs-image>"  # the key's image in a dry run: it is made only when flashing
REPROVISION = ("re-provision (`wearsafe provision --server DIR --force --out BUNDLE`) and "
               "flash again")
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


# A combined ESP32 image (MicroPython's firmware.bin; the .bin downloads of
# micropython.org) is flash from firmware_offset on: the second-stage
# bootloader, then the partition table at partition_table_offset, then the app
# at the first app partition (ports/esp32/makeimg.py). ESP-IDF's partition
# table (components/partition_table/gen_esp32part.py): 32-byte entries, each
# magic AA 50, type, subtype, offset u32 LE, size u32 LE, label (16 bytes,
# NUL-padded), flags u32 LE; then, optionally, EB EB FF*14 and the MD5 of the
# entries before it; 0xFF after the last, within 0xC00 bytes.
_IMAGE_MAGIC = 0xE9  # esp_image_header_t.magic, at the start of a bootloader and of an app
_APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t, the start of an app's first segment (0x20)
_ENTRY = struct.Struct("<2sBBII16sI")
_ENTRY_MAGIC = b"\xaa\x50"
_MD5_MARKER = b"\xeb\xeb" + b"\xff" * 14
_TABLE_MAX = 0xC00
_APP, _DATA = 0x00, 0x01
_DATA_OTA = 0x00  # otadata: which OTA app slot boots
_DATA_NVS = 0x02
_NVS_LABEL = "nvs"  # NVS_DEFAULT_PART_NAME: the partition nvs_flash_init opens
_APP_OTA = range(0x10, 0x20)  # ota_0 .. ota_15


@dataclass(frozen=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int


@dataclass(frozen=True)
class FirmwareImage:
    partitions: list[Partition]

    @property
    def ota_slots(self) -> list[Partition]:
        return [p for p in self.partitions if p.type == _APP and p.subtype in _APP_OTA]

    @property
    def has_ota(self) -> bool:
        """otadata and two OTA app slots: what a signed firmware update needs."""
        otadata = any(p.type == _DATA and p.subtype == _DATA_OTA for p in self.partitions)
        return otadata and len(self.ota_slots) >= 2

    @property
    def nvs(self) -> Partition | None:
        """The partition the firmware keeps NVS in, its keystore among it."""
        return next((p for p in self.partitions if p.type == _DATA and p.subtype == _DATA_NVS
                     and p.label == _NVS_LABEL), None)

    def labels(self) -> str:
        return ", ".join(p.label for p in self.partitions)


def parse_partition_table(table: bytes) -> list[Partition]:
    """The entries of a binary partition table; ValueError if it is not one or is damaged."""
    if table[:2] != _ENTRY_MAGIC:
        raise ValueError("no partition table")
    partitions: list[Partition] = []
    for at in range(0, min(len(table), _TABLE_MAX), _ENTRY.size):
        entry = table[at:at + _ENTRY.size]
        if entry[:16] == _MD5_MARKER:
            if hashlib.md5(table[:at]).digest() != entry[16:]:
                raise ValueError("its MD5 does not match its entries")
            return partitions
        if entry == b"\xff" * _ENTRY.size:
            return partitions
        if len(entry) < _ENTRY.size or entry[:2] != _ENTRY_MAGIC:
            raise ValueError(f"entry {len(partitions)} at +0x{at:x} is neither an entry "
                             "nor the end of the table")
        _, ptype, subtype, offset, size, label, _ = _ENTRY.unpack(entry)
        partitions.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"),
                                    ptype, subtype, offset, size))
    raise ValueError("it does not end within 0xc00 bytes")


def _chip_names() -> dict[int, str]:
    from esptool.targets import CHIP_DEFS  # type: ignore[import-untyped]

    return {rom.IMAGE_CHIP_ID: name for name, rom in CHIP_DEFS.items()
            if getattr(rom, "IMAGE_CHIP_ID", None) is not None}


def inspect_firmware(path: Path, board: str, stock_firmware: bool = False) -> FirmwareImage:
    """Check path is a combined image for the board's chip, with OTA app slots unless
    stock_firmware; ToolError saying what is wrong and what to flash instead."""
    settings = flash_settings(board)
    chip, wanted = str(settings["chip"]), str(settings["firmware"])
    base = int(str(settings["firmware_offset"]), 0)
    table_at = int(str(settings["partition_table_offset"]), 0) - base
    data = path.read_bytes()
    combined = (f"a combined firmware image written at 0x{base:x} (bootloader, partition "
                f"table at 0x{base + table_at:x}, app)")
    if len(data) < 24 or data[0] != _IMAGE_MAGIC:
        raise ToolError(f"{path} is not an ESP32 firmware image: it does not start with an "
                        f"ESP image header (byte 0xe9), as {combined} does. "
                        f"Flash the {wanted}")
    chip_id = int.from_bytes(data[12:14], "little")
    names = _chip_names()
    if names.get(chip_id, chip) != chip:
        raise ToolError(f"{path} is built for {names[chip_id]}, not for this board's {chip}. "
                        f"Flash the {wanted}")
    if len(data) >= 0x24 and int.from_bytes(data[0x20:0x24], "little") == _APP_DESC_MAGIC:
        raise ToolError(f"{path} is an app image alone (what goes into an app partition at "
                        "0x10000 or, carried by a signed firmware update, into an OTA slot: "
                        "micropython.bin of a build, the .app-bin download), not "
                        f"{combined}. Flash the {wanted}")
    try:
        partitions = parse_partition_table(data[table_at:table_at + 0x1000])
    except ValueError as e:
        what = ("has no partition table" if str(e) == "no partition table"
                else f"has a damaged partition table ({e})")
        raise ToolError(f"{path} {what} at 0x{base + table_at:x} ({table_at:#x} into the "
                        f"file): it is not {combined}. Flash the {wanted}") from None
    apps = [p for p in partitions if p.type == _APP]
    if not apps:
        raise ToolError(f"{path}: its partition table has no app partition "
                        f"({', '.join(p.label for p in partitions) or 'no entries'})")
    app = apps[0]
    app_at = app.offset - base
    if not (len(data) > app_at + 0x24 and data[app_at] == _IMAGE_MAGIC
            and int.from_bytes(data[app_at + 0x20:app_at + 0x24], "little") == _APP_DESC_MAGIC):
        raise ToolError(f"{path} has no app at 0x{app.offset:x} (partition {app.label}): the "
                        f"file is cut short or is not {combined}. Flash the {wanted}")
    if len(data) - app_at > app.size:
        raise ToolError(f"{path}: its app ({len(data) - app_at} bytes) is larger than its "
                        f"partition {app.label} (0x{app.size:x} bytes)")
    image = FirmwareImage(partitions)
    if image.nvs is None:
        raise ToolError(f"{path} has no NVS partition (data, nvs, labelled {_NVS_LABEL}; "
                        f"partitions: {image.labels()}): the payload key would have nowhere "
                        f"to go. Flash the {wanted}")
    if not image.has_ota and not stock_firmware:
        raise ToolError(f"{path} has no OTA app slots (partitions: {image.labels()}). Signed "
                        "firmware updates are written into whichever of two OTA app slots is "
                        "not running, which the bootloader (told by otadata) boots on trial: a "
                        "board flashed with this firmware can never take one. Flash the "
                        f"{wanted}; or pass --stock-firmware to flash this one anyway")
    return image


def _esptool(port: str, board: str, baud: int | None) -> list[str]:
    chip = flash_settings(board)
    return [venv_tool("esptool"), "--chip", str(chip["chip"]), "--port", port,
            "--baud", str(baud or chip["baud"])]


def esptool_steps(port: str, board: str, firmware: Path | None, baud: int | None
                  ) -> list[list[str]]:
    chip = flash_settings(board)
    if firmware is None:
        raise ToolError(f"give --firmware: the {chip['firmware']}")
    base = _esptool(port, board, baud)
    return [base + ["erase-flash"],
            base + ["write-flash", str(chip["firmware_offset"]), str(firmware)]]


def nvs_step(port: str, board: str, baud: int | None, nvs: Partition,
             image: str = NVS_IMAGE) -> list[str]:
    """esptool writes the payload key's NVS partition image over the nvs partition."""
    return _esptool(port, board, baud) + ["write-flash", f"0x{nvs.offset:x}", image]


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
          baud: int | None = None, dry_run: bool = False, stock_firmware: bool = False,
          say: Callable[[str], None] = print) -> None:
    device_id = check_bundle(bundle)
    key_file = bundle / FACTORY_KEY
    if not app_only and not key_file.exists():
        raise ToolError(
            f"{bundle} no longer holds its payload key: a flash took it (the key is used "
            "once, so a (key, nonce) pair can never repeat), and erasing the board would "
            "leave it without one. Re-provision: `wearsafe provision --server DIR --force "
            f"--out {bundle}` (a new identity and key; `wearsafe forget` the old one), or "
            "give --app-only to update the application and keep the board's key")
    if firmware is not None and not firmware.is_file():
        raise ToolError(f"firmware {firmware} not found")
    if wifi is not None and not wifi.is_file():
        raise ToolError(f"Wi-Fi settings {wifi} not found (JSON: {{\"ssid\": ..., \"key\": ...}})")
    steps = [] if app_only else esptool_steps(port, board, firmware, baud)
    image = None
    if firmware is not None and not app_only:
        image = inspect_firmware(firmware, board, stock_firmware)
    nvs = image.nvs if image is not None else None
    key_step = nvs_step(port, board, baud, nvs) if nvs is not None else None
    steps += [key_step] if key_step else []
    note = None
    if image is not None and not image.has_ota:
        note = (f"{firmware} has no OTA app slots (partitions: {image.labels()}): this board "
                "will not be able to take signed firmware updates")
    fs = build(board) if not dry_run else Path("build") / board / "fs"
    steps += mpremote_steps(port, fs, bundle, wifi, frozen)
    by_script = app_only and key_file.exists()
    if dry_run:
        _print_plan(steps, key_file, nvs, by_script, note, say)
        return
    # made before the board is touched: a generator failure leaves the board as it was
    key_image = nvs_image(json.loads(key_file.read_text()), nvs.size) if nvs else b""
    if image is not None:
        slots = ", ".join(f"{p.label} 0x{p.size:x} bytes" for p in image.ota_slots)
        say(f"warning: {note}" if note else f"firmware {firmware}: OTA app slots {slots}")
    total = len(steps) + by_script
    for n, step in enumerate(steps, 1):
        if step is key_step:
            _write_key_image(step, key_image, key_file, f"[{n}/{total}]", say)
            continue
        say(f"[{n}/{total}] {shlex.join(step[1:])}")
        _run(step)
    if by_script:
        say(f"[{total}/{total}] payload key into the board's NVS")
        secret = json.loads(key_file.read_text())
        # taken before it is sent: once on a board it may seal at once, so it is never
        # sent again (a retry would start its counter at 0 again: nonce reuse)
        shutil.rmtree(key_file.parent)
        _provision_nvs(port, secret, device_id)
    say(f"flashed device {device_id} on {port}")


def _print_plan(steps: list[list[str]], key_file: Path, nvs: Partition | None,
                by_script: bool, note: str | None, say: Callable[[str], None]) -> None:
    """--dry-run: the commands, and notes for what they cannot show."""
    for step in steps:
        say(shlex.join(step))
    if nvs is not None:
        say(f"({NVS_IMAGE}: the payload key in {key_file} as an NVS partition image of "
            f"0x{nvs.size:x} bytes for partition {nvs.label}, made when flashing into a "
            "private temporary directory and deleted after its step; the key file "
            "leaves the bundle before it is written)")
    elif by_script:
        say(f"(then the payload key in {key_file} is written into the board's NVS by "
            "an mpremote run script, and deleted from the bundle)")
    if note:
        say(f"(--stock-firmware: {note})")


def _write_key_image(step: list[str], image: bytes, key_file: Path, label: str,
                     say: Callable[[str], None]) -> None:
    """esptool writes the key's image: the key file leaves the bundle before (a key is
    sent once), the image leaves the host after, however esptool ended."""
    shutil.rmtree(key_file.parent)
    with private_temp_file(image, "nvs-wearsafe.bin") as path:
        command = step[:-1] + [str(path)]
        say(f"{label} {shlex.join(command[1:])}  (the payload key)")
        try:
            _run(command)
        except ToolError as e:
            raise ToolError(f"{e}. The payload key has left the bundle (it may have reached "
                            f"the board, and its image is deleted): {REPROVISION}") from None


def _run(step: list[str], timeout: float = 600) -> None:
    """One step, its progress bars on the terminal."""
    try:
        code = subprocess.run(step, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        raise ToolError(f"no answer within {timeout:.0f} s: {shlex.join(step)}") from None
    if code != 0:
        raise ToolError(f"{Path(step[0]).name} failed (exit {code}): {shlex.join(step)}")


def _provision_nvs(port: str, secret: dict[str, str], device_id: str) -> None:
    with private_temp_file(NVS_SCRIPT.format(**secret).encode(), "nvs.py") as script:
        try:
            done = subprocess.run([venv_tool("mpremote"), "connect", port, "resume", "run",
                                   str(script)], capture_output=True, text=True, timeout=120,
                                  check=False)
            ok = f"nvs-provisioned {device_id}" in done.stdout
        except subprocess.TimeoutExpired:
            ok = False
    if not ok:  # its output is not shown: on an error it could echo the script
        raise ToolError(f"writing the payload key into the board's NVS on {port} failed, and "
                        "the key has left the bundle (it may have reached the board): "
                        f"{REPROVISION}")
