# The outbox: order, removal after delivery, bounds, torn records, recovery.
import os

from wearsafe.outbox import Outbox, OutboxError
from wstest import raises

_DIR = "outbox-test"


def _fresh(**kw):
    try:
        for name in os.listdir(_DIR):
            os.remove(_DIR + "/" + name)
    except OSError:
        pass
    return Outbox(_DIR, **kw)


def _drain(box):
    got = []
    while True:
        record = box.peek()
        if record is None:
            return got
        got.append(record[1])
        box.remove(record[0])


def test_records_come_out_in_order_and_only_once():
    box = _fresh(segment_bytes=64, segments=8)
    for i in range(12):
        box.append(b"msg-%02d" % i)
    assert len(box) == 12
    assert _drain(box) == [b"msg-%02d" % i for i in range(12)]
    assert len(box) == 0 and box.peek() is None


def test_a_record_stays_until_it_is_removed_even_across_a_restart():
    box = _fresh(segment_bytes=64, segments=8)
    for i in range(5):
        box.append(b"r%d" % i)
    seq, payload = box.peek()
    assert payload == b"r0"
    box.remove(seq)
    box = Outbox(_DIR, segment_bytes=64, segments=8)  # reboot
    assert len(box) == 4
    assert _drain(box) == [b"r1", b"r2", b"r3", b"r4"]
    assert len(Outbox(_DIR, segment_bytes=64, segments=8)) == 0


def test_sequence_numbers_keep_growing_after_the_outbox_empties():
    box = _fresh(segment_bytes=64, segments=4)
    first = box.append(b"a")
    _drain(box)
    box = Outbox(_DIR, segment_bytes=64, segments=4)
    assert box.append(b"b") == first + 1


def test_when_full_the_oldest_go_and_are_counted_once():
    box = _fresh(segment_bytes=40, segments=3)  # two 14-byte records per segment
    for _ in range(10):
        box.append(b"abcd")
    assert len(box) == 6  # three segments of two
    assert box.take_dropped() == 4
    assert box.take_dropped() == 0
    assert len(_drain(box)) == 6


def test_a_dropped_count_survives_a_restart_until_taken():
    box = _fresh(segment_bytes=40, segments=2)
    for _ in range(6):
        box.append(b"abcd")
    box = Outbox(_DIR, segment_bytes=40, segments=2)
    assert box.take_dropped() == 2


def test_a_torn_last_record_is_cut_off_not_delivered():
    box = _fresh(segment_bytes=4096, segments=2)
    box.append(b"complete")
    box.append(b"torn-record")
    path = _DIR + "/0.seg"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-3])  # the power went mid-write
    box = Outbox(_DIR, segment_bytes=4096, segments=2)
    assert _drain(box) == [b"complete"]
    assert box.append(b"next") == 2  # the torn one's number is reused: it never left


def test_a_corrupt_record_is_never_delivered():
    box = _fresh(segment_bytes=4096, segments=2)
    box.append(b"good")
    box.append(b"flipped")
    with open(_DIR + "/0.seg", "rb") as f:
        data = bytearray(f.read())
    data[-2] ^= 0x40
    with open(_DIR + "/0.seg", "wb") as f:
        f.write(data)
    assert _drain(Outbox(_DIR, segment_bytes=4096, segments=2)) == [b"good"]


def test_bad_use_is_a_clear_error():
    box = _fresh(segment_bytes=64, segments=2)
    e = raises(OutboxError, box.append, b"x" * 60)
    assert "1..54 bytes, not 60" in str(e)
    raises(OutboxError, box.append, b"")
    box.append(b"one")
    box.append(b"two")
    e = raises(OutboxError, box.remove, 2)
    assert "oldest record is 1" in str(e)
    with open(_DIR + "/state", "w") as f:
        f.write("garbage")
    e = raises(OutboxError, Outbox, _DIR)
    assert "state is corrupt" in str(e)


def test_peek_and_remove_keep_the_heap_flat():
    import gc

    box = _fresh(segment_bytes=512, segments=4)
    for _ in range(20):
        box.append(bytes(60))
    gc.collect()
    before = gc.mem_alloc()
    _drain(box)
    gc.collect()
    assert gc.mem_alloc() - before < 512


def test_the_next_message_reports_what_the_outbox_dropped():
    from wearsafe import cbor, senml
    from wearsafe.batch import Batch
    from wearsafe.sensing import Vitals

    box = _fresh(segment_bytes=40, segments=2)
    for _ in range(5):
        box.append(b"abcd")
    batch = Batch("d1", seconds=1)
    batch.clear(1767225600)
    assert batch.add(Vitals())
    batch.note_dropped(box.take_dropped())
    records = senml.resolve(cbor.decode(batch.pack()))
    dropped = [r for r in records if r["n"] == "d1/outbox-dropped"]
    assert dropped and dropped[0]["v"] == 2 and dropped[0]["u"] == "count", records
