# The sensor loop: polls the chips' FIFOs every 100 ms (each holds 1.28 s:
# 32 samples at 25/s), feeds the estimators, and gives one set
# of vitals per second. Both are realtime tasks: they go on while the
# application works (link, updates, sealing). A chip that is missing at start
# is reported once and the others keep running; a bus error in the middle
# of a read (a loose wire: OSError ENODEV or ETIMEDOUT) is counted and the
# read tried again at the next poll. Deadlines use ticks_add/ticks_diff: ticks wrap at 2^30 ms
# (12.4 days) on the ESP32.
#
# Gaps are facts: a FIFO that overflowed because the loop came late (a TLS
# handshake, a flash erase, a signature check) or a read cut short on the bus
# lost samples. Each is counted (the PPG's lost samples by its OVF_COUNTER,
# the accelerometer's overruns as events), goes out in the next pack, and the
# estimators start their windows again: no heart rate is computed across a gap.
from array import array

from micropython import const

from wearsafe import log, realtime
from wearsafe.sensors import SensorError, lis3dh, max30102, max30205
from wearsafe.vitals.ppg import HeartRateEstimator, Spo2Estimator
from wearsafe.vitals.steps import StepCounter
from wearsafe.vitals.temperature import BodyTemperature

POLL_MS = const(100)
# With the radio off nothing stalls the loop for long (no handshake, no download):
# the FIFOs are read less often and the CPU sleeps longer between reads.
POLL_ASLEEP_MS = const(500)
REPORT_MS = const(1000)


class Vitals:
    """One second's vitals; None where the signal did not allow a value."""

    def __init__(self):
        self.heart_rate = None
        self.spo2 = None
        self.temperature = None
        self.steps = 0
        self.worn = False
        self.ppg_lost = 0  # samples the PPG FIFO dropped in this second
        self.accel_overruns = 0  # accelerometer FIFO overruns in this second


class SensorHub:
    def __init__(self, bus, bus_name, sleep_ms=None):
        self.errors = []
        self.bus_errors = 0  # reads that failed on the bus since start
        self.longest_stall_ms = 0  # longest time between two polls since last taken
        self.ppg_lost = 0  # since start: samples the PPG FIFO dropped (a lower bound)
        self.accel_overruns = 0  # since start: accelerometer FIFO overruns
        self._ppg_lost_reported = self._overruns_reported = 0
        self.ppg = self._start(lambda: max30102.MAX30102(bus, bus_name, sleep_ms=sleep_ms))
        self.thermometer = self._start(lambda: max30205.MAX30205(bus, bus_name))
        self.accel = self._start(lambda: lis3dh.LIS3DH(bus, bus_name, sleep_ms=sleep_ms))
        self._red = array("i", bytes(4 * max30102.FIFO_DEPTH))
        self._ir = array("i", bytes(4 * max30102.FIFO_DEPTH))
        self._x = array("i", bytes(4 * lis3dh.FIFO_DEPTH))
        self._y = array("i", bytes(4 * lis3dh.FIFO_DEPTH))
        self._z = array("i", bytes(4 * lis3dh.FIFO_DEPTH))
        self.heart = HeartRateEstimator(max30102.SAMPLE_RATE)
        self.oximeter = Spo2Estimator(max30102.SAMPLE_RATE, self.heart.channel)
        self.stepper = StepCounter(lis3dh.SAMPLE_RATE)
        self.body = BodyTemperature()

    def _start(self, make):
        try:
            chip = make()
            chip.start()
            return chip
        except (SensorError, OSError) as e:
            self.errors.append(str(e))
            log.error("sensor-unavailable", e)
            return None

    def _bus_error(self, name, chip, error):
        """Count it, and restart the chip: a read cut short leaves its FIFO pointers
        mid-sample, so the FIFO starts over (at most one FIFO of samples lost)."""
        self.bus_errors += 1
        if self.bus_errors & (self.bus_errors - 1) == 0:  # 1st, 2nd, 4th, ...: no log flood
            log.warn("sensor-bus-error", name, error, "errors", self.bus_errors)
        try:
            chip.start()
        except (SensorError, OSError):
            pass  # still off the bus: the next poll tries again

    def poll(self):
        """Drain the FIFOs into the estimators: the per-sample path, allocation-free."""
        if self.ppg:
            overflows = self.ppg.overflows
            try:
                n = self.ppg.read(self._red, self._ir)
                lost = self.ppg.overflows - overflows
            except OSError as e:
                self._bus_error("max30102", self.ppg, e)
                n, lost = 0, 1  # at most a FIFO: how many is not known
            if lost:
                self.ppg_lost += lost
                self.heart.channel.reset()  # the samples after a gap start a new window
                self.oximeter.reset()
            self.heart.add_from(self._ir, n)
            self.oximeter.add_from(self._red, self._ir, n)
        if self.accel:
            overruns = self.accel.overruns
            try:
                n = self.accel.read(self._x, self._y, self._z)
                lost = self.accel.overruns - overruns
            except OSError as e:
                self._bus_error("lis3dh", self.accel, e)
                n, lost = 0, 1
            if lost:
                self.accel_overruns += lost
                self.stepper.gap()
            self.stepper.add_from(self._x, self._y, self._z, n)

    def vitals(self, out):
        """Fill out (a Vitals) with this second's values."""
        worn = self.ppg is not None and self.heart.channel.on_skin()
        out.worn = worn
        out.heart_rate = self.heart.bpm() if worn else None
        # SpO2 only alongside a trusted pulse: motion fools the ratio of ratios.
        out.spo2 = self.oximeter.spo2() if out.heart_rate is not None else None
        if self.thermometer:
            try:
                self.body.add_raw(self.thermometer.read_raw())
            except OSError as e:
                self._bus_error("max30205", self.thermometer, e)
        out.temperature = self.body.celsius(worn) if self.thermometer else None
        out.steps = self.stepper.steps
        out.ppg_lost = self.ppg_lost - self._ppg_lost_reported
        out.accel_overruns = self.accel_overruns - self._overruns_reported
        self._ppg_lost_reported, self._overruns_reported = self.ppg_lost, self.accel_overruns
        return out


def start(hub, board, on_second):
    """Sense in the background from now on (realtime's tasks): the FIFOs drained every
    POLL_MS (the poll task is returned: realtime.set_period), and each second
    on_second(vitals) with that second's Vitals (one object, refilled). Both run
    wherever the application calls realtime.service() or realtime.sleep_ms(),
    so the readings keep time whatever else the device does."""
    out = Vitals()
    last_poll = board.ticks_ms()

    def poll():
        nonlocal last_poll
        now = board.ticks_ms()
        stall = board.ticks_diff(now, last_poll)  # the loop's own work included
        if stall > hub.longest_stall_ms:
            hub.longest_stall_ms = stall
        last_poll = now
        hub.poll()

    def second():
        on_second(hub.vitals(out))

    # a second the device missed (the task came late) is skipped, not made up
    # with copies of the next one (realtime.service)
    polling = realtime.every(board, POLL_MS, poll)
    realtime.every(board, REPORT_MS, second, first_in=REPORT_MS)
    return polling


def run(hub, board, seconds=None):
    """Yield a Vitals once per second for `seconds` or forever (start()'s, in a loop
    that does nothing else)."""
    done = []

    def second(vitals):
        done.append(vitals)

    start(hub, board, second)
    try:
        reported = 0
        while seconds is None or reported < seconds:
            while not done:
                realtime.sleep_ms(board, realtime.due_in_ms())
            vitals = done.pop()
            done.clear()
            reported += 1
            yield vitals
    finally:
        realtime.stop()
