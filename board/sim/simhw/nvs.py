# NVS emulation with esp32.NVS's interface: set_* stage changes, commit()
# writes them. The file is replaced whole by a rename, so a power cut leaves
# either the old or the new contents; a CRC catches anything else, and a
# corrupt file is an error, never silently empty (the nonce counter's
# ceiling lives here). The state dir the host creates is 0700.
import binascii
import os
import struct

_MAGIC = b"WSNV"
_BLOB = 1
_I32 = 2
_ENOENT = 2


class FileNVS:
    def __init__(self, path):
        self._path = path
        self._items = self._load()

    def _load(self):
        try:
            with open(self._path, "rb") as f:
                data = f.read()
        except OSError:
            return {}
        if len(data) < 8 or data[:4] != _MAGIC or \
                binascii.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise OSError("NVS file %s is corrupt" % self._path)
        items, pos = {}, 4
        while pos < len(data) - 4:
            klen = data[pos]
            key = data[pos + 1:pos + 1 + klen].decode()
            kind, vlen = struct.unpack_from("<BH", data, pos + 1 + klen)
            start = pos + 4 + klen
            items[key] = (kind, bytes(data[start:start + vlen]))
            pos = start + vlen
        return items

    def _value(self, key, kind):
        item = self._items.get(key)
        if item is None or item[0] != kind:
            raise OSError(_ENOENT)
        return item[1]

    def set_blob(self, key, value):
        self._items[key] = (_BLOB, bytes(value))

    def get_blob(self, key, buffer):
        value = self._value(key, _BLOB)
        if len(value) > len(buffer):
            raise OSError("NVS blob %s is larger than the buffer" % key)
        buffer[:len(value)] = value
        return len(value)

    def set_i32(self, key, value):
        self._items[key] = (_I32, struct.pack("<i", value))

    def get_i32(self, key):
        return struct.unpack("<i", self._value(key, _I32))[0]

    def erase_key(self, key):
        if self._items.pop(key, None) is None:
            raise OSError(_ENOENT)

    def commit(self):
        out = bytearray(_MAGIC)
        for key in self._items:
            kind, value = self._items[key]
            name = key.encode()
            out += bytes((len(name),)) + name + struct.pack("<BH", kind, len(value)) + value
        out += struct.pack("<I", binascii.crc32(out))
        tmp = self._path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(out)
        os.rename(tmp, self._path)
