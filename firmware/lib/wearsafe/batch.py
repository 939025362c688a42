# Collects a period of vitals into SenML series and packs them: one message
# per batch (default 60 s) instead of one per reading.
from wearsafe import senml

TEMPERATURE_EVERY_S = 10  # body temperature changes slowly


class Batch:
    def __init__(self, device_id, seconds=60):
        self.device_id = device_id
        self.seconds = seconds
        self.last_time = -1  # Unix time of the last reading, kept across batches
        self.clear(0)

    def clear(self, base_time):
        self.base_time = base_time
        self.elapsed = 0
        self.steps_at_start = None
        self.series: dict = {"heart-rate": [], "spo2": [], "body-temp": [], "steps": [],
                             "outbox-dropped": [], "ppg-lost": [], "accel-overrun": []}

    def note_dropped(self, count):
        """Report in this batch that the outbox dropped `count` older messages."""
        if count:
            self.series["outbox-dropped"].append((max(self.last_time - self.base_time, 0),
                                                  count))

    def add(self, vitals, now_s=None):
        """One second of vitals read at Unix time `now_s` (default: the next second);
        returns True when the batch holds `seconds` of them. Each reading's time is
        the clock's, and later than the one before, in this batch or the last: a
        loop that came late leaves a gap in the times, never two readings at one."""
        if now_s is None:
            now_s = self.base_time + self.elapsed
        self.last_time = max(now_s, self.last_time + 1)
        t = self.last_time - self.base_time
        if self.steps_at_start is None:
            self.steps_at_start = vitals.steps
        if vitals.heart_rate is not None:
            self.series["heart-rate"].append((t, round(vitals.heart_rate)))
        if vitals.spo2 is not None:
            self.series["spo2"].append((t, round(vitals.spo2 * 1024) / 1024))
        if vitals.temperature is not None and self.elapsed % TEMPERATURE_EVERY_S == 0:
            self.series["body-temp"].append((t, vitals.temperature))
        if vitals.ppg_lost:  # a gap in the signal is reported, not hidden
            self.series["ppg-lost"].append((t, vitals.ppg_lost))
        if vitals.accel_overruns:
            self.series["accel-overrun"].append((t, vitals.accel_overruns))
        self.elapsed += 1
        if self.elapsed < self.seconds:
            return False
        self.series["steps"].append((t, vitals.steps - self.steps_at_start))
        return True

    def readings(self):
        return sum(len(points) for points in self.series.values())

    def pack(self):
        series = {q: points for q, points in self.series.items() if points}
        return senml.encode_pack(self.device_id, self.base_time, series)
