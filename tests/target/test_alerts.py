# wearsafe.alerts: each threshold raises one alert per episode, and again only
# after the value has been back in range for a minute.
from wearsafe import settings
from wearsafe.alerts import FEVER, HEART_RATE, RESET_S, SPO2_LOW, Alerts
from wearsafe.sensing import Vitals


def _vitals(hr=70, spo2=0.97, temp=36.8):
    v = Vitals()
    v.heart_rate, v.spo2, v.temperature = hr, spo2, temp
    return v


def test_low_spo2_raises_once_per_episode():
    alerts = Alerts(settings.DEFAULTS)
    assert alerts.check(_vitals()) is None
    assert alerts.check(_vitals(spo2=0.89)) == SPO2_LOW
    for _ in range(10):
        assert alerts.check(_vitals(spo2=0.88)) is None  # the same episode
    for _ in range(RESET_S - 1):
        assert alerts.check(_vitals()) is None
    assert alerts.check(_vitals(spo2=0.89)) is None  # back too soon: the same episode
    for _ in range(RESET_S):
        alerts.check(_vitals())
    assert alerts.check(_vitals(spo2=0.89)) == SPO2_LOW  # a new one


def test_heart_rate_out_of_range_must_last_the_set_seconds():
    alerts = Alerts(settings.DEFAULTS)
    for _ in range(settings.DEFAULTS["alert_heart_rate_s"] - 1):
        assert alerts.check(_vitals(hr=130)) is None
    assert alerts.check(_vitals(hr=130)) == HEART_RATE
    alerts = Alerts(settings.DEFAULTS)
    for _ in range(100):  # a minute out of range, but broken by a normal second
        assert alerts.check(_vitals(hr=130 if _ % 50 else 70)) is None


def test_fever_and_missing_values():
    alerts = Alerts(settings.DEFAULTS)
    assert alerts.check(_vitals(hr=None, spo2=None, temp=None)) is None
    assert alerts.check(_vitals(temp=38.6)) == FEVER
    assert alerts.check(_vitals(temp=38.6, spo2=0.85)) == SPO2_LOW  # another kind: its own
