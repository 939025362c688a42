# The real drivers against the emulated chips of the sim board.
from array import array

import board
from simhw import chips, scenarios
from simhw.clock import SimClock
from simhw.i2c import SimI2C
from wearsafe import sensing
from wearsafe.sensors import SensorError, lis3dh, max30102, max30205
from wstest import raises

UNIX_ONLY = True  # needs the sim board's emulated chips
# The estimators allocate their window once per estimate (a list per second); on
# the 64-bit unix port (objects up to twice their ESP32 size) this module's tests
# need more than the default 96K, still less room than an ESP32's 110K heap.
HEAP = "128K"


def _bus(scenario="rest", missing=(), **changes):
    wearer = scenarios.load(scenario)
    wearer.update(changes)
    clock, bus = SimClock(0), SimI2C()
    for name in chips.CHIPS:
        if name not in missing:
            address, emulation = chips.CHIPS[name]
            chip = emulation(wearer)
            bus.attach(address, chip)
            clock.attach(chip)
    return bus, clock


def test_ppg_fifo_delivers_25_samples_per_second_each_the_mean_of_4_conversions():
    bus, clock = _bus()
    ppg = max30102.MAX30102(bus, "test-bus", sleep_ms=clock.sleep_ms)
    ppg.start()
    assert bus.readfrom_mem(max30102.ADDRESS, 0x08, 1) == b"\x50"  # SMP_AVE 4, rollover
    assert bus.readfrom_mem(max30102.ADDRESS, 0x0A, 1) == b"\x27"  # 100 conversions/s
    red, ir = array("i", bytes(128)), array("i", bytes(128))
    total = 0
    for _ in range(5):
        clock.sleep_ms(200)
        n = ppg.read(red, ir)
        assert n == 5
        total += n
        for i in range(n):
            assert 60000 < red[i] < 0x3FFFF and 80000 < ir[i] < 0x3FFFF
    assert total == max30102.SAMPLE_RATE == 25 and ppg.overflows == 0


def test_ppg_read_too_late_reports_the_overflow_and_keeps_the_newest():
    bus, clock = _bus()
    ppg = max30102.MAX30102(bus, "test-bus")
    ppg.start()
    red, ir = array("i", bytes(128)), array("i", bytes(128))
    clock.sleep_ms(2000)  # 50 samples into a 32-sample FIFO
    assert ppg.read(red, ir) == 32
    assert ppg.overflows == 18
    clock.sleep_ms(200)
    assert ppg.read(red, ir) == 5


def test_ppg_soft_reset_clears_the_fifo_and_mode():
    bus, clock = _bus()
    ppg = max30102.MAX30102(bus, "test-bus")
    ppg.start()
    clock.sleep_ms(800)
    ppg.start()  # reset again: the 20 samples are gone
    red, ir = array("i", bytes(128)), array("i", bytes(128))
    assert ppg.read(red, ir) == 0


def test_accelerometer_at_25_hz_reads_gravity_in_milli_g():
    bus, clock = _bus()
    acc = lis3dh.LIS3DH(bus, "test-bus", sleep_ms=clock.sleep_ms)
    acc.start()
    x, y, z = array("i", bytes(128)), array("i", bytes(128)), array("i", bytes(128))
    clock.sleep_ms(400)
    n = acc.read(x, y, z)
    assert n == 10 == 0.4 * lis3dh.SAMPLE_RATE
    for i in range(n):
        assert 900 < z[i] < 1100 and -150 < x[i] < 150
    assert acc.overruns == 0


def test_lis3dh_waits_for_boot():
    bus, clock = _bus()
    # The emulated chip is strict: for 5 ms after BOOT, writes are lost and reads give 0.
    bus.writeto_mem(lis3dh.ADDRESS, 0x24, b"\x80")
    bus.writeto_mem(lis3dh.ADDRESS, 0x20, b"\x47")
    assert bus.readfrom_mem(lis3dh.ADDRESS, 0x0F, 1) == b"\x00"  # not even WHO_AM_I
    clock.sleep_ms(4)
    assert bus.readfrom_mem(lis3dh.ADDRESS, 0x0F, 1) == b"\x00"
    clock.sleep_ms(1)
    assert bus.readfrom_mem(lis3dh.ADDRESS, 0x0F, 1) == bytes((lis3dh.WHO_AM_I_VALUE,))
    assert bus.readfrom_mem(lis3dh.ADDRESS, 0x20, 1) == b"\x07"  # the ODR write was lost

    # The driver sleeps (through the sleep_ms it is given) before it configures the chip.
    slept = []

    def sleep_ms(ms):
        slept.append(ms)
        clock.sleep_ms(ms)

    acc = lis3dh.LIS3DH(bus, "test-bus", sleep_ms=sleep_ms)
    acc.start()
    # 25 Hz, all axes; BDU, +-4 g, high resolution; FIFO on, in stream mode
    for register, value in ((0x20, 0x37), (0x23, 0x98), (0x24, 0x40), (0x2E, 0x80)):
        assert bus.readfrom_mem(lis3dh.ADDRESS, register, 1)[0] == value, hex(register)
    assert sum(slept) >= 5, slept
    x, y, z = array("i", bytes(128)), array("i", bytes(128)), array("i", bytes(128))
    clock.sleep_ms(400)
    assert acc.read(x, y, z) == 10 and 900 < z[0] < 1100


def test_thermometer_reads_body_temperature_in_1_256_celsius():
    bus, _ = _bus("fever")
    t = max30205.MAX30205(bus, "test-bus")
    t.start()
    assert t.read_raw() == round(38.9 * 256)
    assert abs(t.read_celsius() - 38.9) < 1 / 256


def test_missing_chips_and_wrong_ids_name_bus_address_and_ids():
    bus, _ = _bus(missing=("max30102", "max30205"))
    e = raises(SensorError, max30102.MAX30102, bus, "test-bus")
    assert str(e) == ("MAX30102: no answer on test-bus at address 0x57 (expected id 0x15 at "
                      "register 0xff): check wiring and power")
    e = raises(SensorError, max30205.MAX30205, bus, "test-bus")
    assert "no answer on test-bus at address 0x48" in str(e)
    bus.attach(0x57, bus.chips[0x18])  # an LIS3DH where the MAX30102 should be
    e = raises(SensorError, max30102.MAX30102, bus, "test-bus")
    assert str(e) == ("MAX30102: wrong id on test-bus at address 0x57: register 0xff reads "
                      "0x00, expected 0x15")


def test_the_hub_keeps_running_the_sensors_it_has():
    bus, clock = _bus(missing=("max30205",))
    hub = sensing.SensorHub(bus, "test-bus", clock.sleep_ms)
    assert hub.thermometer is None and hub.ppg and hub.accel
    assert len(hub.errors) == 1 and "MAX30205" in hub.errors[0]
    out = sensing.Vitals()
    for _ in range(100):
        clock.sleep_ms(100)
        hub.poll()
    hub.vitals(out)
    assert out.temperature is None and out.heart_rate is not None and out.worn


def test_the_sensor_loop_on_the_board_gives_vitals_each_second():
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    t0 = board.ticks_ms()
    seconds = 0
    for vitals in sensing.run(hub, board, seconds=12):  # noqa: B007 (the last is checked below)
        seconds += 1
    assert seconds == 12 and 11900 <= board.ticks_ms() - t0 <= 12200
    assert abs(vitals.heart_rate - 62) <= 2 and abs(vitals.spo2 - 0.98) <= 0.02
    assert abs(vitals.temperature - 36.6) < 0.01 and vitals.steps < 5
    assert hub.ppg.overflows == 0 and hub.accel.overruns == 0


def _allocated_per_poll(hub, clock, interval_ms):
    import micropython

    allocated = 0
    for _ in range(20):
        clock.sleep_ms(interval_ms)  # the emulated chips allocate here, outside the firmware
        before = micropython.mem_total()
        hub.poll()
        allocated += micropython.mem_total() - before
    return allocated // 20


def test_the_poll_path_allocates_nothing_per_sample():
    bus, clock = _bus("rest", hand_moves=0)  # no steps: per-step work is not per sample
    hub = sensing.SensorHub(bus, "test-bus", clock.sleep_ms)
    for _ in range(20):  # warm up: estimators and FIFOs in their steady state
        clock.sleep_ms(100)
        hub.poll()
    # Three times the samples per poll, the same bytes: nothing is allocated per sample.
    # What remains is per call (MicroPython puts frames over 11 words on the heap).
    per_poll = _allocated_per_poll(hub, clock, 100)
    assert _allocated_per_poll(hub, clock, 300) == per_poll
    assert per_poll < 1024, per_poll


def _poll_for(hub, clock, seconds):
    for _ in range(seconds * 10):
        clock.sleep_ms(sensing.POLL_MS)
        hub.poll()


def test_a_late_loop_is_a_counted_gap_and_no_heart_rate_is_computed_across_it():
    from wearsafe import cbor, senml
    from wearsafe.batch import Batch

    bus, clock = _bus("rest")  # 62 beats/min: the wearer's noise is random, rest is steady
    hub = sensing.SensorHub(bus, "test-bus", clock.sleep_ms)
    out = sensing.Vitals()
    _poll_for(hub, clock, 9)
    hub.vitals(out)
    assert abs(out.heart_rate - 62) <= 2 and out.ppg_lost == 0 and out.accel_overruns == 0
    # The loop blocked for 3 s (longer than any TLS flight on the chip): 75 PPG
    # samples met a 32-sample FIFO, 75 acceleration samples a 32-level one.
    clock.sleep_ms(3000)
    hub.poll()
    hub.vitals(out)
    assert out.ppg_lost == 31  # OVF_COUNTER saturates at 31: a lower bound, said as such
    assert out.accel_overruns == 1 and hub.ppg_lost == 31
    assert out.heart_rate is None and out.spo2 is None  # the window starts again
    _poll_for(hub, clock, 1)
    assert hub.vitals(out).heart_rate is None and out.ppg_lost == 0  # counted once
    _poll_for(hub, clock, 8)
    hub.vitals(out)
    assert abs(out.heart_rate - 62) <= 2, out.heart_rate  # right again, from clean samples

    batch = Batch("d1", seconds=2)
    batch.clear(1767225600)
    gap = sensing.Vitals()
    gap.ppg_lost, gap.accel_overruns = 31, 1
    batch.add(gap)
    assert batch.add(sensing.Vitals())
    records = senml.resolve(cbor.decode(batch.pack()))
    lost = {r["n"]: (r["v"], r["u"], r["t"]) for r in records if "lost" in r["n"] or
            "overrun" in r["n"]}
    assert lost == {"d1/ppg-lost": (31, "count", 1767225600),
                    "d1/accel-overrun": (1, "count", 1767225600)}, records


class _Board:
    """What sensing.run needs of a board, over a test's clock."""

    def __init__(self, clock):
        self.clock = clock
        self.ticks_ms = clock.ticks_ms
        self.sleep_ms = clock.sleep_ms

    def ticks_add(self, t, delta):
        return t + delta

    def ticks_diff(self, a, b):
        return a - b


def test_seconds_the_loop_missed_are_skipped_not_made_up():
    from wearsafe.batch import Batch

    bus, clock = _bus("rest")
    hub = sensing.SensorHub(bus, "test-bus", clock.sleep_ms)
    yielded = []
    for _ in sensing.run(hub, _Board(clock), seconds=8):
        yielded.append(clock.ticks_ms())
        if len(yielded) == 3:
            clock.sleep_ms(3500)  # the app's work held the loop 3.5 s (a handshake)
    gaps = [yielded[i + 1] - yielded[i] for i in range(len(yielded) - 1)]
    # after the stall: the next second on the loop's grid, no burst of copies
    assert gaps[2] >= 3500 and min(gaps) >= 400, gaps

    batch = Batch("d1", seconds=4)  # readings keep the clock's time, each after the last
    batch.clear(1000)
    for now_s in (1000, 1001, 1001, 1005):
        batch.add(sensing.Vitals(), now_s)
    assert batch.series["steps"] == [(5, 0)]
    batch.clear(1005)  # the next batch starts where the clock is: no time used twice
    batch.add(sensing.Vitals(), 1005)
    assert batch.last_time == 1006
