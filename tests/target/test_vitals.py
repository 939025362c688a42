# Vitals accuracy against the physiological models: heart rate, SpO2,
# off-wrist, steps and rest.
import random

from simhw import scenarios
from simhw.physio import AccelModel, PpgModel
from wearsafe.sensors import lis3dh, max30102
from wearsafe.vitals.ppg import HeartRateEstimator, Spo2Estimator
from wearsafe.vitals.steps import StepCounter
from wearsafe.vitals.temperature import BodyTemperature

UNIX_ONLY = True  # uses the sim board's models
TIMEOUT = 300
FS = max30102.SAMPLE_RATE  # the FIFO's samples per second, as the device feeds them
CONVERSIONS = 100  # the chip's conversions per second, averaged into each FIFO sample


def _wearer(**changes):
    wearer = scenarios.load("rest")
    wearer.update(changes)
    return wearer


def _feed(model, seconds, *estimators, invert=False):
    per = CONVERSIONS // FS
    for _ in range(int(seconds * FS)):
        red = ir = 0
        for _ in range(per):  # as the MAX30102 averages (SMP_AVE)
            r, i = model.sample(1 / CONVERSIONS)
            red, ir = red + r, ir + i
        red, ir = red // per, ir // per
        if invert:  # a recording where the pulse is a peak, not a dip
            red, ir = 300000 - red, 300000 - ir
        for estimator in estimators:
            if isinstance(estimator, Spo2Estimator):
                estimator.red.add(red)
                estimator.ir.add(ir)
            else:
                estimator.add((ir,))


def test_heart_rate_within_2_bpm_from_40_to_180_with_noise_and_hrv():
    random.seed(1)
    for bpm in (40, 60, 90, 120, 150, 180):
        for invert in (False, True):
            model = PpgModel(_wearer(hr=bpm, hrv=0.04, noise=120))
            hr = HeartRateEstimator(FS)
            _feed(model, 10, hr, invert=invert)
            for _ in range(5):  # every second after the first 10
                estimate = hr.bpm()
                assert estimate is not None and abs(estimate - bpm) <= 2, (bpm, invert, estimate)
                _feed(model, 1, hr, invert=invert)


def test_spo2_within_2_points_from_85_to_100_percent():
    random.seed(2)
    for percent in (85, 88, 91, 94, 97, 100):
        model = PpgModel(_wearer(spo2=percent / 100, hr=75))
        spo2 = Spo2Estimator(FS)
        _feed(model, 10, spo2)
        estimate = spo2.spo2()
        assert estimate is not None and abs(estimate * 100 - percent) <= 2, (percent, estimate)


def test_off_wrist_gives_no_values_within_3_seconds():
    random.seed(3)
    wearer = _wearer(hr=70)
    model = PpgModel(wearer)
    hr, spo2 = HeartRateEstimator(FS), Spo2Estimator(FS)
    _feed(model, 10, hr, spo2)
    assert hr.bpm() is not None and spo2.spo2() is not None
    wearer["on_wrist"] = False
    _feed(model, 3, hr, spo2)
    assert hr.bpm() is None and spo2.spo2() is None


def test_noise_alone_is_not_a_heart_rate():
    random.seed(4)
    model = PpgModel(_wearer(perfusion=0.0, noise=400))
    hr = HeartRateEstimator(FS)
    _feed(model, 10, hr)
    assert hr.bpm() is None


def _walk(counter, model, seconds, fs=lis3dh.SAMPLE_RATE):
    for _ in range(int(seconds * fs)):
        counter.add(*[int(v) for v in model.sample(1 / fs)])


def test_1000_steps_at_1_5_to_2_2_steps_per_second_within_5_percent():
    random.seed(5)
    for cadence in (1.5, 1.8, 2.2):
        counter = StepCounter(lis3dh.SAMPLE_RATE)
        _walk(counter, AccelModel(_wearer(cadence=cadence, stride_g=0.35, hand_moves=0)),
              1000 / cadence)
        assert abs(counter.steps - 1000) <= 50, (cadence, counter.steps)


def test_after_a_gap_a_walk_must_show_its_rhythm_again_before_steps_count():
    random.seed(7)
    model = AccelModel(_wearer(cadence=2.0, stride_g=0.35, hand_moves=0))
    counter = StepCounter(lis3dh.SAMPLE_RATE)
    _walk(counter, model, 10)  # a walk in progress: each step counts at once
    before = counter.steps
    _walk(counter, model, 1)
    assert counter.steps - before >= 1
    counter.gap()  # samples were lost: the rhythm is not carried across
    before = counter.steps
    _walk(counter, model, 1.2)  # two or three steps: not yet a confirmed rhythm
    assert counter.steps == before, counter.steps - before
    _walk(counter, model, 10)
    assert abs(counter.steps - before - 22) <= 2  # confirmed, its first steps counted too


def test_ten_minutes_of_rest_with_small_hand_movements_is_under_20_steps():
    random.seed(6)
    counter = StepCounter(lis3dh.SAMPLE_RATE)
    _walk(counter, AccelModel(_wearer(hand_moves=3)), 600)
    assert counter.steps < 20, counter.steps


def test_body_temperature_only_when_worn_and_plausible():
    t = BodyTemperature()
    assert t.celsius() is None
    for raw in (9370, 9371, 20000, 9372, 9369):  # one glitch among 36.6 C readings
        t.add_raw(raw)
    assert abs(t.celsius() - 9370 / 256) < 0.01
    assert t.celsius(worn=False) is None
    for _ in range(5):
        t.add_raw(24 * 256)  # ambient: off the skin
    assert t.celsius() is None


def test_a_recorded_waveform_replays_from_csv_resampled():
    import math

    rate, bpm = 125, 72
    with open("recording.csv", "w") as f:  # a pulse is a peak here, as most recorders store it
        f.write("ppg\n")
        for i in range(rate * 20):
            phase = (i / rate * bpm / 60) % 1.0
            f.write("%d\n" % (50000 + 3000 * math.exp(-0.5 * ((phase - 0.2) / 0.1) ** 2)))
    model = PpgModel(_wearer(ppg_csv="recording.csv", ppg_csv_rate=rate))
    hr = HeartRateEstimator(FS)
    _feed(model, 12, hr)
    assert abs(hr.bpm() - bpm) <= 2


def test_a_bad_csv_is_a_clear_error():
    with open("bad.csv", "w") as f:
        f.write("ppg\n1\n2\nthree\n")
    try:
        PpgModel(_wearer(ppg_csv="bad.csv", ppg_csv_rate=100))
    except ValueError as e:
        assert str(e) == "bad.csv: not a number: 'three'"
    else:
        raise AssertionError("accepted a bad CSV")
