# Installing a verified image. The payload streams into a place the running
# device never boots from (the inactive firmware partition, or a staging
# file for an application bundle) while the verifier hashes it; only when
# every check has passed does anything change what boots next:
#   firmware  the partition is selected (esp32.Partition.set_boot)
#   app       the bundle is unpacked into the inactive app slot, then the
#             boot record selects it (one rename)
# The stored security counter is raised only when the new image confirms.
import os

from micropython import const

import bootsel
from wearsafe import realtime
from wearsafe.ota import image

APP_CAPACITY = const(512 * 1024)  # largest application bundle
_BLOCK = const(4096)  # esp32.Partition block size
MAX_TRIALS = const(3)  # an image rolled back this many times is not installed again
# Refusals. Anyone who can write updates/<class>/ (a broker slip, a stolen release
# identity) can publish images without end, each under a new digest: a list of
# refused digests alone would let that attacker decide how many images the device
# downloads and writes to flash (wear, battery, air time). So every refusal also
# starts a pause in which no image is fetched at all: none after the first refusal
# (a release slip followed by its fix costs nothing), then BACKOFF_S, doubling
# with each further refusal up to BACKOFF_MAX_S; it is kept in the boot record
# (a reboot does not end it) and only an installed and confirmed image resets it:
# at most about a dozen downloads in the first day, then one a day, whatever is
# published. The digest list holds only images refused after their signature
# verified (the release key's own, e.g. an old version replayed): garbage cannot
# push them out of it, and an image refused before its signature was checked is
# not listed, since its digest is only what the announcement claims, maybe that
# of a genuine image whose chunks were tampered with.
REFUSED_KEEP = const(8)
BACKOFF_S = const(60)
BACKOFF_MAX_S = const(86400)


class UpdateError(Exception):
    pass


def version_tuple(text):
    """(major, minor, revision, build) of "1.2.3+4" or "1.2.3"; ValueError otherwise.
    For versions the device holds (its own, a signed header's); an announcement's
    is checked more strictly first (updater.parse_announcement)."""
    main, _, build = text.partition("+")
    parts = [int(p) for p in main.split(".")]
    if len(parts) != 3:
        raise ValueError("not MAJOR.MINOR.REVISION[+BUILD]")
    return (parts[0], parts[1], parts[2], int(build or 0))


NEEDS_OTA = ("firmware updates need the OTA variant of MicroPython (ESP32_GENERIC, variant "
             "OTA): this firmware has no second app slot; application updates still work")


def load_trust(path):
    """The update trust anchors the device was provisioned with (wearsafe.ota.trust):
    {"class", "class_id", "keys": [SPKI DER, ...], "revoked": [SHA-256 of an SPKI, ...]};
    UpdateError when the file is missing or refused."""
    import gc
    import sys

    import wearsafe.ota
    from wearsafe.ota import trust

    try:
        return trust.load(path)
    finally:
        # Read once at boot: its code does not stay in the heap for the whole run,
        # and is collected at once, so that what the device allocates for good next
        # fills its room instead of leaving a hole there (an update's 8 KiB chunk
        # needs that much in one piece).
        del sys.modules["wearsafe.ota.trust"]
        delattr(wearsafe.ota, "trust")
        gc.collect()


class Counters:
    """Anti-rollback security counters in NVS, one per payload kind (as MCUboot
    keeps one per image); each only ever goes up."""

    def __init__(self, nvs):
        self._nvs = nvs

    def value(self, kind):
        try:
            return self._nvs.get_i32("sc_" + image.KINDS[kind])
        except OSError:
            return 0

    def raise_to(self, kind, n):
        # The verifier refuses counters beyond MAX_COUNTER; an image confirmed from a
        # record an older firmware wrote may still carry one: set_i32 would raise at
        # every boot (a reboot loop), so it is stored as the largest value NVS holds.
        n = min(n, image.MAX_COUNTER)
        if n > self.value(kind):
            self._nvs.set_i32("sc_" + image.KINDS[kind], n)
            self._nvs.commit()


class _PartitionSink:
    """Payload bytes into an esp32.Partition, a block at a time."""

    def __init__(self, partition):
        self.partition = partition
        self._block = bytearray(_BLOCK)
        self._fill = 0
        self._index = 0

    def write(self, data):
        while data:
            n = min(len(data), _BLOCK - self._fill)
            self._block[self._fill:self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == _BLOCK:
                self._flush()

    def _flush(self):
        for i in range(self._fill, _BLOCK):
            self._block[i] = 0xFF  # erased flash
        self.partition.writeblocks(self._index, self._block)
        self._index += 1
        self._fill = 0
        realtime.service()  # an erase and a write: tens of ms on the chip

    def close(self):
        if self._fill:
            self._flush()


class _FileSink:
    def __init__(self, path):
        self.path = path
        self._f = open(path, "wb")

    def write(self, data):
        self._f.write(data)

    def close(self):
        self._f.close()


def remove_tree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = bootsel.join(path, entry[0])
        if entry[1] == 0x4000:
            remove_tree(child)
        else:
            os.remove(child)
    os.rmdir(path)


def _safe_name(name):
    if not name or name.startswith("/") or len(name) > 200:
        return False
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return False
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "._-/"):
            return False
    return True


def unpack_ustar(archive, into):
    """Regular files and directories of a ustar archive into `into`; names checked."""
    try:
        _unpack(archive, into)
    except (ValueError, UnicodeError):
        raise UpdateError("app bundle: not a ustar archive")
    except OSError as e:
        raise UpdateError("app bundle: cannot unpack into %s: %s" % (into, e))


def _unpack(archive, into):
    header = bytearray(512)
    block = bytearray(512)
    with open(archive, "rb") as f:
        while f.readinto(header) == 512 and any(header):
            name = bytes(header[:100]).split(b"\0")[0].decode()
            prefix = bytes(header[345:500]).split(b"\0")[0].decode()
            if prefix:
                name = prefix + "/" + name
            name = name.rstrip("/")
            size = int(bytes(header[124:136]).split(b"\0")[0].strip() or b"0", 8)
            kind = header[156]
            if not _safe_name(name):
                raise UpdateError("app bundle: refused file name %r" % name)
            path = bootsel.join(into, name)
            if kind == 0x35:  # '5' directory
                _mkdirs(path)
            elif kind in (0x30, 0):  # '0' regular file
                if "/" in name:
                    _mkdirs(path[:path.rindex("/")])
                with open(path, "wb") as out:
                    left = size
                    while left > 0:
                        if f.readinto(block) != 512:
                            raise UpdateError("app bundle: %s is cut short" % name)
                        out.write(block if left >= 512 else memoryview(block)[:left])
                        left -= 512
            else:
                raise UpdateError("app bundle: %s is not a file or directory" % name)


def _mkdirs(path):
    built = ""
    for part in path.split("/"):
        built = built + "/" + part if built or path.startswith("/") else part
        try:
            os.mkdir(built)
        except OSError:
            pass  # exists


class Installer:
    """Verify-and-stage, then commit: the device's one way to a new image."""

    def __init__(self, board, trust, counters):
        self.board = board
        self.trust = trust
        self.counters = counters
        self.state = board.state_dir()
        self.record = bootsel.BootRecord(bootsel.join(self.state, bootsel.RECORD))
        self.app_version = None  # None: wearsafe.VERSION, the running application's

    def capacity(self, kind):
        if kind == image.KIND_FIRMWARE:
            part = self._firmware_slot()
            return part.ioctl(4, 0) * part.ioctl(5, 0)
        if kind == image.KIND_APP:
            return APP_CAPACITY
        raise image.UnknownKind("unknown payload kind %r" % kind)

    def _firmware_slot(self):
        """The OTA slot the running firmware does not boot from; UpdateError without one."""
        part = self.board.next_firmware_slot()
        if part is None:
            raise UpdateError(NEEDS_OTA)
        return part

    def running_version(self, kind):
        """The running version of `kind` ("x.y.z[+b]"): a signed image's must be greater."""
        if kind == image.KIND_FIRMWARE:
            return self.firmware_version()
        if self.app_version is None:
            from wearsafe import VERSION  # the running application's own

            return VERSION
        return self.app_version

    def begin(self, kind, sink=None):
        """A Verifier whose payload goes to the staging place for `kind` (or `sink`)."""
        capacity = self.capacity(kind)
        try:
            above = version_tuple(self.running_version(kind))
        except (ValueError, AttributeError):
            raise UpdateError("the running %s version is unreadable" % image.KINDS[kind])
        if sink is None and kind == image.KIND_FIRMWARE:
            sink = _PartitionSink(self._firmware_slot())
        elif sink is None:
            _mkdirs(bootsel.join(self.state, "apps"))
            sink = _FileSink(bootsel.join(self.state, "apps", "staging.tar"))
        return image.Verifier(self.trust, sink, capacity, self.counters.value(kind), kind,
                              above)

    def abort(self, verifier):
        """After a refusal: close the staging place; nothing boots from it."""
        verifier.sink.close()

    def commit(self, verifier, digest=None):
        """Finish the checks; when they all pass, select the image for the next boot."""
        verifier.sink.close()
        img = verifier.finish()
        if digest is not None and img.digest != digest:
            raise image.DigestMismatch("the image is not the one announced")
        info = {"kind": image.KINDS[img.kind], "version": img.version,
                "counter": img.counter, "digest": img.digest.hex()}
        if img.kind == image.KIND_APP:
            staging = verifier.sink.path
            slot = self.record.inactive(bootsel.APP_SLOTS)
            target = bootsel.join(self.state, "apps", slot)
            remove_tree(target)
            _mkdirs(target)
            unpack_ustar(staging, target)
            os.remove(staging)
            self.record.set_boot(slot, info)
        else:
            info["slot"] = verifier.sink.partition.info()[4]
            self.record.data["firmware_trial"] = info  # first: a cut before set_boot is safe
            self.record.save()
            try:
                verifier.sink.partition.set_boot()
            except OSError as e:  # ESP-IDF validates the app image first
                self.record.take("firmware_trial")
                raise UpdateError("the bootloader refused the image in %s (%s): the payload "
                                  "must be the app image of the OTA build (micropython.bin), "
                                  "not the combined firmware file" % (info["slot"], e))
        return img

    def firmware_on_trial(self):
        """A new firmware runs on trial: the bootloader rolls it back unless confirmed."""
        trial = self.record.data.get("firmware_trial")
        return trial is not None and self.board.running_firmware_slot() == trial["slot"]

    def firmware_version(self):
        """The running firmware's version: a trial's own, else the last one confirmed."""
        if self.firmware_on_trial():
            return self.record.data["firmware_trial"]["version"]
        return self.record.data.get("firmware_version", "0.0.0")

    def confirm(self):
        """The running image reached the broker: keep it. [(event, info), ...] to report."""
        events = []
        rolled = self.record.take("rolled_back")
        if rolled:
            events.append(("rolled-back", rolled))
        info = self.record.confirm() or self.record.data.get("confirmed")
        if info:  # also one confirmed before a power cut stopped the counter's raise
            events.append(("installed", info))
        self.board.confirm_firmware()  # whatever firmware runs has now reached the broker
        fw = self.record.take("firmware_trial")
        if fw:
            running = self.board.running_firmware_slot() == fw["slot"]
            events.append(("installed" if running else "rolled-back", fw))
        for event, info in events:
            if event == "installed":
                self.record.take("backoff")  # a signed image works: refusals start over
                kind = image.KIND_BY_NAME[info["kind"]]
                self.counters.raise_to(kind, info["counter"])
                if kind == image.KIND_FIRMWARE:
                    self.record.data["firmware_version"] = info["version"]
                    self.record.save()
            elif info["kind"] == "firmware":  # the ESP-IDF bootloader rolled it back
                self.record.count_rollback(info)
                self.record.save()
        self.record.take("confirmed")  # the counters are up: done
        return events

    def refused_before(self, digest_hex):
        """Refused once after its signature verified, or rolled back MAX_TRIALS times:
        never again."""
        return digest_hex in self.record.data.get("refused", ()) or \
            self.record.rollbacks(digest_hex) >= MAX_TRIALS

    def note_refused(self, digest_hex, signed):
        """An image was refused: list its digest if `signed` (its signature verified and
        it is the image announced), and pause every download (see REFUSED_KEEP)."""
        data = self.record.data
        if signed:
            refused = data.get("refused", [])
            if digest_hex not in refused:
                refused = refused[-(REFUSED_KEEP - 1):] + [digest_hex]
            data["refused"] = refused
        n = self._backoff()[0] + 1
        pause = 0 if n < 2 else min(BACKOFF_S << min(n - 2, 16), BACKOFF_MAX_S)
        data["backoff"] = [n, self.board.epoch_s() + pause]
        self.record.save()
        return pause

    def _backoff(self):
        """(refusals since the last image confirmed, epoch seconds until a download may start)."""
        value = self.record.data.get("backoff")
        if isinstance(value, list) and len(value) == 2 and type(value[0]) is int and \
                type(value[1]) is int:
            return value
        return [0, 0]

    def backoff_left(self):
        """Seconds before the next download may start (0: now)."""
        n, until = self._backoff()
        left = until - self.board.epoch_s()
        if left > BACKOFF_MAX_S:  # the clock went back: never longer than the cap
            self.record.data["backoff"] = [n, self.board.epoch_s() + BACKOFF_MAX_S]
            self.record.save()
            left = BACKOFF_MAX_S
        return max(left, 0)


class NullSink:
    """Checking only: the payload goes nowhere."""

    def write(self, data):
        pass

    def close(self):
        pass


def feed_file(verifier, path, chunk=4096):
    buf = bytearray(chunk)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return
            verifier.feed(memoryview(buf)[:n])


def peek_kind(path):
    """The payload kind an image file declares (unverified: it only picks the slot)."""
    import struct

    with open(path, "rb") as f:
        header = f.read(image.HEADER_LEN)
        if len(header) < image.HEADER_LEN:
            raise image.Truncated("%s is shorter than an MCUboot header" % path)
        magic, _, hdr_size, prot_size, img_size = struct.unpack_from("<IIHHI", header, 0)
        if magic != image.IMAGE_MAGIC:
            raise image.BadMagic("%s is not an MCUboot image" % path)
        if prot_size > image.MAX_TLV_AREA:
            raise image.BadHeader("protected TLV area of %d bytes" % prot_size)
        f.seek(hdr_size + img_size)
        area = f.read(prot_size)
    found = image.parse_tlvs(area, image.PROT_MAGIC, image.PROTECTED, "protected")
    return found[image.TLV_KIND][0]


def run_file(installer, path, kind=None, check_only=False):
    """Verify an image file and, unless check_only, install it; the Image or ImageError."""
    if kind is None:
        kind = peek_kind(path)
    verifier = installer.begin(kind, NullSink() if check_only else None)
    try:
        feed_file(verifier, path)
    except Exception:
        installer.abort(verifier)
        raise
    if check_only:
        return verifier.finish()
    try:
        return installer.commit(verifier)
    except Exception:
        installer.abort(verifier)
        raise
