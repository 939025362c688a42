# Flash partitions for OTA, file-backed, with esp32.Partition's interface
# (the calls the firmware uses), and the ESP-IDF bootloader's selection
# rules, kept by bootsel.BootRecord in otadata.json: a selected partition
# boots on trial and is abandoned at the next boot unless the running
# firmware marked it valid.
import bootsel

BLOCK = 4096
BLOCKS = 1024  # 4 MiB per OTA partition
LABELS = ("ota_0", "ota_1")


class SimPartition:
    RUNNING = 1

    def __init__(self, state, label):
        self._state = state
        self._label = label
        self._path = state + "/" + label + ".bin"

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


def next_update(state):
    return SimPartition(state, LABELS[1] if running(state) == LABELS[0] else LABELS[0])
