"""ESP32 flash images made as MicroPython's ports/esp32/makeimg.py and ESP-IDF make
them, small but laid out like the real ones: the combined firmware.bin (bootloader
at 0x1000, the file's start; the partition table at 0x8000; the app at 0x10000),
its bootloader and its app image. The tables come from the real CSVs of the
MicroPython repository, encoded as ESP-IDF's gen_esp32part.py encodes them."""

from __future__ import annotations

import functools
import hashlib
import struct

# micropython ports/esp32/partitions-4MiB-ota.csv (ESP32_GENERIC variant OTA:
# boards/ESP32_GENERIC/sdkconfig.ota) and partitions-4MiBplus.csv (the stock
# ESP32_GENERIC: boards/sdkconfig.base)
OTA_CSV = """\
# Name,   Type, SubType, Offset,   Size,     Flags
nvs,      data, nvs,     0x9000,   0x4000,
otadata,  data, ota,     0xd000,   0x2000,
phy_init, data, phy,     0xf000,   0x1000,
ota_0,    app,  ota_0,   0x10000,  0x180000,
ota_1,    app,  ota_1,   0x190000, 0x180000,
"""
STOCK_CSV = """\
# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x1F0000,
"""
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {"factory": 0x00, "ota_0": 0x10, "ota_1": 0x11,  # app
            "ota": 0x00, "phy": 0x01, "nvs": 0x02}  # data


def partition_table(csv: str, md5: bool = True) -> bytes:
    """The binary table gen_esp32part.py makes of csv: 32-byte entries (AA 50, type,
    subtype, offset, size, label, flags), the MD5 entry, 0xFF up to 0xC00 bytes."""
    entries = b""
    for line in csv.splitlines():
        if line.strip() and not line.startswith("#"):
            name, ptype, subtype, offset, size = (f.strip() for f in line.split(",")[:5])
            entries += struct.pack("<2sBBII16sI", b"\xaa\x50", TYPES[ptype], SUBTYPES[subtype],
                                   int(offset, 0), int(size, 0), name.encode(), 0)
    if md5:
        entries += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return entries.ljust(0xC00, b"\xff")


def esp_image(segments: list[tuple[int, bytes]], entry: int, chip_id: int = 0) -> bytes:
    """An ESP image: header (magic E9, segment count, DIO, 4 MB at 40 MHz, entry point),
    extended header (chip id), the segments, the XOR checksum (seed EF) ending the
    padding to 16 bytes; no SHA-256 appended."""
    out = struct.pack("<BBBBI", 0xE9, len(segments), 2, 0x20, entry)
    out += struct.pack("<B3sHBHHIB", 0xEE, bytes(3), chip_id, 0, 0, 0xFFFF, 0, 0)
    checksum = 0xEF
    for addr, data in segments:
        out += struct.pack("<II", addr, len(data)) + data
        checksum = functools.reduce(lambda c, b: c ^ b, data, checksum)
    return out + bytes(15 - len(out) % 16) + bytes((checksum,))


def app_image(chip_id: int = 0, code: bytes = bytes(256)) -> bytes:
    """An app: its first (DROM) segment starts with esp_app_desc_t (magic ABCD5432)."""
    desc = struct.pack("<II8x32s32s16s16s32s", 0xABCD5432, 0, b"v1.29.0", b"micropython",
                       b"12:00:00", b"Jan  1 2026", b"v5.4.2").ljust(256, b"\0")
    return esp_image([(0x3F400020, desc), (0x40080000, code)], 0x40080000, chip_id)


def bootloader_image(chip_id: int = 0) -> bytes:
    """A bootloader: its first segment starts with esp_bootloader_desc_t (magic byte 0x50)."""
    return esp_image([(0x3FFF0000, b"\x50" + bytes(79)), (0x40078000, bytes(256))],
                     0x40080400, chip_id)


def combined_image(csv: str = OTA_CSV, chip_id: int = 0, table: bytes | None = None) -> bytes:
    """firmware.bin as makeimg.py writes it, from flash address 0x1000 on."""
    out = bootloader_image(chip_id).ljust(0x8000 - 0x1000, b"\xff")
    out += partition_table(csv) if table is None else table
    return out.ljust(0x10000 - 0x1000, b"\xff") + app_image(chip_id)
