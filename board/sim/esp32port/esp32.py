# The esp32 port's `esp32` module (NVS, Partition), modelled on the unix port.
# TEST EQUIPMENT (see time.py). NVS: ports/esp32/esp32_nvs.c over ESP-IDF
# nvs.h, each namespace's items in nvs-<namespace>.bin; one that nothing has
# written to yet starts as the nvs partition's image holds it (nvsimage.py):
# what `wearsafe flash` wrote there with esptool. Partition:
# ports/esp32/esp32_partition.c over flashmodel.py.
import os
import sys

import flashmodel
from flashmodel import esp_error

# ESP-IDF nvs.h error codes
_NVS_NOT_FOUND = 0x1102
_NVS_TYPE_MISMATCH = 0x1103
_NVS_KEY_TOO_LONG = 0x1109
_NVS_INVALID_LENGTH = 0x110C
_NVS_VALUE_TOO_LONG = 0x110E
_KEY_MAX = 15  # NVS_KEY_NAME_MAX_SIZE - 1, for keys and namespaces alike
_BLOB_MAX = 4000  # a blob that fits one page: the conservative bound
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_stores = {}  # namespace -> FileNVS: one store per namespace, as in ESP-IDF


flashmodel._NAMES.update({
    _NVS_NOT_FOUND: "ESP_ERR_NVS_NOT_FOUND",
    _NVS_TYPE_MISMATCH: "ESP_ERR_NVS_TYPE_MISMATCH",
    _NVS_KEY_TOO_LONG: "ESP_ERR_NVS_KEY_TOO_LONG",
    _NVS_INVALID_LENGTH: "ESP_ERR_NVS_INVALID_LENGTH",
    _NVS_VALUE_TOO_LONG: "ESP_ERR_NVS_VALUE_TOO_LONG"})


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError("can't convert %s to str" % type(name).__name__)
    if len(name) > _KEY_MAX:
        raise esp_error(_NVS_KEY_TOO_LONG)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _from_partition(namespace):
    """The namespace's items in the nvs partition (flashmodel's esp32-nvs.bin), if written."""
    entry = flashmodel.find("nvs")  # nvs_flash_init's partition: NVS_DEFAULT_PART_NAME
    if entry is None:
        return {}
    flash = flashmodel.Flash(entry[0], entry[4])
    if not _exists(flash.path):
        return {}
    import nvsimage

    try:
        return nvsimage.namespace_items(flash.read, flash.size, namespace)
    finally:
        del sys.modules["nvsimage"]  # the parser leaves the model's resident heap


class NVS:
    """Write-through, as ESP-IDF's nvs_set_* is: a value is on flash when the call returns."""

    def __init__(self, namespace):
        from simhw.nvs import FileNVS

        _check_name(namespace)
        if namespace not in _stores:
            path = "%s/nvs-%s.bin" % (flashmodel.state_dir(), namespace)
            store = FileNVS(path)
            if not _exists(path):
                store._items = _from_partition(namespace)
            _stores[namespace] = store
        self._store = _stores[namespace]

    def _get(self, key, kind):
        _check_name(key)
        item = self._store._items.get(key)
        if item is None:
            raise esp_error(_NVS_NOT_FOUND)
        if item[0] != kind:
            raise esp_error(_NVS_TYPE_MISMATCH)
        return item[1]

    def set_i32(self, key, value):
        _check_name(key)
        if not _I32_MIN <= value <= _I32_MAX:  # mp_obj_get_int on a 32-bit port
            raise OverflowError("overflow converting long int to machine word")
        self._store.set_i32(key, value)
        self._store.commit()

    def get_i32(self, key):
        import struct

        return struct.unpack("<i", self._get(key, 2))[0]

    def set_blob(self, key, value):
        _check_name(key)
        if len(value) > _BLOB_MAX:
            raise esp_error(_NVS_VALUE_TOO_LONG)
        self._store.set_blob(key, value)
        self._store.commit()

    def get_blob(self, key, buffer):
        value = self._get(key, 1)
        if len(value) > len(buffer):
            raise esp_error(_NVS_INVALID_LENGTH)
        buffer[:len(value)] = value
        return len(value)

    def erase_key(self, key):
        _check_name(key)
        if key not in self._store._items:
            raise esp_error(_NVS_NOT_FOUND)
        self._store.erase_key(key)
        self._store.commit()

    def commit(self):
        pass  # every set_* is already on flash


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = flashmodel.TYPE_APP
    TYPE_DATA = flashmodel.TYPE_DATA
    # no __eq__: Partition objects compare by identity, as on the port

    def __init__(self, id, block_size=4096):
        if id == Partition.RUNNING:
            label = flashmodel.running_label()
        elif id == Partition.BOOT:
            label = flashmodel.boot_label()
        elif isinstance(id, str):
            label = id
        else:
            raise ValueError()
        entry = flashmodel.find(label)
        if entry is None:
            raise OSError(2)  # ENOENT: esp32_partition_new(NULL)
        self._entry = entry
        self._flash = flashmodel.Flash(entry[0], entry[4])
        self._block = block_size

    @staticmethod
    def find(type=flashmodel.TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        return [Partition(e[0], block_size) for e in flashmodel.table()
                if e[1] == type and subtype in (0xFF, e[2]) and label in (None, e[0])]

    def info(self):
        e = self._entry
        return (e[1], e[2], e[3], e[4], e[0], False)

    def __repr__(self):
        e = self._entry
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=0>" \
            % (e[1], e[2], e[3], e[4], e[0])

    def readblocks(self, block_num, buf, offset=0):
        self._flash.read(block_num * self._block + offset, buf)

    def writeblocks(self, block_num, buf, offset=None):
        if self._entry[0] == flashmodel.running_label():
            flashmodel.panic("write to the running app partition %s" % self._entry[0])
        start = block_num * self._block
        if offset is None:
            self._flash.erase(start, len(buf))
        else:
            start += offset
        self._flash.write(start, buf)

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):
            return 0
        if cmd == 4:
            return self._entry[4] // self._block
        if cmd == 5:
            return self._block
        if cmd == 6:
            self._flash.erase(arg * flashmodel.SECTOR, flashmodel.SECTOR)
            return 0
        return None

    def set_boot(self):
        flashmodel.set_boot(self._entry[0])

    def get_next_update(self):
        label = flashmodel.next_update_label(self._entry[0])
        if label is None:
            raise OSError(2)  # ENOENT: esp_ota_get_next_update_partition gave NULL
        return Partition(label)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        flashmodel.mark_app_valid()
