# Update metadata that cannot hurt (issue 13, findings 4 and 9): the unsigned
# announcement, the refusal memory and the stored counters, on the device's own
# code (the trust anchors: test_ota_trust.py). A board of our own (the clock, the state directory:
# the test's working directory) stands in for the real one, so nothing here
# touches a board's files. Signed images: tests/test_ota_metadata.py.
import hashlib
import json
import os
from binascii import hexlify, unhexlify

from wearsafe import log
from wearsafe.ota import image, install, updater

# The updater (with the link it imports), installer and verifier, this module and
# its fixtures (a 6000-byte message, two days of announcements) within an ESP32's
# GC heap: the virtual board runs it at 128K through mpremote (ESP32_HEAP in
# host_tools/testing/vboard.py).
HEAP = "120K"

SPKI = unhexlify("302a300506032b6570032100")  # an Ed25519 SubjectPublicKeyInfo's start
# RFC 8032 section 7.1, TEST 1: a well-formed public key
KEY1 = SPKI + unhexlify("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
DAY = 86400


class Board:
    """What the installer asks of a board: a clock we move, no firmware slot."""

    def __init__(self):
        self.now = 1_750_000_000

    def state_dir(self):
        return "."

    def epoch_s(self):
        return self.now

    def ticks_ms(self):
        return self.now * 1000

    def ticks_diff(self, a, b):
        return a - b

    def next_firmware_slot(self):
        return None  # application updates only

    def running_firmware_slot(self):
        return None

    def confirm_firmware(self):
        pass

    def reset(self):
        raise AssertionError("the device reset: an image was installed")


class NVS:
    """esp32.NVS's i32 as the esp32 port has it: OverflowError from 2**31 on."""

    def __init__(self):
        self.values = {}

    def get_i32(self, key):
        if key not in self.values:
            raise OSError(-0x1102)
        return self.values[key]

    def set_i32(self, key, value):
        if not -(1 << 31) <= value < (1 << 31):
            raise OverflowError("overflow converting long int to machine word")
        self.values[key] = value

    def commit(self):
        pass


class Link:
    """The updater's side of the link: retained messages by topic, fetches counted."""

    def __init__(self):
        self.retained = {}
        self.fetches = 0
        self.listening = {}

    def listen(self, topic, callback):
        self.listening[topic] = callback

    def announce(self, message):
        self.listening["updates/sim/announce"]("updates/sim/announce", message)

    def fetch(self, topic):
        self.fetches += 1
        return self.retained[topic]

    def close(self):
        pass


def _trust_file(keys, revoked=(), name="trust.json"):
    doc = {"class": "sim", "class_id": "00" * 16, "keys": [hexlify(k).decode() for k in keys]}
    if revoked:
        doc["revoked"] = [hexlify(h).decode() for h in revoked]
    with open(name, "w") as f:
        json.dump(doc, f)
    return name


def _device(board=None):
    try:
        os.mkdir("apps")
    except OSError:
        pass
    board = board or Board()
    trust = install.load_trust(_trust_file([KEY1]))
    inst = install.Installer(board, trust, install.Counters(NVS()))
    link = Link()
    up = updater.Updater(link, inst, board, {image.KIND_APP: "0.1.0"})
    return board, inst, link, up


class Warnings:
    """log.warn's lines while in use: (event, args)."""

    def __enter__(self):
        self.lines = []
        self._warn = log.warn
        log.warn = lambda event, *args: self.lines.append((event, args))
        return self.lines

    def __exit__(self, *exc):
        log.warn = self._warn


GOOD = {"version": "9.0.0+1", "kind": "app", "size": 4096, "chunk": 4096, "digest": "ab" * 32}


def _with(**fields):
    a = dict(GOOD)
    for name, value in fields.items():
        if value is KeyError:
            del a[name]
        else:
            a[name] = value
    return json.dumps(a)


def _malformed():
    """Announcements to refuse, one at a time (the heap holds one)."""
    yield b"[" * 6000  # nested beyond the heap, were it parsed
    yield from (b"", b"null", b"[]", b"1", b'"app"', b"\xff\xfe{", b"{",
                b"[" * 250 + b"]" * 250, b'{"version": "9.0.0", "version": 5}' + b" " * 600)
    for name in ("version", "kind", "size", "chunk", "digest"):
        for value in (None, True, False, 0, -1, 1.5, 2 ** 70, [], [1], {}, {"a": 1}, "",
                      "x" * 300, KeyError):
            yield _with(**{name: value})
    for version in ("9", "9.0", "9.0.0.0", "9.0.0+", "+9.0.0", "9.0.-1", " 9.0.0", "9.0.0 ",
                    "9_0.0.0", "9.0.0+-1", "256.0.0", "9.65536.0", "9.0.0+4294967296",
                    "9.0.0+1+2", "9.0.0\u0000", "9.0.\u0660", "0x9.0.0", "9.0.0+1e3",
                    "9.0.0.0+1", "9..0", "09999999999.0.0"):
        yield _with(version=version)
    for kind in ("App", "apps", "firmware ", 1, 2, ["app"]):
        yield _with(kind=kind)
    for size in (0, 4096.0, "4096", 10 ** 9, True):
        yield _with(size=size)
    for chunk in (255, 8193, 4096.0, "4096", True):
        yield _with(chunk=chunk)
    for digest in ("ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, "ab " * 21 + "a",
                   "ab" * 31 + "\u00e9a", ["ab"] * 64, 0xAB):
        yield _with(digest=digest)
    yield _with(extra="x" * 300)  # unknown fields, small or large
    yield _with(note=1)


def test_every_malformed_announcement_is_refused_with_a_reason_and_never_raises():
    _, _, link, up = _device()
    n = 0
    for message in _malformed():
        with Warnings() as lines:
            link.announce(message)  # nothing may raise out of the MQTT callback
        assert up.offer is None, (n, message[:60])
        assert len(lines) == 1 and lines[0][0] == "update-announcement-refused", (n, lines)
        assert sum(len(str(a)) for a in lines[0][1]) < 100, (n, lines)  # a reason, not a dump
        n += 1
    assert n > 100
    link.announce(json.dumps(GOOD).encode())  # the same path takes a good one
    assert up.offer == {"version": "9.0.0+1", "kind": image.KIND_APP, "size": 4096,
                        "chunk": 4096, "digest": "ab" * 32}


def test_an_announced_version_is_a_hint_only_and_must_be_well_formed():
    _, inst, link, up = _device()
    link.announce(_with(version="0.1.0"))  # not newer by its own word: not fetched
    assert up.offer is None
    for good in ("1.2.3", "255.255.65535+4294967295", "0.0.0+0"):
        updater.check_version(good)
    assert install.version_tuple("255.255.65535+4294967295") == (255, 255, 65535, 0xFFFFFFFF)
    # what the verifier is given to compare the signed version with: the running one
    inst.app_version = "1.2.3"
    verifier = inst.begin(image.KIND_APP, install.NullSink())
    assert verifier._above == (1, 2, 3, 0) and verifier._kind == image.KIND_APP


def test_a_security_counter_beyond_what_nvs_stores_is_never_written():
    counters = install.Counters(NVS())
    counters.raise_to(image.KIND_APP, 7)
    for too_big in (1 << 31, (1 << 32) - 1):
        counters.raise_to(image.KIND_APP, too_big)  # esp32.NVS.set_i32 would raise
        assert counters.value(image.KIND_APP) == (1 << 31) - 1
    assert image.MAX_COUNTER == 0x7FFFFFFF  # what the verifier lets through


def _garbage(link, up, n, size=64):
    """A new image under a new digest, announced as the next version."""
    digest = hexlify(hashlib.sha256(b"garbage %d" % n).digest()).decode()
    link.retained = {"updates/sim/%s/0" % digest[:16]: bytes(size)}  # no MCUboot magic
    link.announce(json.dumps({"version": "9.%d.0" % (n % 200), "kind": "app", "size": size,
                              "chunk": 4096, "digest": digest}))
    return digest


def test_endless_new_garbage_images_cost_a_bounded_number_of_downloads():
    board, inst, link, up = _device()
    pauses = []
    with Warnings() as lines:
        for minute in range(2 * 24 * 60):  # two days; a new image every minute
            if minute == 12 * 60:  # a reboot: the pause is in the boot record
                board, inst, link2, up = _device(board)
                link2.fetches = link.fetches
                link = link2
            board.now += 60
            digest = _garbage(link, up, minute)
            up.service(board.ticks_ms() + 1000)
            assert not inst.refused_before(digest)  # unsigned: its digest proves nothing
        pauses = [a[0] for e, a in lines if e == "update-pause"]
    # 1440 a day before; now a dozen on the first day, then one a day
    assert 10 <= link.fetches <= 16, link.fetches
    assert pauses[:4] == [60, 120, 240, 480] and max(pauses) == DAY, pauses
    assert "refused" not in inst.record.data or not inst.record.data["refused"]
    assert 0 < inst.backoff_left() <= DAY
    board.now -= 365 * DAY  # the clock went back a year: still a day at most
    assert inst.backoff_left() == DAY


def test_refused_signed_digests_stay_listed_boundedly_and_a_confirmed_image_ends_the_pause():
    board, inst, link, up = _device()
    digests = [hexlify(bytes([i]) * 32).decode() for i in range(20)]
    for d in digests:
        inst.note_refused(d, True)
    listed = inst.record.data["refused"]
    assert listed == digests[-install.REFUSED_KEEP:], listed
    assert inst.refused_before(digests[-1]) and not inst.refused_before(digests[0])
    assert inst.backoff_left() == DAY
    inst.record.set_boot("a", {"kind": "app", "version": "9.0.0+0", "counter": 4,
                               "digest": "cd" * 32})
    inst.record.boot()  # the new image runs on trial and reaches the broker
    events = inst.confirm()
    assert events and events[0][0] == "installed", events
    assert inst.backoff_left() == 0 and install.Installer(
        board, inst.trust, inst.counters).backoff_left() == 0
    assert inst.note_refused("ef" * 32, False) == 0  # the first refusal after it: no pause
