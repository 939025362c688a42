# The uplink: MQTT over mutual TLS on umqtt.simple, and nothing else.
#
# The device proves itself with its P-256 client certificate and checks the
# broker against the pinned fleet CA and the broker's host name
# (CERT_REQUIRED). There is no plaintext code path and no password: a
# configuration asking for either is refused when the Link is made, at boot.
# umqtt.simple blocks and has no timeouts, so the Link owns them: every read
# and write of the TLS socket is bounded, a PUBACK that does not come in
# time fails the link, and keepalive pings go out when the link is idle.
# Nothing blocks the sensor loop: the TCP connect, the TLS handshake and every
# wait for the broker run on a non-blocking socket, in slices between which
# the sensors are served (realtime.py).
# Reconnects back off exponentially, with jitter, up to a cap.
# On mbedTLS ports a failed certificate or host-name check raises ValueError,
# not OSError (extmod/modtls_mbedtls.c): every connect failure is a LinkError.
# mbedTLS buffers live outside the GC heap (about 20 KB a connection on the
# ESP32): the socket is closed on every failure, and the SSLContext (parsed
# certificates and key) is built once.
import errno
import gc
import io
import random
import select
import socket
import ssl
import struct
import sys

import umqtt.simple
from micropython import const
from umqtt.simple import MQTTClient, MQTTException

from wearsafe import realtime

MIN_EPOCH = const(1735689600)  # 2025-01-01: a clock before this was never set
BACKOFF_FIRST_MS = const(1000)
BACKOFF_CAP_MS = const(60000)
# What a broker may make the device read: the largest read (an 8 KB update
# chunk's payload; the size of the Link's receive buffer), and packets per
# operation (a broker that keeps sending would otherwise hold a publish or a
# fetch forever). A read up to SMALL_READ bytes (a header, a topic, an
# announcement) is its own bytes object; a larger one lands in the buffer.
MAX_READ = const(8192)
SMALL_READ = const(512)
READS_PER_OP = const(512)
_STREAM_CLOSE = const(4)  # py/stream.h MP_STREAM_CLOSE
WRITE_RETRY_MS = const(20)  # a full send buffer is not pollable through the TLS layer
CERT_FILES = ("ca.der", "device.der", "device.key.der")
OFFLINE = b"offline"
_CONNACK_REASONS = {1: "protocol version refused", 2: "client id refused",
                    3: "broker unavailable", 4: "bad user name or password",
                    5: "not authorised (certificate not accepted for this id)"}


class LinkError(Exception):
    pass


class ConfigError(LinkError):
    """The configuration asks for something the device must never do."""


class ClockNotSet(LinkError):
    pass


def up_topic(device_id):
    return "devices/%s/up" % device_id


def status_topic(device_id):
    return "devices/%s/status" % device_id


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _wait(poller, budget, most):
    """Wait on the socket for one slice (at most until the sensors are due, which
    are served first); (what poll found, the budget left). A wait is bounded without
    a clock (a board's and a simulator's differ): every slice that passes with
    nothing costs its length, every wake-up at least a millisecond."""
    realtime.service()
    wait = realtime.due_in_ms(min(budget, most))
    ready = poller.poll(wait)
    budget -= 1 if ready else wait
    if budget <= 0:
        raise OSError(errno.ETIMEDOUT)
    return ready, budget


class _Net:
    """What umqtt.simple's name `socket` stands for while the Link connects (its
    socket() and getaddrinfo(), and the socket itself up to the TLS wrap): the
    broker's address resolved once (again after a failed connect), and a TCP
    connect that waits in slices, bounded, with the sensors served meanwhile (a
    lost SYN costs a second or more on a real link)."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.address = None
        self.sock = None  # the TCP socket of the connect under way

    def getaddrinfo(self, host, port):
        if self.address is None:
            self.address = socket.getaddrinfo(host, port)
        return self.address

    def socket(self):
        self.sock = socket.socket()
        return self

    def settimeout(self, timeout):
        pass  # umqtt.simple 1.4+ asks for none: the Link's own bound applies

    def connect(self, address):
        sock = self.sock
        assert sock is not None  # socket() came first
        sock.setblocking(False)
        try:
            sock.connect(address)
        except OSError as e:
            if e.args[0] != errno.EINPROGRESS:
                raise
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        budget = self.timeout_ms
        while True:
            ready, budget = _wait(poller, budget, budget)
            if ready:
                if ready[0][1] & (select.POLLERR | select.POLLHUP):
                    raise OSError(errno.ECONNREFUSED)
                return

    def close(self):
        if self.sock:
            self.sock.close()


class _Tls:
    """Wraps the client's TCP socket in TLS with our context, without blocking.

    Passed to umqtt.simple as `ssl` (1.4+: it calls ssl.wrap_socket(sock,
    server_hostname=...)) and installed as its `ussl` module (1.3: it calls
    ussl.wrap_socket(sock, **ssl_params)), so both versions take one path.
    The handshake runs inside the first write (the CONNECT), step by step as
    the broker's flights arrive (extmod/modtls_mbedtls.c: with
    do_handshake_on_connect=False mbedtls_ssl_write/read drive it and answer
    WANT_READ/WANT_WRITE, which a non-blocking socket reports as None).
    """

    def __init__(self, context, timeout_ms, rx):
        self.context = context
        self.timeout_ms = timeout_ms
        self.rx = rx

    def wrap_socket(self, sock, server_hostname=None):
        if isinstance(sock, _Net):
            sock = sock.sock
        sock.setblocking(False)
        serviced = _Serviced(sock)
        tls = self.context.wrap_socket(serviced, server_hostname=server_hostname,
                                       do_handshake_on_connect=False)
        return _Bounded(tls, sock, serviced, self.timeout_ms, self.rx)


def _errno(error):
    code = error.args[0] if error.args else None
    return code if isinstance(code, int) and code > 0 else errno.EIO


carried = [0, 0]  # bytes sent and received over TLS sockets since boot (for energy.py)


class _Serviced(io.IOBase):
    """The TCP socket as mbedTLS sees it. Its receive and send callbacks reach
    these methods through the stream protocol (extmod/modtls_mbedtls.c
    _mbedtls_ssl_recv/_send, py/modio.c iobase_p), where the sensors are served:
    a handshake flight's crypto (the chain check, the server's signature, the
    key exchange, our signature) then runs in pieces with the FIFOs drained
    between them, not as one C call of a second or more. (io.IOBase is on every
    port from core features up, py/mpconfig.h MICROPY_PY_IO_IOBASE.)

    Nothing may raise through mbedTLS (a longjmp out of its state machine,
    which allocates outside the GC heap): an error becomes an errno for it,
    and a sensor task's exception is kept for _Bounded to raise."""

    def __init__(self, sock):
        self._sock = sock
        self.error = None  # a sensor task's exception, raised after mbedTLS returns

    def _service(self):
        if self.error is None:
            try:
                realtime.service()
            except Exception as e:  # noqa: BLE001 (kept and raised, never lost)
                self.error = e

    def readinto(self, buf):
        self._service()
        try:
            n = self._sock.readinto(buf)  # None: nothing yet (WANT_READ)
            if n:
                carried[1] += n
            return n
        except OSError as e:
            return -_errno(e)

    def write(self, buf):
        self._service()
        try:
            n = self._sock.write(buf)
            if n:
                carried[0] += n
            return n
        except OSError as e:
            return -_errno(e)

    def ioctl(self, request, arg):
        if request == _STREAM_CLOSE:
            self._sock.close()
            return 0
        return -errno.EINVAL  # nothing polls through TLS: _Bounded polls the TCP socket


class _Bounded:
    """The TLS socket as umqtt.simple sees it: 'blocking' means until the data is
    there or the link's timeout has passed, waiting in slices no longer than the
    time to the sensors' next poll, which runs between them (realtime.service).

    The TCP socket stays non-blocking; umqtt.simple's setblocking(False) (its
    check_msg) means one try and None when nothing has come.
    """

    def __init__(self, tls_sock, raw, serviced, timeout_ms, rx):
        self._tls = tls_sock
        self._raw = raw
        self._serviced = serviced
        self._timeout_ms = timeout_ms
        self._rx = rx  # MAX_READ bytes, for large reads
        self._blocking = True
        self._poller = None  # made at the first wait
        self.reads_left = READS_PER_OP
        self.lent = False  # a view of _rx is held: large reads allocate until reset

    def _wait(self, budget, most):
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._raw, select.POLLIN)
        return _wait(self._poller, budget, most)[1]

    def _tls_io(self, operation, arg):
        """operation(arg) on the TLS socket; then a sensor task's exception that
        _Serviced kept while mbedTLS ran is raised, once."""
        try:
            return operation(arg)
        finally:
            error, self._serviced.error = self._serviced.error, None
            if error is not None:
                raise error

    def read(self, n):
        """n bytes, or None at once when non-blocking and nothing has come. A read
        of more than SMALL_READ bytes (an update chunk) is a view of the Link's
        receive buffer, valid until the next large read: the TLS socket's own
        read(n) would allocate n + 1 bytes each time, and after a session's churn
        the heap may hold no 8 KB hole (test_ota_powercut found 81 KB free in
        holes of 4 KB at most)."""
        # umqtt.simple reads the lengths the broker announces: a hostile one
        # would have the socket allocate its buffer first (found by fuzzing)
        if not 0 <= n <= MAX_READ:
            raise OSError("link: the broker announced %d bytes (at most %d)" % (n, MAX_READ))
        self.reads_left -= 1
        if self.reads_left < 0:
            raise OSError("link: the broker keeps sending; this operation gives up")
        large = n > SMALL_READ and not self.lent
        view = memoryview(self._rx if large else bytearray(n))[:n]
        got = 0
        budget = self._timeout_ms
        while got < n:
            count = self._tls_io(self._tls.readinto, view[got:])
            if count is None:  # nothing yet
                if not got and not self._blocking:
                    return None
                budget = self._wait(budget, budget)
            elif not count:
                raise OSError("link: connection closed by the broker")
            else:
                got += count
        return view if large else bytes(view)

    def write(self, buf, n=None):
        data = memoryview(buf)[:len(buf) if n is None else n]
        sent = 0
        budget = self._timeout_ms
        while sent < len(data):
            done = self._tls_io(self._tls.write, data[sent:])
            if done:
                sent += done
            else:  # the handshake waits for the broker, or the send buffer is full
                budget = self._wait(budget, WRITE_RETRY_MS)
        return sent

    def setblocking(self, flag):
        self._blocking = flag

    def close(self):
        self._tls.close()


class Link:
    def __init__(self, settings, device_id, cert_dir, board):
        if settings["tls"] is not True:
            raise ConfigError("plaintext MQTT is not supported: wearsafe speaks MQTT over TLS "
                              "only; set \"tls\": true and give the broker's TLS port")
        if not settings["broker_host"]:
            raise ConfigError("no broker_host in the settings: provision the device bundle")
        for name in CERT_FILES:
            try:
                _read(cert_dir + "/" + name)
            except OSError:
                raise ConfigError("no %s/%s: a client certificate, its key and the CA are "
                                  "required (mutual TLS); provision the device bundle"
                                  % (cert_dir, name))
        self._host = settings["broker_host"]
        self._port = settings["broker_port"]
        self._keepalive_s = settings["keepalive_s"]
        self._timeout_s = settings["ack_timeout_s"]
        self._net = _Net(self._timeout_s * 1000)
        self._device_id = device_id
        self._cert_dir = cert_dir
        self._board = board
        self._client = None
        self._ssl_context = None
        self._rx = bytearray(MAX_READ)  # made at boot, while the heap has 8 KB holes
        self._listening = {}  # topic -> callback(topic, message), subscribed at each connect
        self._fetching = None  # (topic, [message], socket) while fetch() waits
        self._last_io = 0
        self._retry_at = board.ticks_ms()  # now: a fixed 0 is in the future half the period
        self._backoff_ms = 0
        self.connects = 0
        self.last_error = None

    @property
    def connected(self):
        return self._client is not None

    def _context(self):
        if self._ssl_context is None:
            self._ssl_context = self._new_context()
        return self._ssl_context

    def _new_context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.verify_mode = ssl.CERT_REQUIRED
        d = self._cert_dir + "/"
        context.load_verify_locations(cadata=_read(d + "ca.der"))
        context.load_cert_chain(_read(d + "device.der"), _read(d + "device.key.der"))
        return context

    def connect(self):
        """Open the session now; LinkError (with what to do) when it fails."""
        if self._board.epoch_s() < MIN_EPOCH:
            try:
                self._board.sync_clock()
            except OSError as e:
                raise ClockNotSet("link: the clock is not set and NTP failed (%s), so the "
                                  "broker's certificate cannot be checked" % e)
        if self._board.epoch_s() < MIN_EPOCH:
            raise ClockNotSet("link: the clock is not set (NTP has not run), so the broker's "
                              "certificate cannot be checked")
        try:
            tls = _Tls(self._context(), self._timeout_s * 1000, self._rx)
        except (ValueError, OSError) as e:
            raise LinkError("link: the device's certificate, key or CA in %s is unusable (%s): "
                            "provision the device bundle again" % (self._cert_dir, e))
        client = MQTTClient(self._device_id, self._host, self._port,
                            keepalive=self._keepalive_s, ssl=tls)
        if hasattr(client, "ssl_params"):  # umqtt.simple 1.3
            client.ssl_params = {"server_hostname": self._host}
            sys.modules["ussl"] = tls  # type: ignore[assignment]  # a module in all but type
        umqtt.simple.socket = self._net  # type: ignore[attr-defined]  # as above
        client.set_last_will(status_topic(self._device_id), OFFLINE, retain=True, qos=1)
        client.set_callback(self._deliver)
        try:
            client.connect()
            for topic in self._listening:
                client.subscribe(topic, 0)
        except MQTTException as e:
            self._close_socket(client)
            code = e.args[0] if e.args else 0
            raise LinkError("link: broker refused the connection: %s"
                            % _CONNACK_REASONS.get(code, "code %s" % code))
        except ValueError as e:  # mbedTLS: certificate, host name or date check failed
            self._close_socket(client)
            raise LinkError("link: TLS verification of %s failed: %s (check the broker's "
                            "certificate names %s, the CA and the clock)"
                            % (self._host, e, self._host))
        except OSError as e:
            self._close_socket(client)
            self._net.address = None  # the broker may have moved: look it up again
            raise LinkError("link: cannot reach %s:%d over TLS: %s (check the broker, its "
                            "certificate and this device's)" % (self._host, self._port, e))
        except (IndexError, AssertionError):  # umqtt.simple's checks of a CONNACK or SUBACK
            self._close_socket(client)
            raise LinkError("link: the broker at %s:%d answered with a malformed packet"
                            % (self._host, self._port))
        self._client = client
        self._last_io = self._board.ticks_ms()
        self._backoff_ms = 0
        self.connects += 1
        gc.collect()  # the handshake's garbage, before the session's 8 KB reads

    def _close_socket(self, client):
        """Close what the connect left open: the TLS socket, else the TCP one."""
        sock = client.sock
        try:
            if sock:
                sock.close()
        except OSError:
            pass

    def drop(self, error):
        """Give up the session after an error; the next service() reconnects later."""
        if self._client:
            self._close_socket(self._client)
            self._client = None
        self.last_error = str(error)
        self._backoff_ms = min(BACKOFF_CAP_MS, max(BACKOFF_FIRST_MS, 2 * self._backoff_ms))
        jitter = random.getrandbits(16) * self._backoff_ms // 0x20000  # up to half
        self._retry_at = self._board.ticks_add(self._board.ticks_ms(),
                                               self._backoff_ms // 2 + jitter)

    def ensure(self):
        """Connected, or trying again once the backoff allows; True when up."""
        if not self._board.network_up():
            if self._client:
                self.drop("radio off")
            self.last_error = "radio off"
            return False
        if self._client:
            return True
        if self._board.ticks_diff(self._board.ticks_ms(), self._retry_at) < 0:
            return False
        try:
            self.connect()
        except LinkError as e:
            self.drop(e)
            return False
        return True

    def _operation(self):
        """The client, with a fresh read budget for one operation."""
        client = self._client
        assert client is not None  # callers check first
        client.sock.reads_left = READS_PER_OP
        client.sock.lent = False  # what the last operation returned has been used
        return client

    def publish(self, topic, message):
        """QoS 1: returns once the broker's PUBACK is in; LinkError otherwise."""
        if not self._client:
            raise LinkError("link: not connected")
        self._operation()
        try:
            self._client.publish(topic, message, qos=1)
        except (OSError, IndexError, AssertionError) as e:
            self.drop(e)
            raise LinkError("link: no PUBACK within %d s: %s" % (self._timeout_s, e))
        self._last_io = self._board.ticks_ms()

    def listen(self, topic, callback):
        """Messages on `topic` of up to SMALL_READ bytes go to callback(topic,
        message), from every connect on."""
        self._listening[topic] = callback

    def _deliver(self, topic, message):
        if not isinstance(topic, bytes):  # a view: longer than any topic we use
            return
        try:
            topic = topic.decode()
        except UnicodeError:  # a hostile broker's topic: nobody listens to it
            return
        if self._fetching and topic == self._fetching[0]:
            if not self._fetching[1]:  # the first is taken; a repeat is not
                self._fetching[1].append(message)
                self._fetching[2].lent = isinstance(message, memoryview)
        elif topic in self._listening and isinstance(message, bytes):
            self._listening[topic](topic, message)

    def poll(self, most=4):
        """Take in up to `most` messages the broker has sent, without waiting."""
        if not self._client:
            return
        self._operation()
        try:
            for _ in range(most):
                if self._client.check_msg() is None:
                    return
        except (OSError, IndexError, AssertionError, MQTTException) as e:
            self.drop(e)

    def fetch(self, topic):
        """The retained message on `topic`: subscribe, take it, unsubscribe. LinkError if
        none. A message over SMALL_READ bytes is a view of the receive buffer, valid
        until the Link's next operation."""
        if not self._client:
            raise LinkError("link: not connected")
        client = self._operation()
        self._fetching = (topic, [], client.sock)
        try:
            client.subscribe(topic, 0)
            while not self._fetching[1]:
                op = client.wait_msg()  # the socket's timeout bounds the wait
                if op is not None:
                    raise OSError("unexpected packet 0x%02x while fetching" % op)
            self._unsubscribe(client, topic)
        except (OSError, IndexError, AssertionError, MQTTException) as e:
            self.drop(e)
            raise LinkError("link: fetching %s failed: %s" % (topic, e))
        finally:
            message: list = self._fetching[1]
            self._fetching = None
        self._last_io = self._board.ticks_ms()
        return message[0]

    def _unsubscribe(self, client, topic):
        # umqtt.simple 1.3 has no unsubscribe: UNSUBSCRIBE (MQTT 3.1.1 section 3.10)
        client.pid = (client.pid % 0xFFFF) + 1
        t = topic.encode()
        if len(t) > 120:
            raise OSError("topic too long to unsubscribe from")
        client.sock.write(struct.pack("!BBHH", 0xA2, 4 + len(t), client.pid, len(t)))
        client.sock.write(t)
        while client.wait_msg() != 0xB0:
            pass
        if client.sock.read(3)[1:] != struct.pack("!H", client.pid):
            raise OSError("UNSUBACK for another packet")

    def keepalive(self):
        """Ping when idle for half the keepalive, and read the PINGRESP."""
        if not self._client:
            return
        idle = self._board.ticks_diff(self._board.ticks_ms(), self._last_io)
        if idle < self._keepalive_s * 500:
            return
        self._operation()
        try:
            self._client.ping()
            if self._client.wait_msg() is not None:
                raise OSError("expected a PINGRESP")
        except (OSError, IndexError, AssertionError) as e:
            self.drop(e)
            return
        self._last_io = self._board.ticks_ms()

    def close(self):
        if self._client:
            try:
                self._client.disconnect()
            except OSError:
                pass
            self._client = None
