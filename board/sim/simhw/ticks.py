# ticks_ms arithmetic as a 32-bit MicroPython port does it (extmod/modtime.c):
# ticks wrap at MICROPY_PY_TIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1,
# 2^30 on the ESP32 (about 12.4 days), where the 64-bit unix port's 2^62
# never wraps. ticks_diff() and ticks_add() read their ticks argument with
# MP_OBJ_SMALL_INT_VALUE and no check: a value past the small-int range
# (`t + 1000` just below the wrap) is a long-int object there, and the
# "difference" is computed from its pointer. Both boards of the simulator
# use these, so firmware that adds to ticks by hand fails on the desktop too.
PERIOD = 1 << 30
_HALF = PERIOD >> 1
_SMALL_MIN = -(1 << 30)  # MP_SMALL_INT_MIN with 31-bit small ints


def _small_int_value(x):
    """What MP_OBJ_SMALL_INT_VALUE reads: the value, or a heap pointer's bits."""
    if _SMALL_MIN <= x < PERIOD:
        return x
    # a long int: the port reads its object's address, somewhere in the
    # ESP32's DRAM heap (0x3FFAE000..0x3FFFFFFF) and shifted as a small int
    return (0x3FFB0000 + (x * 2654435761 & 0x3FFF0)) >> 1


def diff(end, start):
    d = (_small_int_value(end) - _small_int_value(start) + _HALF) & (PERIOD - 1)
    return d - _HALF


def add(ticks, delta):
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (_small_int_value(ticks) + delta) & (PERIOD - 1)


def start_value():
    """Where the ticks start at power-on: 0, or $WEARSAFE_TICKS_START to test the wrap."""
    import os

    return int(os.getenv("WEARSAFE_TICKS_START") or "0") & (PERIOD - 1)
