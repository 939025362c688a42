# Physiological models behind the emulated chips. Simulator code: it may
# allocate (floats) freely; the firmware under test must not.
import math
import random
from array import array

# SpO2 calibration, the inverse of the device's (wearsafe.vitals.spo2):
# SpO2 = 1.10 - 0.25 * R  =>  R = (1.10 - SpO2) / 0.25
PPG_DC_IR = 120000.0
PPG_DC_RED = 90000.0
AMBIENT_DC = 1800.0
G_MG = 1000.0


def gauss(sigma):
    u = random.random() or 1e-12
    return sigma * math.sqrt(-2 * math.log(u)) * math.cos(2 * math.pi * random.random())


def _pulse(phase):
    """One heartbeat's blood-volume wave: systolic peak and dicrotic wave, peak ~1."""
    s = (phase - 0.18) / 0.08
    d = (phase - 0.48) / 0.10
    return math.exp(-0.5 * s * s) + 0.35 * math.exp(-0.5 * d * d)


class PpgModel:
    """Red and IR photodiode counts at the chip's sample rate (a pulse is a dip)."""

    def __init__(self, scenario):
        self.s = scenario
        self.phase = 0.0
        self.rr = 60.0 / scenario["hr"]
        self.t = 0.0
        self.replay = _load_csv(scenario["ppg_csv"]) if scenario["ppg_csv"] else None

    def _next_rr(self):
        s = self.s
        wobble = 0.6 * math.sin(2 * math.pi * 0.25 * self.t) + 0.4 * gauss(1.0)
        return 60.0 / s["hr"] * (1 + s["hrv"] * wobble)

    def sample(self, dt):
        s = self.s
        self.t += dt
        if self.replay:
            return self._replay()
        if not s["on_wrist"]:
            return (int(AMBIENT_DC + gauss(s["noise"])), int(AMBIENT_DC + gauss(s["noise"])))
        self.phase += dt / self.rr
        if self.phase >= 1.0:
            self.phase -= 1.0
            self.rr = self._next_rr()
        pulse = _pulse(self.phase)
        spo2 = s["spo2"] if self.t >= s["spo2_from_s"] else 0.98  # desaturating from then
        ratio = (1.10 - spo2) / 0.25
        motion = s["motion"] * math.sin(2 * math.pi * s["cadence"] * self.t) if s["cadence"] \
            else 0.0
        ir = PPG_DC_IR * (1 - s["perfusion"] * pulse + motion) + gauss(s["noise"])
        red = PPG_DC_RED * (1 - s["perfusion"] * ratio * pulse + motion) + gauss(s["noise"])
        return (max(0, min(0x3FFFF, int(red))), max(0, min(0x3FFFF, int(ir))))

    def _replay(self):
        values, rate = self.replay or array("f", [0.0]), self.s["ppg_csv_rate"]
        position = self.t * rate  # resample by linear interpolation
        i = int(position) % len(values)
        frac = position - int(position)
        v = values[i] * (1 - frac) + values[(i + 1) % len(values)] * frac
        return (int(v), int(v))


def _load_csv(path):
    """One column of numbers (a header line is allowed)."""
    values = array("f")  # 4 bytes a value: recordings are long
    with open(path) as f:
        for line in f:
            cell = line.strip().split(",")[0]
            try:
                values.append(float(cell))
            except ValueError:
                if values:
                    raise ValueError("%s: not a number: %r" % (path, cell))
    if len(values) < 2:
        raise ValueError("%s: needs a column of at least two numbers" % path)
    return values


class AccelModel:
    """Wrist acceleration in mg: gravity, steps at a cadence, small hand movements."""

    def __init__(self, scenario):
        self.s = scenario
        self.t = 0.0
        self.jerk_left = 0.0
        self.jerk = (0.0, 0.0, 0.0)

    def sample(self, dt):
        s = self.s
        self.t += dt
        x, y, z = 0.0, 0.0, G_MG
        if s["cadence"]:
            w = 2 * math.pi * s["cadence"] * self.t
            step = s["stride_g"] * G_MG
            z += step * (math.sin(w) + 0.3 * math.sin(2 * w + 0.7))
            x += 0.4 * step * math.sin(w / 2)  # sway at half the step rate
            y += 0.2 * step * math.cos(w)
        if self.jerk_left > 0:
            self.jerk_left -= dt
            x, y, z = x + self.jerk[0], y + self.jerk[1], z + self.jerk[2]
        elif random.random() < s["hand_moves"] / 60.0 * dt:
            self.jerk_left = random.random() * 0.5
            self.jerk = (gauss(120), gauss(120), gauss(120))
        return (x + gauss(15), y + gauss(15), z + gauss(15))


class TempModel:
    def __init__(self, scenario):
        self.s = scenario

    def sample(self):
        return self.s["temp"] if self.s["on_wrist"] else 24.0
