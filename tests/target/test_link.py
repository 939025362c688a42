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
