# Streaming verification of MCUboot images (MCUboot docs/design.md, "Image
# format"), as `imgtool sign` writes them with an Ed25519 key:
#
#   header      32 bytes parsed (magic 0x96f3b83d, load address, header size,
#               protected TLV size, image size, flags, version), padded to
#               the header size
#   payload     image size bytes: what goes into the slot
#   protected   TLV area, magic 0x6908: security counter (0x50), class UUID
#               (0x75), optional vendor UUID (0x74), payload kind (0xa0, ours)
#   TLV area    magic 0x6907: SHA-256 (0x10), KEYHASH (0x01), ED25519 (0x24)
#
# The SHA-256 covers header, payload and protected TLVs; the Ed25519
# signature covers that digest (imgtool's default, not pure mode). All
# integers are little-endian; a TLV is type u16, length u16, value.
#
# Bytes arrive in chunks of any size. Memory does not depend on the image
# size: the payload passes straight to the sink, only the TLV areas (at
# most MAX_TLV_AREA bytes each) are kept. Every length is checked before it
# is used, and nothing is trusted before the signature has been checked.
#
# What the device acts on (version, security counter, kind) comes from the
# signed image only, never from the unsigned announcement: the version must
# exceed the running one of its kind, the counter must not fall below the
# stored one and must fit the signed 32-bit NVS value it is kept in.
import hashlib
import struct

from micropython import const

IMAGE_MAGIC = const(0x96F3B83D)
PROT_MAGIC = const(0x6908)
TLV_MAGIC = const(0x6907)
HEADER_LEN = const(32)
MAX_HEADER = const(1024)
MAX_TLV_AREA = const(1024)

TLV_KEYHASH = const(0x01)
TLV_SHA256 = const(0x10)
TLV_ED25519 = const(0x24)
TLV_SEC_CNT = const(0x50)
TLV_VID = const(0x74)
TLV_CID = const(0x75)
TLV_KIND = const(0xA0)  # wearsafe's own: what the payload is
# The device keeps a security counter with esp32.NVS.set_i32, which raises
# OverflowError from 2**31 on: a signed counter above this would be accepted,
# installed, then raise at its confirmation on every boot (a reboot loop).
MAX_COUNTER = const(0x7FFFFFFF)

KIND_FIRMWARE = const(1)  # a MicroPython firmware for the inactive OTA partition
KIND_APP = const(2)  # the application's files (a ustar archive)
KINDS = {KIND_FIRMWARE: "firmware", KIND_APP: "app"}
KIND_BY_NAME = {"firmware": KIND_FIRMWARE, "app": KIND_APP}

# type: (required length, required); anything else in an area is refused
PROTECTED = {TLV_SEC_CNT: (4, True), TLV_CID: (16, True), TLV_VID: (16, False),
              TLV_KIND: (1, True)}
UNPROTECTED = {TLV_SHA256: (32, True), TLV_KEYHASH: (32, True), TLV_ED25519: (64, True)}

_HEADER, _HEADER_PAD, _PAYLOAD, _PROT, _TLV_INFO, _TLVS, _DONE = range(7)


class ImageError(Exception):
    """The image is refused; the subclass says why, the message what was found."""


class BadMagic(ImageError):
    pass


class BadHeader(ImageError):
    pass


class TooLarge(ImageError):
    pass


class Truncated(ImageError):
    pass


class TrailingData(ImageError):
    pass


class BadTlv(ImageError):
    pass


class MissingTlv(ImageError):
    pass


class DuplicateTlv(ImageError):
    pass


class DigestMismatch(ImageError):
    pass


class UnknownKey(ImageError):
    pass


class BadSignature(ImageError):
    pass


class WrongClass(ImageError):
    pass


class UnknownKind(ImageError):
    pass


class WrongKind(ImageError):
    pass


class Rollback(ImageError):
    pass


class BadCounter(ImageError):
    """A signed security counter the device cannot store (2**31 or more)."""


class Downgrade(ImageError):
    """The signed version is not above the running version of its kind."""


class RevokedKey(ImageError):
    """Signed with a key the trust file revokes."""


class Image:
    """What a verified image declares."""

    def __init__(self, version, counter, kind, size, digest):
        self.version = version  # "major.minor.revision+build"
        self.counter = counter  # its security counter
        self.kind = kind  # KIND_FIRMWARE or KIND_APP
        self.size = size  # payload bytes
        self.digest = digest  # the signed SHA-256

    def __repr__(self):
        return "<Image %s %s counter %d>" % (KINDS[self.kind], self.version, self.counter)


def parse_tlvs(area, magic, rules, name):
    """{type: value} of a TLV area (info header included), every rule enforced."""
    if len(area) < 4:
        raise Truncated("%s TLV area: %d bytes, less than its 4-byte header" % (name, len(area)))
    got_magic, total = struct.unpack_from("<HH", area, 0)
    if got_magic != magic:
        raise BadMagic("%s TLV area: magic 0x%04x, expected 0x%04x" % (name, got_magic, magic))
    if total != len(area):
        raise BadTlv("%s TLV area declares %d bytes, holds %d" % (name, total, len(area)))
    found = {}
    pos = 4
    while pos < total:
        if total - pos < 4:
            raise BadTlv("%s TLV area: %d stray bytes at its end" % (name, total - pos))
        kind, length = struct.unpack_from("<HH", area, pos)
        pos += 4
        if length > total - pos:
            raise BadTlv("%s TLV 0x%02x: length %d runs past the area's end"
                         % (name, kind, length))
        rule = rules.get(kind)
        if rule is None:
            raise BadTlv("%s TLV area: unexpected TLV type 0x%02x" % (name, kind))
        if length != rule[0]:
            raise BadTlv("%s TLV 0x%02x: length %d, expected %d" % (name, kind, length, rule[0]))
        if kind in found:
            raise DuplicateTlv("%s TLV 0x%02x appears twice" % (name, kind))
        found[kind] = bytes(area[pos:pos + length])
        pos += length
    for kind in rules:
        if rules[kind][1] and kind not in found:
            raise MissingTlv("%s TLV 0x%02x is missing" % (name, kind))
    return found


class Verifier:
    """Feed an image's bytes in order; finish() returns the Image or raises.

    trust: {"class_id": 16 bytes, "keys": [SubjectPublicKeyInfo DER, ...]}
    sink: write(payload bytes) in order, at most `capacity` bytes in all
    min_counter: the device's stored security counter
    kind: the payload kind the sink is for (None: any known kind)
    above: the running version of that kind, (major, minor, revision, build): the
        signed version must be greater (None: not checked, e.g. a fuzz harness)
    After finish() has checked the signature, `signed` is True, `digest` the image's
    signed SHA-256 and `version` its signed version, whatever a later check decides.
    """

    def __init__(self, trust, sink, capacity, min_counter, kind=None, above=None):
        self._trust = trust
        self.sink = sink
        self._capacity = capacity
        self._min_counter = min_counter
        self._kind = kind
        self._above = above
        self.signed = False  # then digest and version (the header's, as text) are set
        self._sha = hashlib.sha256()
        self._stage = _HEADER
        self._want = HEADER_LEN  # bytes still due in this stage
        self._buf = bytearray(MAX_TLV_AREA)  # header, then each TLV area
        self._have = 0
        self.received = 0

    def feed(self, data):
        data = memoryview(data)
        self.received += len(data)
        while data:
            if self._stage == _DONE:
                raise TrailingData("%d bytes after the end of the image's TLV area" % len(data))
            n = min(len(data), self._want)
            part = data[:n]
            data = data[n:]
            self._want -= n
            if self._stage == _PAYLOAD:
                self._sha.update(part)
                self.sink.write(part)
            elif self._stage == _HEADER_PAD:
                self._sha.update(part)
            else:
                self._buf[self._have:self._have + n] = part
                self._have += n
            if self._want == 0:
                self._next_stage()

    def _next_stage(self):
        stage = self._stage
        area = memoryview(self._buf)[:self._have]
        if stage == _HEADER:
            self._sha.update(area)
            self._header(area)
        elif stage == _HEADER_PAD:
            self._enter(_PAYLOAD, self._img_size)
        elif stage == _PAYLOAD:
            self._enter(_PROT, self._prot_size)
        elif stage == _PROT:
            self._sha.update(area)
            self._protected = parse_tlvs(area, PROT_MAGIC, PROTECTED, "protected")
            self._enter(_TLV_INFO, 4)
        elif stage == _TLV_INFO:
            magic, total = struct.unpack_from("<HH", area, 0)
            if magic != TLV_MAGIC:
                raise BadMagic("TLV area: magic 0x%04x, expected 0x%04x" % (magic, TLV_MAGIC))
            if not 4 < total <= MAX_TLV_AREA:
                raise BadTlv("TLV area declares %d bytes (5..%d)" % (total, MAX_TLV_AREA))
            self._stage, self._want = _TLVS, total - 4  # parse_tlvs reads the info too
        else:
            self._tlvs = parse_tlvs(area, TLV_MAGIC, UNPROTECTED, "unprotected")
            self._stage = _DONE

    def _enter(self, stage, want):
        self._stage, self._want, self._have = stage, want, 0
        if want == 0:
            if stage == _PROT:
                raise MissingTlv("the image has no protected TLV area (security counter, class)")
            self._next_stage()

    def _header(self, h):
        magic, _, hdr_size, prot_size, img_size, flags = struct.unpack_from("<IIHHII", h, 0)
        if magic != IMAGE_MAGIC:
            raise BadMagic("not an MCUboot image: magic 0x%08x, expected 0x%08x"
                           % (magic, IMAGE_MAGIC))
        if not HEADER_LEN <= hdr_size <= MAX_HEADER:
            raise BadHeader("header size %d is outside %d..%d" % (hdr_size, HEADER_LEN, MAX_HEADER))
        if flags:
            raise BadHeader("header flags 0x%x: encrypted, compressed, RAM-load or non-bootable "
                            "images are not supported" % flags)
        if img_size > self._capacity:
            raise TooLarge("payload of %d bytes does not fit the %d-byte slot"
                           % (img_size, self._capacity))
        if prot_size > MAX_TLV_AREA:
            raise BadHeader("protected TLV area of %d bytes (at most %d)"
                            % (prot_size, MAX_TLV_AREA))
        major, minor, revision, build = struct.unpack_from("<BBHI", h, 20)
        self._version_t = (major, minor, revision, build)
        self._img_size, self._prot_size = img_size, prot_size
        self._enter(_HEADER_PAD, hdr_size - HEADER_LEN)

    def finish(self):
        """Every check, in order; the Image when all pass. Reads nothing more."""
        if self._stage != _DONE:
            raise Truncated("the image ends early (%d bytes received)" % self.received)
        digest = self._sha.digest()
        tlvs, prot = self._tlvs, self._protected
        if tlvs[TLV_SHA256] != digest:
            raise DigestMismatch("SHA-256 of header, payload and protected TLVs does not match")
        key = self._key(tlvs[TLV_KEYHASH])
        from wearsafe.crypto import ed25519  # loaded when an image is complete, not before

        if not ed25519.verify(key, digest, tlvs[TLV_ED25519]):
            raise BadSignature("the Ed25519 signature does not verify with the trusted key")
        # from here on the image is the release key's: what it declares is trusted
        self.signed, self.digest = True, digest
        self.version = "%d.%d.%d+%d" % self._version_t
        if prot[TLV_CID] != self._trust["class_id"]:
            raise WrongClass("the image is for another board class (class UUID %s)"
                             % prot[TLV_CID].hex())
        kind = prot[TLV_KIND][0]
        if kind not in KINDS:
            raise UnknownKind("unknown payload kind %d" % kind)
        if self._kind is not None and kind != self._kind:
            raise WrongKind("a %s image where a %s image was announced"
                            % (KINDS[kind], KINDS[self._kind]))
        counter = struct.unpack("<I", prot[TLV_SEC_CNT])[0]
        if counter > MAX_COUNTER:
            raise BadCounter("security counter %d is beyond %d, the most the device stores"
                             % (counter, MAX_COUNTER))
        if counter < self._min_counter:
            raise Rollback("security counter %d is below the device's %d"
                           % (counter, self._min_counter))
        above = self._above
        if above is not None and self._version_t <= above:
            raise Downgrade("signed version %s is not above the running %d.%d.%d+%d"
                            % (self.version, above[0], above[1], above[2], above[3]))
        return Image(self.version, counter, kind, self._img_size, digest)

    def _key(self, keyhash):
        if keyhash in self._trust.get("revoked", ()):
            raise RevokedKey("signed with a revoked key (KEYHASH %s)" % keyhash[:8].hex())
        for spki in self._trust["keys"]:
            if hashlib.sha256(spki).digest() == keyhash:
                return spki[-32:]  # an Ed25519 SPKI ends with the raw key
        raise UnknownKey("signed with a key this device does not trust (KEYHASH %s)"
                         % keyhash[:8].hex())
