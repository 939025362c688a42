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
        bounded = _Bounded(Tls(serviced), peer, serviced, 1000)
        assert str(raises(ValueError, bounded.write, b"ab")) == "a sensor task failed"
        assert serviced.error is None  # raised once, not again
    finally:
        realtime.stop()
    assert serviced.ioctl(4, 0) == 0 and peer.closed  # MP_STREAM_CLOSE reaches the socket
