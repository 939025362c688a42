"""`wearsafe flash` reads the firmware file before esptool writes it: a combined ESP32
image whose partition table has otadata and two OTA app slots (MicroPython's
ESP32_GENERIC, variant OTA) is flashed at 0x1000; a stock image only with
--stock-firmware; a bare app image or anything else never.

The images come from tests/esp_images.py; esptool's image-info reads their
bootloader and app as it reads the real ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from host_tools.device.flash import inspect_firmware, parse_partition_table
from host_tools.paths import ToolError, venv_tool
from tests.esp_images import (
    OTA_CSV,
    STOCK_CSV,
    app_image,
    bootloader_image,
    combined_image,
    partition_table,
)

WEARSAFE = venv_tool("wearsafe")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("flash")
    out = subprocess.run([WEARSAFE, "provision", "--server", str(tmp / "server"), "--out",
                          str(tmp / "dev")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return tmp / "dev"


def flash_dry_run(bundle: Path, firmware: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEARSAFE, "flash", "--port", "/dev/ttyUSB7", "--bundle", str(bundle),
                           "--firmware", str(firmware), "--dry-run", *extra],
                          capture_output=True, text=True, timeout=120)


def test_the_synthetic_images_are_what_esptool_and_esp_idf_read(tmp_path):
    image, boot, app = combined_image(), bootloader_image(), app_image()
    assert image[:len(boot)] == boot and image[0xF000:] == app
    for name, part, kind in (("bootloader", boot, "Bootloader"), ("app", app, "Application")):
        info = subprocess.run([venv_tool("esptool"), "image-info",
                               str(write(tmp_path, f"{name}.bin", part))],
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stdout + info.stderr
        assert "Chip ID: 0 (ESP32)" in info.stdout, info.stdout
        assert "(valid)" in info.stdout.split("Checksum: ")[1].splitlines()[0], info.stdout
        assert f"{kind} Information" in info.stdout, info.stdout
    assert "App version: v1.29.0" in info.stdout
    table = parse_partition_table(image[0x7000:0x8000])
    assert [(p.label, p.type, p.subtype, p.offset, p.size) for p in table] == [
        ("nvs", 1, 2, 0x9000, 0x4000), ("otadata", 1, 0, 0xD000, 0x2000),
        ("phy_init", 1, 1, 0xF000, 0x1000), ("ota_0", 0, 0x10, 0x10000, 0x180000),
        ("ota_1", 0, 0x11, 0x190000, 0x180000)]


def test_the_ota_variant_is_flashed_at_0x1000(tmp_path, bundle):
    firmware = write(tmp_path, "ESP32_GENERIC-OTA-20260101-v1.29.0.bin", combined_image())
    out = flash_dry_run(bundle, firmware)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("--baud 460800 erase-flash")
    assert lines[1].endswith(f"esptool --chip esp32 --port /dev/ttyUSB7 --baud 460800 "
                             f"write-flash 0x1000 {firmware}")
    assert "OTA" not in out.stdout.replace(firmware.name, "")  # no note, no warning
    image = inspect_firmware(firmware, "esp32_devkitc")
    assert image.has_ota and [p.label for p in image.ota_slots] == ["ota_0", "ota_1"]
    # a table without its optional MD5 entry is as good
    firmware.write_bytes(combined_image(table=partition_table(OTA_CSV, md5=False)))
    assert inspect_firmware(firmware, "esp32_devkitc").has_ota


def test_the_stock_variant_is_refused_without_stock_firmware(tmp_path, bundle):
    firmware = write(tmp_path, "ESP32_GENERIC-20260101-v1.29.0.bin", combined_image(STOCK_CSV))
    out = flash_dry_run(bundle, firmware)
    assert out.returncode == 1 and out.stdout == ""
    error = out.stderr
    assert error.startswith(f"wearsafe flash: error: {firmware} has no OTA app slots "
                            "(partitions: nvs, phy_init, factory)"), error
    assert "Signed firmware updates" in error and "--stock-firmware" in error
    assert "ESP32_GENERIC firmware, variant OTA" in error and "Traceback" not in error

    out = flash_dry_run(bundle, firmware, "--stock-firmware")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].endswith(f"write-flash 0x1000 {firmware}")
    assert lines[-1] == (f"(--stock-firmware: {firmware} has no OTA app slots (partitions: "
                         "nvs, phy_init, factory): this board will not be able to take signed "
                         "firmware updates)")


@pytest.mark.parametrize("case", ["bare app", "garbage", "empty", "no table", "torn table",
                                  "bad md5", "no app", "other chip"])
def test_what_is_not_a_combined_esp32_image_is_refused(tmp_path, bundle, case):
    good = combined_image()
    data = {
        "bare app": app_image() + bytes(0x20000),  # micropython.bin / .app-bin, for 0x10000
        "garbage": bytes(range(256)) * 512,
        "empty": b"",
        "no table": bootloader_image() + bytes(0x10000),
        "torn table": good[:0x7000 + 64] + b"\x00" * 32 + good[0x7000 + 96:],
        "bad md5": good[:0x7000 + 40] + b"X" + good[0x7000 + 41:],  # otadata's offset
        "no app": good[:0xF000],  # cut off where the app starts
        "other chip": combined_image(chip_id=9),  # an ESP32-S3 image
    }[case]
    expected = {
        "bare app": "is an app image alone (what goes into an app partition at 0x10000",
        "garbage": "is not an ESP32 firmware image: it does not start with an ESP image header",
        "empty": "is not an ESP32 firmware image",
        "no table": "has no partition table at 0x8000 (0x7000 into the file)",
        "torn table": "has a damaged partition table (entry 2 at +0x40 is neither an entry nor "
                      "the end of the table) at 0x8000",
        "bad md5": "has a damaged partition table (its MD5 does not match its entries)",
        "no app": "has no app at 0x10000 (partition ota_0): the file is cut short",
        "other chip": "is built for esp32s3, not for this board's esp32",
    }[case]
    firmware = write(tmp_path, "firmware.bin", data)
    out = flash_dry_run(bundle, firmware, "--stock-firmware")  # refused even so
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert out.stderr.startswith(f"wearsafe flash: error: {firmware}"), out.stderr
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    if case not in ("torn table", "bad md5"):  # not a table's damage: says what to flash
        assert "ESP32_GENERIC firmware, variant OTA" in out.stderr, out.stderr
    with pytest.raises(ToolError):
        inspect_firmware(firmware, "esp32_devkitc", stock_firmware=True)


def test_13_7_a_payload_key_is_flashed_once(tmp_path):
    """A bundle whose key a flash already took is not flashed onto an erased board with
    the same key again (its counter would restart at 0: AES-CCM nonce reuse)."""
    out = subprocess.run([WEARSAFE, "provision", "--server", str(tmp_path / "server"), "--out",
                          str(tmp_path / "dev")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    firmware = write(tmp_path, "fw.bin", combined_image())
    assert flash_dry_run(tmp_path / "dev", firmware).returncode == 0
    shutil.rmtree(tmp_path / "dev" / "factory")  # as a flash leaves it, failed or not
    again = flash_dry_run(tmp_path / "dev", firmware)
    assert again.returncode == 1 and "no longer holds its payload key" in again.stderr
    assert "--force" in again.stderr and "Traceback" not in again.stderr
    app_only = subprocess.run([WEARSAFE, "flash", "--port", "/dev/ttyUSB7", "--bundle",
                               str(tmp_path / "dev"), "--app-only", "--dry-run"],
                              capture_output=True, text=True, timeout=120)
    assert app_only.returncode == 0, app_only.stderr  # the board keeps the key it has
