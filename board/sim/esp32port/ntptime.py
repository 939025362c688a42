# micropython-lib's ntptime (micropython/net/ntptime/ntptime.py), modelled on
# the unix port. TEST EQUIPMENT (see time.py). The real module resolves the
# host, sends one UDP query, waits `timeout` s and sets the RTC through
# machine.RTC().datetime(). It fails with OSError when the network is down
# (getaddrinfo: OSError(-202) on the esp32 port) or no answer comes
# (ETIMEDOUT), and a short answer fails in struct.unpack (ValueError, not
# OSError). Faults: the file ntp-fault in the state directory holding
# "timeout" or "short".
import time as _clock

import flashmodel
import network

host = "pool.ntp.org"
timeout = 1


def _fault():
    try:
        with open(flashmodel.state_dir() + "/ntp-fault") as f:
            return f.read().strip()
    except OSError:
        return ""


def time():
    if not network.WLAN(network.STA_IF).isconnected():
        raise OSError(-202)  # getaddrinfo without a network
    fault = _fault()
    if fault == "timeout":
        _clock.sleep_ms(timeout * 1000)
        raise OSError(116)  # ETIMEDOUT
    if fault == "short":
        import struct

        struct.unpack("!I", b"\x00\x00")  # msg[40:44] of a short reply
    _clock.sleep_ms(30)  # a round trip
    return _clock.world_unix_s() - _clock.EPOCH_OFFSET


def settime():
    import machine

    tm = _clock.gmtime(time())
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
