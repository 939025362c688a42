# The outbox: sealed messages waiting for their PUBACK, kept on flash.
#
# What it stores is already encrypted. It is a bounded ring of segment files
# in one directory:
#   <n>.seg   records appended in order; n grows by one per segment
#   state     "<last removed seq> <dropped, not yet reported>", replaced
#             whole by a rename, so a power cut leaves the old or the new one
# A record is  seq u32 | length u16 | crc32 u32 | payload   (big-endian),
# the CRC over seq, length and payload. Each append is one write then a
# close, so a power cut tears at most the last record: recovery finds it by
# its length or CRC and cuts it off; it is never delivered as garbage.
# When the ring is full the oldest segment goes, and the records in it that
# were never delivered are counted as dropped, to be reported.
# Memory: a few integers, whatever the number of records; peek() reads one.
import binascii
import os
import struct

from micropython import const

_HEADER = const(10)
_FORMAT = ">IHI"
MAX_RECORD = const(0xFFFF)


class OutboxError(Exception):
    pass


def _crc(seq, length, payload):
    return binascii.crc32(payload, binascii.crc32(struct.pack(">IH", seq, length)))


def _read_record(f):
    """(seq, payload) of the next record, or None at the end or at a torn one."""
    header = f.read(_HEADER)
    if len(header) < _HEADER:
        return None
    seq, length, crc = struct.unpack(_FORMAT, header)
    payload = f.read(length)
    if len(payload) != length or _crc(seq, length, payload) != crc:
        return None
    return seq, payload


class Outbox:
    def __init__(self, directory, segment_bytes=4096, segments=8):
        if segments < 2 or segment_bytes < _HEADER + 1:
            raise OutboxError("outbox: need at least 2 segments of more than %d bytes"
                              % _HEADER)
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._max_segments = segments
        # segment numbers and offsets of the head and tail, and counts
        self._head_seg = self._head_pos = self._last = self._tail_size = 0
        self._last_seq = self._pending = self._removed = self._dropped = 0
        try:
            os.mkdir(directory)
        except OSError:
            pass  # exists
        self._load_state()
        self._recover()

    # -- public ------------------------------------------------------------

    def __len__(self):
        return self._pending

    def append(self, payload):
        """Store one sealed message; it survives a power cut once this returns."""
        n = len(payload)
        if not 0 < n <= min(MAX_RECORD, self._segment_bytes - _HEADER):
            raise OutboxError("outbox: a record must be 1..%d bytes, not %d"
                              % (min(MAX_RECORD, self._segment_bytes - _HEADER), n))
        if self._tail_size + _HEADER + n > self._segment_bytes:
            self._start_segment()
        seq = self._last_seq + 1
        with open(self._path(self._last), "ab") as f:
            f.write(struct.pack(_FORMAT, seq, n, _crc(seq, n, payload)) + payload)
        self._tail_size += _HEADER + n
        self._last_seq = seq
        self._pending += 1
        return seq

    def peek(self):
        """(seq, payload) of the oldest undelivered record, or None."""
        while self._pending:
            with open(self._path(self._head_seg), "rb") as f:
                f.seek(self._head_pos)
                record = _read_record(f)
            if record is not None:
                return record
            if self._head_seg >= self._last:
                self._pending = 0  # nothing valid after the head after all
                return None
            # The end of the head segment: go on with the next one.
            self._drop_segment(self._head_seg)
            self._head_seg += 1
            self._head_pos = 0
        return None

    def remove(self, seq):
        """Forget the record `seq` (the one peek() gave) once it is delivered."""
        record = self.peek()
        if record is None or record[0] != seq:
            raise OutboxError("outbox: remove(%d) but the oldest record is %s"
                              % (seq, record and record[0]))
        self._removed = seq
        self._save_state()
        self._head_pos += _HEADER + len(record[1])
        self._pending -= 1
        if self._head_seg != self._last and self._head_pos >= self._segment_size(self._head_seg):
            self._drop_segment(self._head_seg)
            self._head_seg += 1
            self._head_pos = 0

    def take_dropped(self):
        """How many records were dropped since the last call (for the next message)."""
        dropped = self._dropped
        if dropped:
            self._dropped = 0
            self._save_state()
        return dropped

    # -- files -------------------------------------------------------------

    def _path(self, n):
        return "%s/%d.seg" % (self._dir, n)

    def _segment_size(self, n):
        try:
            return os.stat(self._path(n))[6]
        except OSError:
            return 0

    def _segment_numbers(self):
        numbers = []
        for name in os.listdir(self._dir):
            if name.endswith(".seg") and name[:-4].isdigit():
                numbers.append(int(name[:-4]))
        numbers.sort()
        return numbers

    def _drop_segment(self, n):
        try:
            os.remove(self._path(n))
        except OSError:
            pass  # already gone

    def _load_state(self):
        try:
            with open(self._dir + "/state") as f:
                removed, dropped = f.read().split()
            self._removed, self._dropped = int(removed), int(dropped)
        except OSError:
            pass  # a new outbox
        except ValueError:
            raise OutboxError("outbox: %s/state is corrupt; delete the outbox directory "
                              "to start empty" % self._dir)

    def _save_state(self):
        tmp = self._dir + "/state.tmp"
        with open(tmp, "w") as f:
            f.write("%d %d" % (self._removed, self._dropped))
        os.rename(tmp, self._dir + "/state")

    def _start_segment(self):
        self._last += 1
        self._tail_size = 0
        first = self._last - self._max_segments + 1
        while self._head_seg < first:
            # Full: the oldest segment goes, with what it still held.
            lost = self._count_pending(self._head_seg, self._head_pos)
            self._dropped += lost
            self._pending -= lost
            self._save_state()
            self._drop_segment(self._head_seg)
            self._head_seg += 1
            self._head_pos = 0

    def _count_pending(self, n, pos):
        count = 0
        try:
            with open(self._path(n), "rb") as f:
                f.seek(pos)
                while _read_record(f) is not None:
                    count += 1
        except OSError:
            pass
        return count

    def _count_all(self):
        count = self._count_pending(self._head_seg, self._head_pos)
        for n in range(self._head_seg + 1, self._last + 1):
            count += self._count_pending(n, 0)
        return count

    # -- recovery ----------------------------------------------------------

    def _recover(self):
        """Find the head (first record not removed) and the tail; cut a torn record."""
        numbers = self._segment_numbers() or [0]
        self._last_seq = self._removed
        self._last = numbers[-1]
        self._head_seg, self._head_pos = self._last, -1
        for n in numbers:
            valid, head = self._scan(n)
            if valid < self._segment_size(n):
                self._cut(n, valid)
            if head >= 0 and self._head_pos < 0:
                self._head_seg, self._head_pos = n, head
        self._tail_size = self._segment_size(self._last)
        if self._head_pos < 0:  # nothing pending
            self._head_pos = self._tail_size
        for n in numbers:
            if n < self._head_seg:
                self._drop_segment(n)
        self._pending = self._count_all()

    def _scan(self, n):
        """(length of the valid prefix, offset of the first record not removed or -1)."""
        pos, head = 0, -1
        try:
            f = open(self._path(n), "rb")
        except OSError:
            return 0, -1  # a new outbox: no segment yet
        with f:
            while True:
                record = _read_record(f)
                if record is None:
                    return pos, head
                seq = record[0]
                if seq > self._removed and head < 0:
                    head = pos
                if seq > self._last_seq:
                    self._last_seq = seq
                pos += _HEADER + len(record[1])

    def _cut(self, n, length):
        """Keep the first `length` bytes of segment n (MicroPython files cannot truncate)."""
        tmp = self._path(n) + ".tmp"
        with open(self._path(n), "rb") as src, open(tmp, "wb") as dst:
            left = length
            while left:
                chunk = src.read(min(left, 512))
                dst.write(chunk)
                left -= len(chunk)
        os.rename(tmp, self._path(n))
