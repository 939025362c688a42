# Updates over the device's own TLS MQTT session. The release tool publishes,
# retained, on updates/<class>/:
#   announce            JSON {"version", "kind", "size", "chunk", "digest"}
#   <digest16>/<n>      the image, `chunk` bytes per message
# The device fetches the chunks one by one (subscribe, take the retained
# message, unsubscribe) a few per second between sensor readings, feeding
# the streaming verifier; a dropped link resumes at the chunk it was
# fetching. The announcement is not trusted: it only says what to fetch;
# the image's signature decides. An image refused once is never fetched again.
import json

from micropython import const

from wearsafe import log
from wearsafe.link import LinkError
from wearsafe.ota import image
from wearsafe.ota.install import UpdateError

CHUNKS_PER_SERVICE = const(8)


def version_tuple(text):
    """(major, minor, revision, build) of "1.2.3+4" or "1.2.3"; ValueError otherwise."""
    main, _, build = text.partition("+")
    parts = [int(p) for p in main.split(".")]
    if len(parts) != 3:
        raise ValueError("version %r is not MAJOR.MINOR.REVISION[+BUILD]" % text)
    return tuple(parts) + (int(build or 0),)


def parse_announcement(message, capacity_of):
    """The announcement as a dict, every field checked; ValueError says what is wrong."""
    a = json.loads(message)
    if not isinstance(a, dict):
        raise ValueError("not a JSON object")
    kind = image.KIND_BY_NAME.get(str(a.get("kind")))
    if kind is None:
        raise ValueError("unknown kind")
    version_tuple(a["version"])
    size, chunk, digest = a["size"], a["chunk"], a["digest"]
    if type(size) is not int or type(chunk) is not int or not 256 <= chunk <= 8192:
        raise ValueError("size and chunk must be integers, chunk 256..8192")
    limit = capacity_of(kind) + image.MAX_HEADER + 2 * image.MAX_TLV_AREA
    if not 0 < size <= limit:
        raise ValueError("size %d is beyond the slot" % size)
    if len(digest) != 64:
        raise ValueError("digest must be 64 hex digits")
    bytes.fromhex(digest)
    a["kind"] = kind
    return a


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
        try:
            offer = parse_announcement(message, self.installer.capacity)
        except UpdateError as e:  # e.g. a firmware update on the stock image
            if str(e) != self._unavailable:
                self._unavailable = str(e)
                log.warn("update-unavailable", e)
            return
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warn("update-announcement-refused", e)
            return
        current = self.running.get(offer["kind"], "0.0.0")
        if version_tuple(offer["version"]) <= version_tuple(current):
            return
        if self.installer.refused_before(offer["digest"]):
            return
        if self._job is None or self._job[0]["digest"] != offer["digest"]:
            self.offer = offer

    def service(self):
        """Fetch and verify a few chunks; install and reset when the image is complete."""
        if self._job is None:
            if self.offer is None:
                return
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
        self.installer.note_refused(offer["digest"])
        self._job = None
        name = type(error).__name__
        log.warn("update-refused", name, error)
        self.reports.append(("refused", {"version": offer["version"], "reason": name}))
