# Fuzz harness for the unix port: feeds generated inputs to one device decoder
# and reports every input that raised something other than the decoder's
# documented errors. Inputs come in a file, each a 4-byte big-endian length and
# its bytes. Output: one line per input, "N <outcome>" (the error's type name,
# or what the target returned), "N crash <exception>" for an undocumented one,
# and "done N" at the end. A hang is the input after the last line.
#
# usage: micropython fuzz_device.py TARGET INPUTS [ARGS...]
import struct
import sys


def inputs(path):
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                return
            yield f.read(struct.unpack(">I", head)[0])


def cbor_target(args):
    from wearsafe import cbor

    def run(data):
        cbor.decode(data)
    return run, (cbor.DecodeError,)


def cose_target(args):
    from binascii import unhexlify

    from wearsafe import cose
    from wearsafe.crypto import ccm

    key, base_iv, aad = unhexlify(args[0]), unhexlify(args[1]), unhexlify(args[2])

    def run(data):
        cose.decrypt0(key, base_iv, data, aad)
    return run, (cose.CoseError, ccm.AuthError)


def ota_target(args):
    from wearsafe.ota import image, install

    trust = install.load_trust(args[0])

    def run(data):
        verifier = image.Verifier(trust, install.NullSink(), 65536, 1)
        for i in range(0, len(data), 4096):
            verifier.feed(data[i:i + 4096])
        verifier.finish()
    return run, (image.ImageError,)


class HostileBroker:
    """What the device's TLS socket reads: the broker's bytes, then the end."""

    def __init__(self, data):
        self.data = data
        self.at = 0
        self.blocking = True

    def read(self, n):
        # as a MicroPython socket does: -1 reads to the end, any other length
        # gets its buffer allocated before a byte arrives
        if n == -1:
            n = len(self.data) - self.at
        bytearray(n)
        if self.at >= len(self.data):
            return None if not self.blocking else b""
        part = self.data[self.at:self.at + n]
        self.at += len(part)
        return part

    def readinto(self, buf):
        part = self.read(len(buf))
        if part is None:
            return None
        buf[:len(part)] = part
        return len(part)

    def write(self, buf):
        return len(buf)

    def setblocking(self, flag):
        self.blocking = flag

    def settimeout(self, t):
        pass

    def close(self):
        pass


class Board:
    def epoch_s(self):
        return 1800000000

    def ticks_ms(self):
        return 0

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, delta):
        return t + delta

    def network_up(self):
        return True


def mqtt_target(args):
    from umqtt.simple import MQTTClient

    from wearsafe import link, settings

    for name in link.CERT_FILES:
        with open(name, "wb") as f:
            f.write(b"x")
    config = settings.load("no-settings.json")
    config["broker_host"] = "broker"
    heard = []

    def run(data):
        lnk = link.Link(config, "dev", ".", Board())
        lnk.listen("updates/sim/announce", lambda topic, message: heard.append(len(message)))
        client = MQTTClient("dev", "broker", 8883)
        client.set_callback(lnk._deliver)
        stream = HostileBroker(data)
        client.sock = link._Bounded(stream, stream, link._Serviced(stream), 5, lnk._rx)
        lnk._client = client
        lnk._last_io = -10 ** 9  # idle: keepalive pings
        lnk.poll()
        for step in (lambda: lnk.publish("devices/dev/up", b"sealed"),
                     lambda: lnk.fetch("updates/sim/x/0"), lnk.keepalive, lnk.poll):
            if lnk._client is None:
                lnk._client = client  # the same hostile session, on to the next operation
            try:
                step()
            except link.LinkError:
                pass
        del heard[:]
        return "dropped" if lnk.last_error else "kept"
    return run, ()


def mqtt_tls_target(args):
    """The real link, TLS and all, against a hostile broker on the host: each
    "input" is one connection; the broker decides what it sends."""
    from wearsafe import link, settings

    certs, port = args[0], int(args[1])
    config = settings.load("no-settings.json")
    config["broker_host"], config["broker_port"], config["ack_timeout_s"] = "localhost", port, 2
    board = Board()
    board.sync_clock = lambda: None

    def run(data):
        lnk = link.Link(config, "dev", certs, board)
        lnk.listen("updates/sim/announce", lambda topic, message: None)  # a SUBSCRIBE too
        try:
            lnk.connect()
        except link.LinkError:
            return "refused"
        for step in (lnk.poll, lambda: lnk.publish("devices/dev/up", b"sealed"),
                     lambda: lnk.fetch("updates/sim/x/0"), lnk.poll):
            if lnk._client is None:
                break
            try:
                step()
            except link.LinkError:
                break
        lnk.close()
        return "dropped" if lnk.last_error else "kept"
    return run, ()


def canary_target(args):
    """The harness checking itself: a crash and a hang it must report."""
    def run(data):
        if data[:2] == b"\xde\xad":
            raise TypeError("a planted crash")
        while data[:2] == b"\xbe\xef":
            pass
    return run, ()


def main():
    target, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    run, documented = globals()[target + "_target"](args)
    n = 0
    for n, data in enumerate(inputs(path), 1):
        try:
            print(n, run(data) or "accepted")
        except documented as e:
            print(n, type(e).__name__)
        except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
            print(n, "crash", "%s: %s" % (type(e).__name__, e))
    print("done", n)


main()
