# Step counting from wrist acceleration.
#
# The squared magnitude of acceleration (orientation-free, no square root)
# is smoothed over 100 ms, its slow mean removed, and each peak above an
# adaptive threshold is a candidate step. Candidates count only as part of
# a rhythm: four in a row with steady intervals (0.25 to 2 s apart, each
# within a factor of two of the last) confirm a walk, and are then counted
# together; a pause of more than 2 s ends it. Hand movements at rest do not
# repeat like that, so they are not counted.
from array import array

from micropython import const

_SMOOTH_MS = const(100)  # the moving average's length
_DC_MS = const(640)  # the slow mean's time constant (rounded down to 2**n samples)
_MIN_PEAK = const(120000)  # mg^2 above the mean: about 0.06 g at 1 g
_CONFIRM = const(4)


class StepCounter:
    def __init__(self, fs):
        self.fs = fs
        self._smooth = max(1, (fs * _SMOOTH_MS + 500) // 1000)
        self._dc_shift = 0
        while 2 << self._dc_shift <= fs * _DC_MS // 1000:
            self._dc_shift += 1
        self.steps = 0
        self._box = array("i", bytes(4 * self._smooth))
        self._box_sum = 0
        self._box_pos = 0
        self._dc = -1
        self._prev = 0
        self._rising = False
        self._t = 0
        self._last_peak = -10 * fs
        self._last_interval = 0
        self._run = 0
        self._peak_level = 2 * _MIN_PEAK
        self._threshold = _MIN_PEAK  # max(_MIN_PEAK, half the typical step peak)
        self._min_gap = fs // 4
        self._max_gap = 2 * fs

    def gap(self):
        """Samples were lost: a rhythm is not carried across them."""
        self._run = 0
        self._last_interval = 0
        self._last_peak = self._t - 10 * self.fs

    def add_from(self, x, y, z, count):
        for i in range(count):
            self.add(x[i], y[i], z[i])

    def add(self, ax, ay, az):
        self._feed(ax * ax + ay * ay + az * az)

    # Small functions on purpose: MicroPython puts a call's frame on the heap
    # once it needs more than 11 words, and these run once per sample.
    def _feed(self, m):
        box = self._box
        self._box_sum += m - box[self._box_pos]
        box[self._box_pos] = m
        self._box_pos = (self._box_pos + 1) % self._smooth
        self._track(self._box_sum // self._smooth)

    def _track(self, smooth):
        if self._dc < 0:
            self._dc = smooth
        self._dc += (smooth - self._dc) >> self._dc_shift
        v = smooth - self._dc
        self._t += 1
        if v < self._prev and self._rising and self._prev >= self._threshold:
            self._peak(self._prev, self._t - 1)
        self._rising = v > self._prev
        self._prev = v

    def _peak(self, height, t):
        gap = t - self._last_peak
        if gap < self._min_gap:
            return  # a bump of the same step
        self._peak_level += (height - self._peak_level) >> 2
        self._threshold = max(_MIN_PEAK, self._peak_level >> 1)
        last = self._last_interval
        steady = gap <= self._max_gap and (last == 0 or (last >> 1 <= gap <= last << 1))
        self._run = self._run + 1 if steady else 1
        self._last_interval = gap if gap <= self._max_gap else 0
        self._last_peak = t
        if self._run == _CONFIRM:
            self.steps += _CONFIRM  # the walk is confirmed: count its first steps too
        elif self._run > _CONFIRM:
            self.steps += 1
