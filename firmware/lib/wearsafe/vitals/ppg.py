# Heart rate and SpO2 from PPG (photoplethysmogram) samples.
#
# Each channel is decimated to about 25 samples/s (averaging: a low-pass),
# its DC is tracked with two integer exponential averages (fast, to remove
# it; slow, as the level for perfusion and SpO2) and its AC kept in a ring
# of the last 8 seconds. Heart rate comes from the autocorrelation of that
# AC: the strongest repeating lag between 30 and 220 beats/min, refined by
# parabolic interpolation. Autocorrelation does not care whether a pulse is
# a dip (MAX30102 raw counts: blood absorbs light) or a peak (most
# recordings), and its height at the chosen lag is the signal-quality
# verdict: a noisy, moving or absent pulse does not repeat.
from array import array

from micropython import const

from wearsafe import realtime

_TARGET_RATE = const(25)
_WINDOW_S = const(8)
_MIN_SECONDS = const(4)
_FAST = const(4)  # DC removal: time constant 2**4 samples, 0.64 s at 25 Hz
_SLOW = const(6)  # DC level: 2**6 samples, 2.6 s
_FP = const(4)  # fixed-point fraction bits of the DC trackers
OFF_WRIST_DC = const(20000)  # counts: below this the photodiode sees no skin
MIN_QUALITY = 0.5  # normalized autocorrelation at the heart-rate lag
MIN_PERFUSION = 0.0015  # AC/DC of the IR channel


class PpgChannel:
    def __init__(self, fs):
        self.decimation = max(1, (fs + _TARGET_RATE // 2) // _TARGET_RATE)
        self.rate = fs / self.decimation
        self.size = int(_WINDOW_S * self.rate)
        self.ring = array("i", bytes(4 * self.size))
        self.pos = 0
        self.filled = 0
        self._sum = 0
        self._count = 0
        self.fast = -1
        self.slow = 0

    def reset(self):
        self.pos = self.filled = self._sum = self._count = 0
        self.fast = -1

    def add(self, x):
        self._sum += x
        self._count += 1
        if self._count < self.decimation:
            return
        v = (self._sum // self.decimation) << _FP
        self._sum = self._count = 0
        if self.fast < 0:
            self.fast = self.slow = v
        self.fast += (v - self.fast) >> _FAST
        self.slow += (v - self.slow) >> _SLOW
        self.ring[self.pos] = (v - self.fast) >> _FP
        self.pos = (self.pos + 1) % self.size
        if self.filled < self.size:
            self.filled += 1

    def level(self):
        """The DC level in counts (0 before any sample)."""
        return self.slow >> _FP

    def on_skin(self):
        return self.fast >= OFF_WRIST_DC << _FP

    def window(self):
        """The AC samples of the window, oldest first (allocates: once per estimate)."""
        n, start = self.filled, (self.pos - self.filled) % self.size
        return [self.ring[(start + i) % self.size] for i in range(n)]

    def rms(self, samples):
        mean = sum(samples) / len(samples)
        return (sum((s - mean) * (s - mean) for s in samples) / len(samples)) ** 0.5

    def ready(self):
        return self.filled >= _MIN_SECONDS * self.rate and self.on_skin()


def _autocorrelation(x, lag):
    total = 0
    for i in range(len(x) - lag):
        total += x[i] * x[i + lag]
    return total / (len(x) - lag)


def period(channel, near=None):
    """(period in samples of the channel's rate, quality 0..1), or None. With `near`
    (the last period found) only the lags within a third of it are tried: the pulse
    does not jump that far in a second, and it costs a fifth of the full search."""
    if not channel.ready():
        return None
    x = channel.window()
    mean = sum(x) // len(x)
    x = [v - mean for v in x]
    energy = _autocorrelation(x, 0)
    if energy <= 0:
        return None
    lo = max(2, int(channel.rate * 60 / 220))
    hi = min(len(x) // 2, int(channel.rate * 60 / 30) + 1)
    if near is not None:
        lo, hi = max(lo, int(near * 3 / 4)), min(hi, int(near * 4 / 3) + 1)
    r = []
    for k in range(lo - 1, hi + 2):
        r.append(_autocorrelation(x, k) / energy)
        realtime.service()  # about a FIFO's worth of work on an ESP32: x is our own copy
    peaks = [i for i in range(1, len(r) - 1) if r[i] >= r[i - 1] and r[i] > r[i + 1]]
    if not peaks:
        return None
    best = max(r[i] for i in peaks)
    if best < MIN_QUALITY:
        return None
    # The shortest lag that repeats nearly as well: the beat, not a multiple of it.
    i = next(i for i in peaks if r[i] >= 0.8 * best)
    curve = r[i - 1] - 2 * r[i] + r[i + 1]
    shift = 0.5 * (r[i - 1] - r[i + 1]) / curve if curve else 0.0
    return lo - 1 + i + shift, r[i]


_FULL_EVERY = const(5)  # seconds: the whole range is searched again this often


class HeartRateEstimator:
    def __init__(self, fs):
        self.channel = PpgChannel(fs)
        self._last = None  # the last period found, while it is being tracked
        self._tracked = 0

    def add(self, samples):
        add = self.channel.add
        for x in samples:
            add(x)

    def add_from(self, buf, count):
        """The first count samples of buf (the sensor loop's path: no allocation)."""
        channel = self.channel
        for i in range(count):
            channel.add(buf[i])

    def bpm(self):
        near = self._last if self._tracked % _FULL_EVERY else None
        found = period(self.channel, near)
        if found is None:
            self._last, self._tracked = None, 0
            return None
        self._last, self._tracked = found[0], self._tracked + 1
        return 60 * self.channel.rate / found[0]


class Spo2Estimator:
    """SpO2 by the ratio of ratios R = (AC_red / DC_red) / (AC_ir / DC_ir).

    Calibration: SpO2 = 1.10 - 0.25 * R (as a 0..1 ratio), the linear empirical
    curve of the pulse-oximetry literature and vendor application notes. It
    is a starting point: a product calibrates its own optics and enclosure
    against a reference CO-oximeter and replaces these two coefficients.
    """

    A = 1.10
    B = 0.25

    def __init__(self, fs, ir=None):
        """ir: the heart rate's IR channel, fed by it (the same samples, filtered once)."""
        self.red = PpgChannel(fs)
        self._own_ir = ir is None
        self.ir = PpgChannel(fs) if ir is None else ir

    def add_from(self, red, ir, count):
        add = self.red.add
        for i in range(count):
            add(red[i])
        if self._own_ir:
            add = self.ir.add
            for i in range(count):
                add(ir[i])

    def reset(self):
        self.red.reset()
        self.ir.reset()

    def ratio(self):
        if not (self.red.ready() and self.ir.ready()):
            return None
        ac_red, ac_ir = self.red.rms(self.red.window()), self.ir.rms(self.ir.window())
        perfusion = ac_ir / self.ir.level()
        if perfusion < MIN_PERFUSION or ac_red <= 0:
            return None
        return (ac_red / self.red.level()) / perfusion

    def spo2(self):
        r = self.ratio()
        if r is None or not 0.2 <= r <= 1.6:  # outside the curve's validated range
            return None
        return min(1.0, self.A - self.B * r)
