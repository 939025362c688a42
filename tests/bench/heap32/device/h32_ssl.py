# Stand-in for the ssl module on the heap bench (tests/bench/bench_heap32.py).
# The webassembly port has no ssl; the unix port's mbedTLS allocates its
# record buffers and parsed certificates in the GC heap, where the ESP32's
# ESP-IDF heap holds them instead. So on both ports: no TLS at all.
#
# SSLContext takes the CA, certificate and key the application reads and
# keeps none of them (mbedTLS parses them into its own heap on the ESP32).
# wrap_socket() gives a socket whose other end is a scripted MQTT broker:
# CONNECT gets a CONNACK, SUBSCRIBE a SUBACK and then the retained message
# of that topic if it has one (an image chunk), UNSUBSCRIBE an UNSUBACK, a
# QoS 1 PUBLISH a PUBACK, PINGREQ a PINGRESP. The update announcement comes
# as the release tool's would reach a device already subscribed: once the
# device has published a given number of messages.
# Chunks are read from the image file when the device reads them, so the
# image is never in the heap; readinto() fills the caller's buffer and
# read(n) returns a new n-byte object, as the real socket's do.
#
# Heap it holds: this module (about 3 KB of bytecode on the 32-bit port) and
# the broker's settings (an announcement of ~200 bytes), which the bench
# measures and leaves out of its figures; and per connection one object with
# a 96-byte buffer for the first bytes of the client's current packet, 240
# bytes on the 32-bit port with the socket stand-in (480 on the 64-bit one),
# which the figures include. Not modelled: the real SSLContext and SSLSocket
# objects, which hold mbedTLS structures (SSL configuration, DRBG and entropy
# contexts, two certificate records, the SSL context) inside the GC heap:
# 2-3 KB on the ESP32, by an estimate from those structures' sizes.
PROTOCOL_TLS_CLIENT = 16
PROTOCOL_TLS_SERVER = 17
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
_KEEP = 96  # bytes of each client packet kept for parsing (topics are far shorter)

# what the broker has for the device (set by broker()), and what it was sent
_announce = None  # (topic, message) as bytes, and the publish it follows
_chunks = None  # (topic prefix, image path, chunk size, image size)
published = 0


def broker(announce_topic=None, announcement=None, after=0, chunk_prefix=None, image=None,
           chunk=0, size=0):
    """An update announced after the device's `after`-th message, its image retained
    in chunks; or, without arguments, nothing but acknowledgements."""
    global _announce, _chunks, published
    _announce = (announce_topic.encode(), announcement.encode(), after) \
        if announce_topic else None
    _chunks = (chunk_prefix.encode(), image, chunk, size) if chunk_prefix else None
    published = 0


class SSLContext:
    def __init__(self, protocol):
        self.verify_mode = CERT_NONE

    def load_verify_locations(self, cafile=None, cadata=None):
        pass

    def load_cert_chain(self, certfile, keyfile=None):
        pass

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        return _Session()


def _length(head, end):
    """The MQTT remaining length encoded in head[1:end]."""
    n = shift = 0
    for i in range(1, end):
        n |= (head[i] & 0x7F) << shift
        shift += 7
    return n


class _Session:
    """The TLS socket as the device sees it, and the broker behind it."""

    def __init__(self):
        self._head = bytearray(_KEEP)  # the client's current packet, its first bytes
        self._pos = 0  # bytes of that packet received
        self._body = -1  # where its variable header starts (-1: fixed header incomplete)
        self._total = 0  # its length in all
        self._out = []  # replies not read yet: bytes, or [path, offset, length]
        self._at = 0  # bytes of _out[0] already read

    # the device's side
    def write(self, buf, n=None):
        if n is None:
            n = len(buf)
        i = 0
        while i < n:
            if self._body < 0:  # fixed header: type, then the remaining length
                b = buf[i]
                i += 1
                if self._pos < _KEEP:
                    self._head[self._pos] = b
                self._pos += 1
                if self._pos > 1 and not b & 0x80:
                    self._body = self._pos
                    self._total = self._pos + _length(self._head, self._pos)
            else:
                take = min(n - i, self._total - self._pos)
                keep = min(take, _KEEP - self._pos)
                if keep > 0:
                    self._head[self._pos:self._pos + keep] = memoryview(buf)[i:i + keep]
                self._pos += take
                i += take
            if self._body >= 0 and self._pos == self._total:
                self._packet()
                self._pos, self._body = 0, -1
        return n

    def readinto(self, buf):
        """What mbedTLS's readinto does: the bytes go into the caller's buffer; None
        when nothing has come (the link's TCP socket is non-blocking)."""
        if not self._out:
            return None
        item = self._out[0]
        if type(item) is list:  # [path, offset, length]: a retained chunk
            with open(item[0], "rb") as f:
                f.seek(item[1])
                got = f.readinto(memoryview(buf)[:min(len(buf), item[2])])
            item[1] += got
            item[2] -= got
            if not item[2]:
                self._out.pop(0)
        else:
            got = min(len(buf), len(item) - self._at)
            buf[:got] = memoryview(item)[self._at:self._at + got]
            self._at += got
            if self._at == len(item):
                self._out.pop(0)
                self._at = 0
        return got

    def read(self, n):
        buf = bytearray(n)
        got = self.readinto(buf)
        return None if got is None else bytes(memoryview(buf)[:got])

    def close(self):
        self._out = []

    # the broker's side
    def _packet(self):
        global published
        h, at = self._head, self._body
        kind = h[0] & 0xF0
        if kind == 0x10:  # CONNECT
            self._out.append(b"\x20\x02\x00\x00")
        elif kind == 0x80:  # SUBSCRIBE: packet id, one topic
            pid = bytes(h[at:at + 2])
            topic = bytes(h[at + 4:at + 4 + (h[at + 2] << 8 | h[at + 3])])
            self._out.append(b"\x90\x03" + pid + b"\x00")
            self._retained(topic)
        elif kind == 0xA0:  # UNSUBSCRIBE
            self._out.append(b"\xb0\x02" + bytes(h[at:at + 2]))
        elif kind == 0x30:  # PUBLISH
            published += 1
            if h[0] & 0x06:
                end = at + 2 + (h[at] << 8 | h[at + 1])
                self._out.append(b"\x40\x02" + bytes(h[end:end + 2]))
            if _announce and published == _announce[2]:
                self._publish(_announce[0], _announce[1], None, 0x30)
        elif kind == 0xC0:  # PINGREQ
            self._out.append(b"\xd0\x00")

    def _retained(self, topic):
        if _chunks and topic.startswith(_chunks[0]):
            prefix, path, chunk, size = _chunks
            offset = int(topic[len(prefix):]) * chunk
            if offset < size:
                self._publish(topic, None, [path, offset, min(chunk, size - offset)], 0x31)

    def _publish(self, topic, message, source, first):
        """A PUBLISH at QoS 0 (first byte 0x30, or 0x31 retained): `message`, or the
        file part `source` read when the device reads it."""
        length = 2 + len(topic) + (source[2] if source else len(message))
        head = bytearray((first,))
        while True:
            head.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
            length >>= 7
            if not length:
                break
        head += bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic
        self._out.append(bytes(head))
        self._out.append(source or message)
