# machine.WDT in simulated time: checked after each sleep; not fed within the
# timeout, the board resets (ports/esp32/machine_wdt.c: the task watchdog).
from simhw import ticks


class Watchdog:
    def __init__(self, timeout_ms, ticks_ms, reset):
        if timeout_ms <= 0:
            raise ValueError("WDT timeout too short")
        self.timeout_ms = timeout_ms
        self._ticks_ms = ticks_ms
        self._reset = reset
        self.feed()

    def feed(self):
        self._fed = self._ticks_ms()

    def check(self):
        if ticks.diff(self._ticks_ms(), self._fed) > self.timeout_ms:
            print("watchdog: not fed for %d ms; resetting" % self.timeout_ms)
            self._reset()
