# Flash partitions for OTA, file-backed, with esp32.Partition's interface
# (the calls the firmware uses), and the ESP-IDF bootloader's selection
# rules, kept by bootsel.BootRecord in otadata.json: a selected partition
# boots on trial and is abandoned at the next boot unless the running
# firmware marked it valid.
import bootsel

BLOCK = 4096
BLOCKS = 1024  # 4 MiB per OTA partition
LABELS = ("ota_0", "ota_1")
# Erasing and programming NOR flash take the chip's time, and the writer waits
# for it: the typical figures of the Winbond W25QxxJV datasheets (the SPI NOR
# family on ESP32-WROOM-32 modules), sector erase tSE 45 ms (400 ms at most),
# page program tPP 0.7 ms per 256 bytes (3 ms at most).
ERASE_MS_PER_SECTOR = 45
PROGRAM_US_PER_PAGE = 700


def busy_ms(erased, programmed):
    """How long erasing `erased` bytes and programming `programmed` bytes takes."""
    return (erased // BLOCK * ERASE_MS_PER_SECTOR
            + (programmed + 255) // 256 * PROGRAM_US_PER_PAGE // 1000)


class SimPartition:
    RUNNING = 1

    def __init__(self, state, label, sleep_ms=None):
        self._state = state
        self._label = label
        self._path = state + "/" + label + ".bin"
        self._sleep_ms = sleep_ms  # the board's: the chip's erase and program time

    def info(self):
        # (type, subtype, address, size, label, encrypted), as on esp32
        return (0, 0x10 + LABELS.index(self._label), 0, BLOCK * BLOCKS, self._label, False)

    def ioctl(self, op, arg):
        return {4: BLOCKS, 5: BLOCK}.get(op, 0)

    def writeblocks(self, block, buf):
        if not 0 <= block < BLOCKS or len(buf) % BLOCK:
            raise OSError("partition %s: bad block write" % self._label)
        try:
            f = open(self._path, "r+b")
        except OSError:
            f = open(self._path, "wb")
        with f:
            f.seek(block * BLOCK)
            f.write(buf)
        if self._sleep_ms:
            self._sleep_ms(busy_ms(len(buf), len(buf)))  # writeblocks erases first

    def readblocks(self, block, buf):
        with open(self._path, "rb") as f:
            f.seek(block * BLOCK)
            f.readinto(buf)

    def set_boot(self):
        otadata(self._state).set_boot(self._label, None)


def otadata(state):
    return bootsel.BootRecord(state + "/otadata.json")


def running(state):
    """The partition the last boot chose (factory firmware runs from ota_0)."""
    slot = otadata(state).active
    return "ota_0" if slot == bootsel.FACTORY else slot


def next_update(state, sleep_ms=None):
    return SimPartition(state, LABELS[1] if running(state) == LABELS[0] else LABELS[0],
                        sleep_ms)
