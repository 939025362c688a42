# The ESP32's flash as the esp32 port sees it: partition tables, NOR-flash
# write rules, otadata and the ESP-IDF bootloader's OTA selection. TEST
# EQUIPMENT (see time.py). Sources:
# - tables: ports/esp32/partitions-4MiBplus.csv (the stock ESP32_GENERIC
#   image: one factory app, no otadata) and partitions-4MiB-ota.csv (the OTA
#   variant, boards/ESP32_GENERIC/mpconfigvariant_OTA.cmake);
# - ports/esp32/esp32_partition.c: writeblocks(n, buf) erases first,
#   writeblocks(n, buf, offset) does not; errors via check_esp_err
#   (ports/esp32/mphalport.c) as OSError(-esp_err, name);
# - ESP-IDF components/app_update/esp_ota_ops.c: set_boot validates the app
#   image (esp_image_verify) and needs otadata; get_next_update; the
#   rollback states; mark_app_valid_cancel_rollback fails without otadata
#   (ESP_ERR_NOT_FOUND) and on an erased otadata, where the running app
#   counts as factory (ESP_FAIL);
# - ESP-IDF bootloader_support: a NEW slot boots PENDING_VERIFY
#   (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, on in boards/sdkconfig.base);
#   one still PENDING_VERIFY at the next boot is ABORTED and the previous
#   slot boots;
# - ESP-IDF spi_flash: a write into the running app aborts (the chip panics
#   and reboots) with the default CONFIG_SPI_FLASH_DANGEROUS_WRITE_ABORTS.
# Each partition is a sparse file <state>/esp32-<label>.bin; unwritten
# bytes read as erased (0xFF), and a write only clears bits, as NOR flash.
# Erasing and programming take the chip's time, during which the caller is
# blocked (ESP-IDF spi_flash waits for the chip): simhw/partition.py busy_ms.
import hashlib
import json
import os
import struct
import time

SECTOR = 4096
TYPE_APP, TYPE_DATA = 0, 1
FACTORY, OTA_0, OTA_1 = 0x00, 0x10, 0x11
OTADATA, PHY, NVS, FAT = 0x00, 0x01, 0x02, 0x81
TABLES = {
    "stock": (("nvs", TYPE_DATA, NVS, 0x9000, 0x6000),
              ("phy_init", TYPE_DATA, PHY, 0xF000, 0x1000),
              ("factory", TYPE_APP, FACTORY, 0x10000, 0x1F0000),
              ("vfs", TYPE_DATA, FAT, 0x200000, 0x200000)),
    "ota": (("nvs", TYPE_DATA, NVS, 0x9000, 0x4000),
            ("otadata", TYPE_DATA, OTADATA, 0xD000, 0x2000),
            ("phy_init", TYPE_DATA, PHY, 0xF000, 0x1000),
            ("ota_0", TYPE_APP, OTA_0, 0x10000, 0x180000),
            ("ota_1", TYPE_APP, OTA_1, 0x190000, 0x180000),
            ("vfs", TYPE_DATA, FAT, 0x310000, 0xF0000)),
}
# esp_err_t codes (ESP-IDF esp_err.h, esp_ota_ops.h)
ESP_FAIL = -1
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_FOUND = 0x105
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
_NAMES = {ESP_FAIL: "ESP_FAIL", ESP_ERR_INVALID_ARG: "ESP_ERR_INVALID_ARG",
          ESP_ERR_INVALID_SIZE: "ESP_ERR_INVALID_SIZE", ESP_ERR_NOT_FOUND: "ESP_ERR_NOT_FOUND",
          ESP_ERR_OTA_VALIDATE_FAILED: "ESP_ERR_OTA_VALIDATE_FAILED"}
# otadata entry states (esp_ota_img_states_t)
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED = (
    "new", "pending-verify", "valid", "invalid", "aborted")
RESET_EXIT = 75  # the process ends with this code to reset; the host starts it again


def esp_error(code):
    """OSError as ports/esp32/mphalport.c check_esp_err raises it."""
    return OSError(-code, _NAMES.get(code, "ESP_ERR_0x%x" % code))


def state_dir():
    return os.getenv("WEARSAFE_SIM_DIR") or "."


def variant():
    """The firmware flashed: "ota" (the OTA variant) or "stock" ($WEARSAFE_ESP32_VARIANT)."""
    name = os.getenv("WEARSAFE_ESP32_VARIANT") or "ota"
    if name not in TABLES:
        raise ValueError("WEARSAFE_ESP32_VARIANT must be stock or ota, not %r" % name)
    return name


def table():
    return TABLES[variant()]


def find(label):
    for entry in table():
        if entry[0] == label:
            return entry
    return None


def panic(reason):
    """What ESP-IDF does on abort(): print, and reboot the chip."""
    print("abort() was called: %s\nRebooting..." % reason)
    note_reset("panic")
    raise SystemExit(RESET_EXIT)


def note_reset(cause):
    with open(state_dir() + "/esp32-reset-cause", "w") as f:
        f.write(cause)


def take_reset_cause():
    path = state_dir() + "/esp32-reset-cause"
    try:
        with open(path) as f:
            cause = f.read()
        os.remove(path)
        return cause
    except OSError:
        return "power-on"


def _flash_ms(erased, programmed):
    from simhw.partition import busy_ms  # here: CPython reads this module's TABLES

    return busy_ms(erased, programmed)


class Flash:
    """One partition's bytes with NOR-flash rules."""

    def __init__(self, label, size):
        self.path = "%s/esp32-%s.bin" % (state_dir(), label)
        self.size = size

    def _check(self, offset, n):
        if offset < 0 or offset + n > self.size:
            raise esp_error(ESP_ERR_INVALID_SIZE)

    def read(self, offset, buf):
        n = len(buf)
        self._check(offset, n)
        for i in range(n):
            buf[i] = 0xFF
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                got = f.read(n)
        except OSError:
            return
        buf[:len(got)] = got

    def erase(self, offset, n):
        if offset % SECTOR or n % SECTOR:
            raise esp_error(ESP_ERR_INVALID_ARG)
        self._check(offset, n)
        self._store(offset, b"\xff" * n)
        time.sleep_ms(_flash_ms(n, 0))

    def write(self, offset, data):
        self._check(offset, len(data))
        old = bytearray(len(data))
        self.read(offset, old)
        for i in range(len(data)):
            old[i] &= data[i]  # NOR flash: a write only clears bits
        self._store(offset, old)
        time.sleep_ms(_flash_ms(0, len(data)))

    def _store(self, offset, data):
        try:
            f = open(self.path, "r+b")
        except OSError:
            f = open(self.path, "wb")
        with f:
            f.seek(0, 2)
            end = f.tell()
            if end < offset:
                f.write(b"\xff" * (offset - end))
            f.seek(offset)
            f.write(data)


# -- app images: what esp_image_verify checks (ESP-IDF bootloader_support/src/esp_image_format.c)

APP_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t, first in an app's first segment
_CHIP_ESP32 = 0


def app_image_error(flash):
    """Why the partition holds no valid ESP32 app image, or None when it does."""
    head = bytearray(24)
    flash.read(0, head)
    if head[0] != APP_MAGIC:
        return "no app image (magic 0x%02x)" % head[0]
    segments, chip, hash_appended = head[1], struct.unpack_from("<H", head, 12)[0], head[23]
    if not 0 < segments <= 16 or chip != _CHIP_ESP32:
        return "bad image header"
    pos, checksum, first = 24, 0xEF, True
    digest = hashlib.sha256(bytes(head))
    for _ in range(segments):
        seg = bytearray(8)
        flash.read(pos, seg)
        length = struct.unpack_from("<I", seg, 4)[0]
        if length % 4 or pos + 8 + length > flash.size:
            return "segment beyond the partition"
        data = bytearray(length)
        flash.read(pos + 8, data)
        if first and (length < 4 or struct.unpack_from("<I", data, 0)[0] != APP_DESC_MAGIC):
            return "no esp_app_desc_t: not an application (a bootloader or a combined file?)"
        first = False
        for b in data:
            checksum ^= b
        digest.update(seg)
        digest.update(data)
        pos += 8 + length
    pad = 15 - pos % 16  # the checksum byte ends a 16-byte block
    tail = bytearray(pad + 1)
    flash.read(pos, tail)
    if tail[-1] != checksum:
        return "checksum mismatch"
    digest.update(tail)
    if hash_appended:
        appended = bytearray(32)
        flash.read(pos + pad + 1, appended)
        if digest.digest() != bytes(appended):
            return "SHA-256 mismatch"
    return None


# -- otadata and the bootloader

def _otadata_path():
    return state_dir() + "/esp32-otadata.json"


def read_otadata():
    """{"seq": n, "state": ...} of the active entry; None when erased."""
    try:
        with open(_otadata_path()) as f:
            return json.load(f)
    except OSError:
        return None


def write_otadata(entry):
    tmp = _otadata_path() + ".new"
    with open(tmp, "w") as f:
        json.dump(entry, f)
    os.rename(tmp, _otadata_path())


def ota_labels():
    return [e[0] for e in table() if e[1] == TYPE_APP and e[2] != FACTORY]


def _label_of_seq(seq):
    labels = ota_labels()
    return labels[(seq - 1) % len(labels)]


def _first_app():
    for e in table():
        if e[1] == TYPE_APP:
            return e[0]


_running = None


def soft_reset():
    """Started by a soft reset (the virtual board says so in $WEARSAFE_VBOARD_RESET):
    ports/esp32/main.c goes back to its soft_reset label, so the chip and the
    bootloader do not run again and machine.reset_cause() is SOFT_RESET."""
    return os.getenv("WEARSAFE_VBOARD_RESET") == "soft"


def running_label():
    """The app slot this boot runs: the bootloader's choice, made once per chip reset."""
    global _running
    if _running is None:
        path = state_dir() + "/esp32-running"
        if soft_reset():
            with open(path) as f:
                _running = f.read()
        else:
            _running = _bootloader()
            with open(path, "w") as f:
                f.write(_running)
    return _running


def _bootloader():
    if not find("otadata"):
        return _first_app()
    entry = read_otadata()
    if entry is None:
        return _first_app()  # erased otadata: ota_0 (no factory in the OTA table)
    if entry["state"] == NEW:
        entry["state"] = PENDING_VERIFY
        write_otadata(entry)
    elif entry["state"] == PENDING_VERIFY:
        # the trial never confirmed: abandon it, back to the previous slot
        print("bootloader: %s was not confirmed; rolling back" % _label_of_seq(entry["seq"]))
        write_otadata({"seq": entry["seq"] - 1, "state": VALID, "aborted": entry["seq"]})
        entry = read_otadata()
        if entry["seq"] < 1:
            return _first_app()
    label = _label_of_seq(entry["seq"])
    return label


def set_boot(label):
    if not find("otadata"):
        raise esp_error(ESP_ERR_NOT_FOUND)
    entry = find(label)
    if error := app_image_error(Flash(label, entry[4])):
        print("esp_image: %s: %s" % (label, error))
        raise esp_error(ESP_ERR_OTA_VALIDATE_FAILED)
    if entry[2] == FACTORY:
        os.remove(_otadata_path())
        return
    current = read_otadata() or {"seq": 0}
    seq = current["seq"] + 1
    while _label_of_seq(seq) != label:
        seq += 1
    write_otadata({"seq": seq, "state": NEW})


def mark_app_valid():
    if not find("otadata"):
        raise esp_error(ESP_ERR_NOT_FOUND)
    entry = read_otadata()
    if entry is None:
        raise esp_error(ESP_FAIL)  # "Running firmware is factory"
    if entry["state"] == PENDING_VERIFY and _label_of_seq(entry["seq"]) == running_label():
        entry["state"] = VALID
        write_otadata(entry)


def next_update_label(start_label):
    labels = ota_labels()
    if not labels:
        return None
    if start_label in labels:
        return labels[(labels.index(start_label) + 1) % len(labels)]
    return labels[0]


def boot_label():
    """What the next boot will run (esp_ota_get_boot_partition)."""
    if not find("otadata"):
        return _first_app()
    entry = read_otadata()
    return _first_app() if entry is None else _label_of_seq(entry["seq"])
