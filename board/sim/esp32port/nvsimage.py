# ESP-IDF's NVS partition format, read as nvs_flash reads it: the model's esp32.NVS
# seeds a namespace from the nvs partition's image (`wearsafe flash` writes one that
# host_tools/device/nvs_image.py makes with Espressif's esp-idf-nvs-partition-gen) while nothing
# has been written to that namespace in the model. Imported only to seed, then dropped.
# TEST EQUIPMENT (see time.py). Sources, ESP-IDF components/nvs_flash:
# - private_include/nvs_constants.h: 4096-byte pages; a 32-byte header (state u32, seq
#   u32, version u8, CRC32 of bytes 4..27 at 28), the entry-state table (2 bits an
#   entry) at 32, 126 entries of 32 bytes from 64; page states ACTIVE, FULL, FREEING;
#   entry states EMPTY 3, WRITTEN 2, ERASED 0, ILLEGAL 1; NVS_VERSION 0xfe;
# - src/nvs_types.hpp: an item is nsIndex, datatype, span, chunkIndex, crc32, key[16],
#   data[8] (varLength: dataSize u16, dataCrc32 at +4; blobIndex: dataSize u32,
#   chunkCount u8, chunkStart u8);
# - src/nvs_types.cpp: Item::calculateCrc32, bytes 0..3 then 8..31 from 0xffffffff (the
#   generator's zlib.crc32(data, 0xffffffff), binascii.crc32 here);
#   Item::checkHeaderConsistency (CRC, datatype, span, chunkIndex, sizes);
# - src/nvs_page.cpp: Page::load (a header CRC mismatch, an unknown state or an erased
#   header over written bytes: a corrupt page, a free one whose items are never found;
#   a version below NVS_VERSION: ESP_ERR_NVS_NEW_VERSION_FOUND); Page::mLoadEntryTable
#   (an ACTIVE page ends at its first EMPTY entry, and a half-written entry there is
#   erased; an item whose CRC does not match is skipped: "if
#   (!item.checkHeaderConsistency(i)) { err = eraseEntryAndSpan(i, ...); ... continue; }",
#   and eraseEntryAndSpan erases that one entry when its header is inconsistent; a
#   variable-length item with an entry of its span not WRITTEN is erased; on an ACTIVE
#   page a later item of the same namespace, key and chunk erases the earlier);
#   Page::readVariableLengthItemData (a data CRC mismatch erases the item and answers
#   ESP_ERR_NVS_NOT_FOUND);
# - src/nvs_pagemanager.cpp PageManager::load: pages in seq order; not one free page
#   left: ESP_ERR_NVS_NO_FREE_PAGES;
# - src/nvs_storage.cpp: Storage::init (namespaces are U8 items of nsIndex 0;
#   eraseMismatchedBlobIndexes: a BLOB_IDX whose BLOB_DATA chunks do not add up is
#   erased), createOrOpenNamespace (a name not there gets the lowest free index),
#   findItem (the first page in order that has it), readMultiPageBlob, readItem (a
#   BLOB_IDX with its chunks, else a single-item BLOB of the older format);
# - MicroPython ports/esp32/main.c boardctrl_startup: on ESP_ERR_NVS_NO_FREE_PAGES or
#   ESP_ERR_NVS_NEW_VERSION_FOUND it erases the partition (nvs_flash_erase): all gone.
# Here a blob's data CRC is checked when seeding, where ESP-IDF checks it at the read
# (ESP_ERR_NVS_NOT_FOUND, an ESP_FAIL at the next read while its index lingers): either
# way the value is not found. Not modelled: power-cut repairs across pages (a duplicate
# in an older page, a FREEING page's copy: the generator makes neither), NVS encryption,
# and types other than blobs and i32 (all that the model's esp32.NVS reads).
import binascii
import struct

PAGE = 4096
KIND_BLOB, KIND_I32 = 1, 2  # simhw.nvs FileNVS's kinds
_ENTRIES = 126
_ERASED_WORD = 0xFFFFFFFF
_ACTIVE, _FULL, _FREEING = 0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8
_EMPTY, _WRITTEN = 3, 2
_NVS_VERSION = 0xFE
_U8, _I32, _SZ, _BLOB, _BLOB_DATA, _BLOB_IDX = 0x01, 0x14, 0x21, 0x41, 0x42, 0x48
_FIXED = (0x01, 0x11, 0x02, 0x12, 0x04, 0x14, 0x08, 0x18, 0x24, 0x28)
_VARIABLE = (_SZ, _BLOB, _BLOB_DATA)
_CHUNK_ANY = 0xFF
_MAX_BLOB = 127 * 125 * 32  # (UINT8_MAX / 2) chunks of (ENTRY_COUNT - 1) entries


class Erased(Exception):
    """nvs_flash_init failed; MicroPython erased the partition."""


def _crc(data, value=0xFFFFFFFF):
    return binascii.crc32(data, value)


def _u32(buf, at):
    return struct.unpack_from("<I", buf, at)[0]


def _state(page, i):
    return (page[32 + (i >> 2)] >> ((i & 3) * 2)) & 3


def _consistent(page, at, i):
    """Item::checkHeaderConsistency for entry i (at its offset `at`)."""
    view = memoryview(page)
    if _crc(view[at + 8:at + 32], _crc(view[at:at + 4])) != _u32(page, at + 4):
        return False
    dtype, span, chunk = page[at + 1], page[at + 2], page[at + 3]
    if dtype in _FIXED:
        return span == 1
    if dtype == _BLOB_IDX:
        return span == 1 and chunk == _CHUNK_ANY and _u32(page, at + 24) <= _MAX_BLOB
    if dtype in _VARIABLE:
        size = struct.unpack_from("<H", page, at + 24)[0]
        return not (dtype == _BLOB_DATA and chunk == _CHUNK_ANY) \
            and size <= (_ENTRIES - i - 1) * 32 and span <= _ENTRIES - i \
            and span == (size + 31) // 32 + 1
    return False


def _end(page):
    """Where an ACTIVE page's items end: its first EMPTY entry, half-written ones skipped."""
    end = 0
    while end < _ENTRIES and _state(page, end) != _EMPTY:
        end += 1
    while end < _ENTRIES and _u32(page, 64 + 32 * end) != _ERASED_WORD:
        end += 1
    return end


def _key(page, at):
    """The item's key as strncmp compares it: up to its NUL, at most MAX_KEY_LENGTH (15)."""
    name = bytes(page[at + 8:at + 24])
    end = name.find(b"\0")
    return name[:end if 0 <= end < 15 else 15]


def _value(page, at, i, dtype, span):
    if dtype in _VARIABLE:
        for j in range(i + 1, i + span):
            if _state(page, j) != _WRITTEN:
                return None  # torn: erased with its span
        size = struct.unpack_from("<H", page, at + 24)[0]
        data = bytes(page[at + 32:at + 32 + size])
        return size, (data if _crc(data) == _u32(page, at + 28) else None)
    if dtype == _BLOB_IDX:
        return struct.unpack_from("<IBB", page, at + 24)  # dataSize, chunkCount, chunkStart
    return bytes(page[at + 24:at + 32])


def _items(page, active):
    """{(nsIndex, key, chunkIndex): (datatype, value)} of the page's consistent items."""
    found = {}
    end = _end(page) if active else _ENTRIES
    i = 0
    while i < end:
        at = 64 + 32 * i
        if _state(page, i) != _WRITTEN or not _consistent(page, at, i):
            i += 1  # erased, illegal, or skipped as ESP-IDF skips it: that entry alone
            continue
        dtype, span = page[at + 1], page[at + 2]
        value = _value(page, at, i, dtype, span)
        ident = (page[at], _key(page, at), page[at + 3])
        if value is not None and (active or ident not in found):
            found[ident] = (dtype, value)
        i += span
    return found


def _page(page):
    """The items of a page Page::load keeps; None for a free page (erased or corrupt)."""
    state = _u32(page, 0)
    if state == _ERASED_WORD:
        return None
    if _u32(page, 28) != _crc(memoryview(page)[4:28]):
        return None
    if page[8] < _NVS_VERSION:
        raise Erased()
    if state not in (_ACTIVE, _FULL, _FREEING):
        return None
    return _items(page, state == _ACTIVE)


def _load(read, size):
    """Each kept page's items, in seq order as PageManager::load lists them."""
    pages, free = [], 0
    buf = bytearray(PAGE)
    for offset in range(0, size - size % PAGE, PAGE):
        read(offset, buf)
        items = _page(buf)
        if items is None:
            free += 1
            continue
        seq, pos = _u32(buf, 4), 0
        while pos < len(pages) and pages[pos][0] <= seq:
            pos += 1
        pages.insert(pos, (seq, items))
    if not free:
        raise Erased()  # ESP_ERR_NVS_NO_FREE_PAGES
    return [items for _, items in pages]


def _find(pages, ns, key, chunk, dtype):
    for items in pages:
        item = items.get((ns, key, chunk))
        if item is not None and item[0] == dtype:
            return item[1]
    return None


def _namespace_index(pages, name):
    used, index = set(), None
    for items in pages:
        for (ns, key, _), (dtype, value) in items.items():
            if ns == 0 and dtype == _U8:
                used.add(value[0])
                if key == name and index is None:
                    index = value[0]
    if index is not None:
        return index
    for free in range(1, 255):
        if free not in used:
            return free
    return None


def _chunks(pages, ns, key, first, last):
    """The BLOB_DATA (size, data) items of one blob version, from every page."""
    return [value for items in pages for (n, k, chunk), (dtype, value) in items.items()
            if n == ns and k == key and dtype == _BLOB_DATA and first <= chunk < last]


def _blob(pages, ns, key):
    index = _find(pages, ns, key, _CHUNK_ANY, _BLOB_IDX)
    if index is None:
        old = _find(pages, ns, key, _CHUNK_ANY, _BLOB)  # single-item, older format
        return None if old is None else old[1]
    size, count, start = index
    chunks = _chunks(pages, ns, key, start, 0x80 if start == 0 else _CHUNK_ANY)
    if sum(c[0] for c in chunks) != size or len(chunks) != count:
        return None  # erased by eraseMismatchedBlobIndexes
    data = b""
    for n in range(count):
        chunk = _find(pages, ns, key, start + n, _BLOB_DATA)
        if chunk is None or chunk[1] is None:
            return None  # a chunk missing, or its data CRC does not match
        data += chunk[1]
    return data if len(data) == size else None


def namespace_items(read, size, namespace):
    """{key: (kind, value)} of `namespace` in the NVS partition of `size` bytes that
    read(offset, buf) reads, as nvs_flash_init and nvs_get_blob/nvs_get_i32 find them."""
    try:
        pages = _load(read, size)
    except Erased:
        return {}
    ns = _namespace_index(pages, namespace.encode())
    keys = set(k for items in pages for (n, k, _) in items if n == ns)
    found = {}
    for key in keys:
        blob = _blob(pages, ns, key)
        i32 = _find(pages, ns, key, _CHUNK_ANY, _I32)
        try:
            name = key.decode()
        except UnicodeError:
            continue  # no str names it
        if blob is not None:
            found[name] = (KIND_BLOB, blob)
        elif i32 is not None:
            found[name] = (KIND_I32, i32[:4])
    return found
