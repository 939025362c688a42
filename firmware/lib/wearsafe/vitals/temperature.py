# Body temperature from the MAX30205 on the skin: the median of the last
# readings, reported only when the device is worn and the value is
# physiologically plausible.
from array import array

from micropython import const

_N = const(5)
_LOW = const(30 * 256)  # 30 C, in the chip's 1/256 C units
_HIGH = const(43 * 256)


class BodyTemperature:
    def __init__(self):
        self._last = array("i", bytes(4 * _N))
        self._count = 0

    def add_raw(self, raw):
        """One reading in 1/256 C."""
        self._last[self._count % _N] = raw
        self._count += 1

    def celsius(self, worn=True):
        n = min(self._count, _N)
        if not worn or n == 0:
            return None
        median = sorted(self._last[:n])[n // 2]
        return median / 256 if _LOW <= median <= _HIGH else None
