# The link refuses, at boot, every configuration that is not mutual TLS, and
# an unset clock is an error, never a hang.
import os

from wearsafe import settings
from wearsafe.link import ClockNotSet, ConfigError, Link
from wstest import raises

_CERTS = "link-certs"


class _Board:
    """The board seam, with a clock NTP never set and a radio that is on."""

    def epoch_s(self):
        return 0

    def sync_clock(self):
        raise OSError("no NTP server")

    def network_up(self):
        return True

    def ticks_ms(self):
        return 0

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, delta):
        return t + delta


def _config(**changes):
    config = dict(settings.DEFAULTS, broker_host="localhost")
    config.update(changes)
    return config


def _certs(*names):
    try:
        os.mkdir(_CERTS)
    except OSError:
        pass
    for name in ("ca.der", "device.der", "device.key.der"):
        try:
            os.remove(_CERTS + "/" + name)
        except OSError:
            pass
    for name in names:
        with open(_CERTS + "/" + name, "wb") as f:
            f.write(b"x")


def test_plaintext_is_refused_at_boot():
    _certs("ca.der", "device.der", "device.key.der")
    e = raises(ConfigError, Link, _config(tls=False), "d1", _CERTS, _Board())
    assert "plaintext MQTT is not supported" in str(e)


def test_a_missing_client_certificate_or_key_is_refused_at_boot():
    for present in (("ca.der", "device.key.der"), ("ca.der", "device.der")):
        _certs(*present)
        e = raises(ConfigError, Link, _config(), "d1", _CERTS, _Board())
        assert "client certificate, its key and the CA are required" in str(e)


def test_no_broker_is_refused_at_boot():
    _certs("ca.der", "device.der", "device.key.der")
    e = raises(ConfigError, Link, _config(broker_host=""), "d1", _CERTS, _Board())
    assert "no broker_host" in str(e)


def test_an_unset_clock_is_an_error_not_a_hang():
    _certs("ca.der", "device.der", "device.key.der")
    link = Link(_config(), "d1", _CERTS, _Board())
    e = raises(ClockNotSet, link.connect)
    assert "clock is not set and NTP failed (no NTP server)" in str(e)
    assert not link.ensure() and "clock is not set" in link.last_error


def test_nothing_raises_through_mbedtls_and_a_sensor_error_comes_out_after_it():
    # mbedTLS calls _Serviced from C: an exception there would longjmp out of its
    # state machine, leaking what it allocated outside the GC heap.
    from wearsafe import realtime
    from wearsafe.link import _Bounded, _Serviced

    class Peer:
        closed = False

        def readinto(self, buf):
            raise OSError(104)  # ECONNRESET

        def write(self, buf):
            return len(buf)

        def close(self):
            self.closed = True

    class Tls:  # what the TLS socket does when mbedTLS has called _Serviced.write
        def __init__(self, serviced):
            self.serviced = serviced

        def write(self, data):
            return self.serviced.write(data)

    def failing_sensor():
        raise ValueError("a sensor task failed")

    peer = Peer()
    serviced = _Serviced(peer)
    assert serviced.readinto(bytearray(4)) == -104  # an errno for mbedTLS
    realtime.every(_Board(), 0, failing_sensor)
    try:
        assert serviced.write(b"ab") == 2 and serviced.error is not None
        bounded = _Bounded(Tls(serviced), peer, serviced, 1000, None)
        assert str(raises(ValueError, bounded.write, b"ab")) == "a sensor task failed"
        assert serviced.error is None  # raised once, not again
    finally:
        realtime.stop()
    assert serviced.ioctl(4, 0) == 0 and peer.closed  # MP_STREAM_CLOSE reaches the socket


class _Records:
    """A TLS socket whose peer sends `size` bytes in records of `record` bytes."""

    error = None  # as _Serviced: no sensor task failed

    def __init__(self, size, record=1000):
        self.left, self.record, self.sent = size, record, 0

    def _next(self, n):
        n = min(n, self.record, self.left)
        self.left -= n
        self.sent += n
        return n

    def read(self, n):
        return bytes(self._next(n))

    def readinto(self, view):
        n = self._next(len(view))
        for i in range(n):
            view[i] = (self.sent - n + i) & 0xFF
        return n


def _allocated_by(fn, *args):
    import gc

    gc.collect()
    gc.disable()  # so that free memory falls by what fn allocates
    try:
        free = gc.mem_free()
        result = fn(*args)
        return result, free - gc.mem_free()
    finally:
        gc.enable()


def test_an_update_chunk_lands_in_the_receive_buffer_not_in_a_new_8_kb_block():
    # After a session's churn the heap may have no 8 KB hole (test_ota_powercut
    # found 81 KB free in holes of 4 KB at most): a chunk read allocates little.
    from wearsafe.link import MAX_READ, _Bounded

    rx = bytearray(MAX_READ)
    peer = _Records(2 * MAX_READ + 2)
    bounded = _Bounded(peer, None, peer, 1000, rx)
    chunk, used = _allocated_by(bounded.read, MAX_READ)
    assert used < 1024, used
    assert len(chunk) == MAX_READ and chunk[1000] == 1000 & 0xFF
    chunk[0] = 0xAA
    assert rx[0] == 0xAA  # a view of the buffer
    bounded.lent = True  # while a chunk is held, the next is a copy
    copy, used = _allocated_by(bounded.read, MAX_READ)
    assert used >= MAX_READ and isinstance(copy, bytes) and rx[0] == 0xAA
    assert copy[0] == MAX_READ & 0xFF
    header = bounded.read(2)
    assert isinstance(header, bytes) and header == b"\x00\x01"
