# Updates over the device's own TLS MQTT session. The release tool publishes,
# retained, on updates/<class>/:
#   announce            JSON {"version", "kind", "size", "chunk", "digest"}
#   <digest16>/<n>      the image, `chunk` bytes per message
# The device fetches the chunks one by one (subscribe, take the retained
# message, unsubscribe), as many as its share of each second allows, feeding
# the streaming verifier; a dropped link resumes at the chunk it was
# fetching. The announcement is not trusted: anyone who can write
# updates/<class>/ can put any bytes there, retained, and the device reads it
# at every connect. It is checked field by field (parse_announcement) and only
# says what to fetch and whether it may be worth it: version, counter and kind
# come from the signed image (image.Verifier), which must be newer than what
# runs. Nothing in it can raise out of the MQTT callback. Refusals are
# remembered and pause further downloads (install.REFUSED_KEEP says why).
import json

from micropython import const

from wearsafe import log
from wearsafe.link import LinkError
from wearsafe.ota import image
from wearsafe.ota.install import UpdateError, version_tuple

CHUNKS_PER_SERVICE = const(8)
# What the release tool publishes is about 150 bytes; anything longer is refused
# before it is parsed (a deeply nested JSON array would exhaust the heap).
MAX_ANNOUNCEMENT = const(512)
FIELDS = ["chunk", "digest", "kind", "size", "version"]  # sorted
VERSION_MAX = (255, 255, 65535, 0xFFFFFFFF)  # MCUboot's header: u8, u8, u16, u32
BAD_VERSION = "version is not MAJOR.MINOR.REVISION[+BUILD] in MCUboot's ranges"


def parse_announcement(message, capacity_of):
    """{"version", "kind", "size", "chunk", "digest"}, each checked for its type and
    range; ValueError with a short reason (never the value) for anything else.
    capacity_of(kind) may raise UpdateError (no slot for that kind on this device)."""
    if len(message) > MAX_ANNOUNCEMENT:
        raise ValueError("longer than %d bytes" % MAX_ANNOUNCEMENT)
    try:
        a = json.loads(message)
        fields = sorted(a) if type(a) is dict else None
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        fields = None
    if fields != FIELDS:
        raise ValueError("not a JSON object of exactly version, kind, size, chunk, digest")
    check_version(a["version"])
    kind, size, chunk, digest = a["kind"], a["size"], a["chunk"], a["digest"]
    if type(kind) is not str or kind not in image.KIND_BY_NAME:
        raise ValueError("kind is not firmware or app")
    kind = image.KIND_BY_NAME[kind]
    if type(chunk) is not int or not 256 <= chunk <= 8192:  # bool and float are not int
        raise ValueError("chunk is not an integer 256..8192")
    limit = capacity_of(kind) + image.MAX_HEADER + 2 * image.MAX_TLV_AREA
    if type(size) is not int or not 0 < size <= limit:
        raise ValueError("size is not an integer up to the slot's")
    if type(digest) is not str or len(digest) != 64:
        raise ValueError("digest is not 64 lower-case hex digits")
    for c in digest:
        if c not in "0123456789abcdef":
            raise ValueError("digest is not 64 lower-case hex digits")
    a["kind"] = kind
    return a


def check_version(text):
    """ValueError unless `text` is MAJOR.MINOR.REVISION[+BUILD], decimal digits only,
    each part within its MCUboot header field."""
    if type(text) is not str or not 5 <= len(text) <= 24 or text.strip("0123456789.+") \
            or text[-1] == "+":
        raise ValueError(BAD_VERSION)
    try:
        n = version_tuple(text)
    except ValueError:
        raise ValueError(BAD_VERSION)
    for i in range(4):
        if n[i] > VERSION_MAX[i]:
            raise ValueError(BAD_VERSION)


class Updater:
    def __init__(self, link, installer, board, running_versions):
        self.link = link
        self.installer = installer
        self.board = board
        self.running = running_versions  # {kind: "x.y.z+b"}
        self.base = "updates/%s/" % installer.trust["class"]
        self.offer = None
        self._job = None  # (offer, verifier, next chunk)
        self.reports = []  # (event, info) for the application to seal and send
        self._unavailable = None  # why updates of a kind cannot install, said once
        link.listen(self.base + "announce", self._announced)

    def _announced(self, topic, message):
        # the MQTT callback: whatever the broker sent, nothing raises out of it (an
        # exception here would reset the device, and the retained message comes
        # back at every connect)
        try:
            self._consider(message)
        except Exception as e:  # noqa: BLE001 - e.g. MemoryError: the device must go on
            log.warn("update-announcement-refused", type(e).__name__)

    def _consider(self, message):
        try:
            offer = parse_announcement(message, self.installer.capacity)
        except UpdateError as e:  # e.g. a firmware update on the stock image
            if str(e) != self._unavailable:
                self._unavailable = str(e)
                log.warn("update-unavailable", e)
            return
        except ValueError as e:
            log.warn("update-announcement-refused", e)
            return
        # a hint only: not newer by its own word, not worth fetching; the signed
        # version decides once the image is in (image.Downgrade)
        current = self.running.get(offer["kind"], "0.0.0")
        if version_tuple(offer["version"]) <= version_tuple(current):
            return
        if self.installer.refused_before(offer["digest"]):
            return
        if self._job is None or self._job[0]["digest"] != offer["digest"]:
            self.offer = offer

    @property
    def busy(self):
        """An image is downloading: the upload window stays open for it."""
        return self._job is not None

    def service(self, until):
        """Fetch and verify chunks until `until` (ticks; at most CHUNKS_PER_SERVICE);
        install and reset when the image is complete."""
        if self._job is None:
            if self.offer is None or self.installer.backoff_left():
                return  # an offer waits out a pause after refusals
            offer, self.offer = self.offer, None
            log.info("update-fetching", image.KINDS[offer["kind"]], offer["version"],
                     offer["size"], "bytes")
            try:
                self._job = [offer, self.installer.begin(offer["kind"]), 0]
            except (UpdateError, OSError) as e:
                log.warn("update-unavailable", e)
                return
        offer, verifier, n = self._job
        chunks = (offer["size"] + offer["chunk"] - 1) // offer["chunk"]
        prefix = self.base + offer["digest"][:16] + "/"
        try:
            for _ in range(CHUNKS_PER_SERVICE):
                if n == chunks:
                    self._install(offer, verifier)
                    return
                verifier.feed(self.link.fetch(prefix + str(n)))
                n += 1
                self._job[2] = n
                if self.board.ticks_diff(until, self.board.ticks_ms()) <= 0:
                    return
        except LinkError:
            return  # resumes at chunk n once the link is back
        except (image.ImageError, UpdateError) as e:
            self._refuse(offer, verifier, e)
        except OSError as e:  # writing the slot failed: not the image's fault; start over later
            self.installer.abort(verifier)
            self._job = None
            log.warn("update-write-failed", e)

    def _install(self, offer, verifier):
        log.info("update-installing", image.KINDS[offer["kind"]], offer["version"])
        try:
            img = self.installer.commit(verifier, bytes.fromhex(offer["digest"]))
        except (image.ImageError, UpdateError) as e:
            self._refuse(offer, verifier, e)
            return
        log.info("update-installed", image.KINDS[img.kind], img.version, "resetting")
        self.link.close()
        self.board.reset()

    def _refuse(self, offer, verifier, error):
        self.installer.abort(verifier)
        # the digest is remembered only when it is the signed image's own: an
        # announcement cannot get a genuine image refused by naming its digest
        signed = verifier.signed and verifier.digest.hex() == offer["digest"]
        pause = self.installer.note_refused(offer["digest"], signed)
        self._job = None
        name = type(error).__name__
        log.warn("update-refused", name, error)
        if pause:
            log.warn("update-pause", pause, "s without downloads")
        version = verifier.version if verifier.signed else offer["version"]
        self.reports.append(("refused", {"version": version, "reason": name}))
