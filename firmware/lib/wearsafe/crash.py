# What the application does when it fails: the exception's type is counted in
# NVS (never its message, which could hold data) and the device pauses before
# it resets, longer at each crash in a row (2 s doubling to 5 min), so a bug
# that hits at every boot cannot become a tight reboot loop that wears the
# flash and floods the broker. The next status message reports the count;
# the streak ends once a message reaches the broker.
import sys

from micropython import const

from wearsafe import log

NAMESPACE = "wearsafe-crash"
_FIRST_PAUSE_MS = const(2000)
_MAX_PAUSE_MS = const(300_000)


def _get(nvs, key):
    try:
        return nvs.get_i32(key)
    except OSError:
        return 0


def note(nvs, error, sleep_ms):
    """Log and count `error`, then pause; the caller resets the board afterwards."""
    sys.print_exception(error)
    streak = 0
    try:
        nvs.set_i32("total", _get(nvs, "total") + 1)
        streak = _get(nvs, "streak") + 1
        nvs.set_i32("streak", streak)
        nvs.set_blob("last", type(error).__name__[:32].encode())
        nvs.commit()
    except Exception as e:  # noqa: BLE001 - NVS itself failing must not stop the reset
        log.error("crash-not-counted", type(e).__name__)
    pause = min(_MAX_PAUSE_MS, _FIRST_PAUSE_MS << min(streak, 8))
    log.error("crashed", type(error).__name__, "streak", streak, "pause-ms", pause)
    sleep_ms(pause)


def report(nvs):
    """[("crashes", "<total> <last type>")] for the status message, or []."""
    total = _get(nvs, "total")
    if not total:
        return []
    buf = bytearray(32)
    try:
        last = bytes(buf[:nvs.get_blob("last", buf)]).decode()
    except (OSError, UnicodeError):
        last = "?"
    return [("crashes", "%d %s" % (total, last))]


def clear_streak(nvs):
    if _get(nvs, "streak"):
        nvs.set_i32("streak", 0)
        nvs.commit()
