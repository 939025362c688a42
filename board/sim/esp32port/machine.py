# The esp32 port's `machine` (I2C, Pin, RTC, WDT, reset), modelled on the unix
# port. TEST EQUIPMENT (see time.py). Sources: extmod/machine_i2c.c and
# ports/esp32/machine_i2c.c (a device that does not acknowledge raises
# OSError(ENODEV), a bus timeout OSError(ETIMEDOUT), also in the middle of a
# transfer); ports/esp32/machine_rtc.c (datetime tuple); machine_wdt.c
# (timeout in ms, "WDT timeout too short"); modmachine.c (reset() never
# returns: the process ends with RESET_EXIT and the host starts it again).
import time

import flashmodel
from simhw.i2c import ETIMEDOUT, SimI2C, wearer_bus

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
_CAUSES = {"power-on": PWRON_RESET, "reset": HARD_RESET, "panic": HARD_RESET,
           "wdt": WDT_RESET}
_reset_cause = flashmodel.take_reset_cause()


def reset_cause():
    if flashmodel.soft_reset():  # modmachine.c: is_soft_reset comes first
        return SOFT_RESET
    return _CAUSES.get(_reset_cause, PWRON_RESET)


def reset():
    _reset("reset")


def _reset(cause):
    flashmodel.note_reset(cause)
    raise SystemExit(flashmodel.RESET_EXIT)


def soft_reset():
    reset()


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


# ESP32_GENERIC takes ESP-IDF's default CPU clock, 160 MHz (its sdkconfig.base sets
# none; boards/sdkconfig.240mhz is only in other boards' lists); modmachine.c
# mp_machine_set_freq accepts 20, 40, 80, 160 and 240 MHz, else ValueError.
_freq = [160000000]


def freq(hz=None):
    if hz is None:
        return _freq[0]
    if hz // 1000000 not in (20, 40, 80, 160, 240):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq[0] = hz // 1000000 * 1000000
    return None


def idle():
    time.sleep_ms(1)


def lightsleep(ms=None):
    time.sleep_ms(ms or 0)  # the RTC keeps time: ticks_ms goes on across it


class Pin:
    IN, OUT, OPEN_DRAIN = 1, 3, 7
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not 0 <= id <= 39 or 20 <= id <= 20 or 24 <= id <= 24 or 28 <= id <= 31:
            raise ValueError("invalid pin")
        self.id = id


class RTC:
    def datetime(self, t=None):
        if t is None:
            y, mo, d, h, mi, s, wd, _ = time.gmtime()
            return (y, mo, d, wd, h, mi, s, 0)
        y, mo, d, _, h, mi, s = t[:7]
        time.set_rtc(time.mktime((y, mo, d, h, mi, s, 0, 0)))
        return None


class WDT:
    """The task watchdog: not fed within timeout (simulated ms), the chip resets."""

    def __init__(self, id=0, timeout=5000):
        from simhw.watchdog import Watchdog

        self._dog = Watchdog(timeout, time.ticks_ms, lambda: _reset("wdt"))
        time._sleep_hooks.append(self._dog.check)

    def feed(self):
        self._dog.feed()


# -- I2C: the sim board's bus and register-level chips (simhw/i2c.py)

_buses = {}


def inject_i2c_fault(address, errno=ETIMEDOUT, after_bytes=0, count=1):
    """Model-only: the next `count` transfers with `address` on I2C(0) fail after
    `after_bytes` bytes (a loose wire mid-read: ETIMEDOUT, or ENODEV)."""
    I2C(0).inject_fault(address, errno, after_bytes, count)


class I2C(SimI2C):
    """Every I2C(n) drives controller n: its chips and faults are the controller's,
    shared by all its objects; the wearer's chips are on I2C(0)."""

    def __init__(self, id, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError("I2C(%d) doesn't exist" % id)
        if id not in _buses:
            _buses[id] = wearer_bus(time.clock) if id == 0 else SimI2C()
        self.chips = _buses[id].chips
        self._faults = _buses[id]._faults
        self.clock = _buses[id].clock
