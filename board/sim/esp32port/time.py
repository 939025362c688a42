# The esp32 port's `time`, modelled on the unix port. TEST EQUIPMENT: this
# folder (board/sim/esp32port) makes board/esp32_devkitc/board.py run
# unchanged on the desktop; it never ships to a board. Facts, each with the
# MicroPython (ports/esp32, extmod) or ESP-IDF source that defines it:
# - the epoch is 2000-01-01 (py/mpconfig.h MICROPY_EPOCH_IS_2000; only the
#   unix port sets 1970): time.time() is Unix time - 946684800;
# - the RTC starts at 2000-01-01 00:00:00 at power-on and is set by
#   ntptime.settime() through machine.RTC().datetime();
# - ticks wrap at 2^30 (extmod/modtime.c, 31-bit small ints): simhw/ticks.py.
# Time is simulated (simhw/clock.py): at WEARSAFE_SIM_SPEED 0 it passes only
# when the firmware sleeps; at 1 it is the wall clock, work included.
import os

import utime

from simhw import ticks
from simhw.clock import from_env

EPOCH_OFFSET = 946684800  # 2000-01-01T00:00:00Z in Unix seconds

clock = from_env()
_TICKS0 = ticks.start_value()
# The world's time when this "board" powered on: what an NTP server answers.
WORLD_AT_POWER_ON = int(os.getenv("WEARSAFE_SIM_EPOCH") or utime.time())
_rtc_at_power_on = 0  # seconds since 2000 that the RTC read at power-on
_sleep_hooks = []  # called after each sleep (the watchdog)


def _now_us():
    """Simulated time now (at speed > 0 the wall clock: work takes time, as on a board)."""
    clock.sync()
    return clock.now_us


def model_set_ticks(ms):
    """Model-only: move the ticks (e.g. a minute before the wrap) without moving time."""
    global _TICKS0
    _TICKS0 = (ms - _now_us() // 1000) & (ticks.PERIOD - 1)


def world_unix_s():
    """The true Unix time now (test equipment's view, not the board's)."""
    return WORLD_AT_POWER_ON + _now_us() // 1000000


def set_rtc(seconds_since_2000):
    global _rtc_at_power_on
    _rtc_at_power_on = seconds_since_2000 - _now_us() // 1000000


def time():
    return _rtc_at_power_on + _now_us() // 1000000


def time_ns():
    return time() * 1000000000 + _now_us() % 1000000 * 1000


def gmtime(secs=None):
    return utime.gmtime((time() if secs is None else secs) + EPOCH_OFFSET)


localtime = gmtime  # no time zone on the esp32 port


def mktime(t):
    return utime.mktime(t) - EPOCH_OFFSET


def ticks_ms():
    return (_TICKS0 + _now_us() // 1000) & (ticks.PERIOD - 1)


def ticks_us():
    return (_TICKS0 * 1000 + _now_us()) & (ticks.PERIOD - 1)


ticks_cpu = ticks_us
ticks_diff = ticks.diff
ticks_add = ticks.add


def sleep_ms(ms):
    if ms > 0:
        clock.sleep_ms(ms)
    for hook in _sleep_hooks:
        hook()


def sleep_us(us):
    sleep_ms(us // 1000)


def sleep(seconds):
    sleep_ms(int(seconds * 1000))
