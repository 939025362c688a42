# Urgent alerts from each second's vitals: SpO2 below a floor, heart rate out of
# a resting range for a while, body temperature above a ceiling (thresholds in
# settings.json). Each episode raises one alert; the kind is raised again only
# after its value has been back in range for RESET_S seconds, so a reading that
# hovers at a threshold does not flood the outbox. An alert is sealed like any
# message and names only its kind: the readings go in the batch as always.
from micropython import const

RESET_S = const(60)
SPO2_LOW = "spo2-low"
HEART_RATE = "heart-rate-out-of-range"
FEVER = "temperature-high"


class Alerts:
    def __init__(self, config):
        self.spo2_below = config["alert_spo2_below"]
        self.hr_low = config["alert_heart_rate_low"]
        self.hr_high = config["alert_heart_rate_high"]
        self.hr_seconds = config["alert_heart_rate_s"]
        self._hr_out = 0  # seconds in a row out of range
        # kind -> seconds back in range since it was raised (-1: not raised)
        self._normal = {SPO2_LOW: -1, HEART_RATE: -1, FEVER: -1}
        self.temp_above = config["alert_temp_above"]

    def check(self, vitals):
        """The kind of alert this second's vitals raise, or None."""
        hr = vitals.heart_rate
        if hr is not None:
            self._hr_out = self._hr_out + 1 if not self.hr_low <= hr <= self.hr_high else 0
        raised = None
        for kind, bad, known in (
                (SPO2_LOW, vitals.spo2 is not None and vitals.spo2 < self.spo2_below,
                 vitals.spo2 is not None),
                (HEART_RATE, self._hr_out >= self.hr_seconds, hr is not None),
                (FEVER, vitals.temperature is not None and vitals.temperature > self.temp_above,
                 vitals.temperature is not None)):
            if self._step(kind, bad, known) and raised is None:
                raised = kind
        return raised

    def _step(self, kind, bad, known):
        """True when `kind` is raised now."""
        normal = self._normal[kind]
        if bad:
            self._normal[kind] = 0
            return normal < 0
        if known and normal >= 0:
            self._normal[kind] = -1 if normal + 1 >= RESET_S else normal + 1
        return False
