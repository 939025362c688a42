# Simulated time. At speed 0 (tests) it advances only when the firmware
# sleeps, and the emulated chips produce their samples then, so tests run as
# fast as the CPU allows. At speed > 0 (the live simulator) it is the wall
# clock, scaled: time spent working also passes, as on a board, so a loop
# blocked by a TLS handshake or a flash erase finds its FIFOs overflowed.
# With `work` at speed 0 (target tests at ESP32 speed: the process in a CPU
# quota) sleeping takes no time but working does, the wall time it took.
# utime: under the esp32-port model `time` is the model itself.
import os

import utime


def from_env():
    """WEARSAFE_SIM_SPEED (1 = real time, the default; 0 = as fast as possible) and
    WEARSAFE_SIM_WORK=1 (at speed 0: working takes its wall time)."""
    return SimClock(float(os.getenv("WEARSAFE_SIM_SPEED") or "1"),
                    os.getenv("WEARSAFE_SIM_WORK") == "1")


class SimClock:
    def __init__(self, speed=0.0, work=False):
        self.now_us = 0
        self.speed = speed
        self.work = work and not speed
        self._chips = []
        self._start = utime.ticks_us()  # at speed 0 with work: when time was last taken
        self.emulation_us = 0  # wall time the chips' emulation took: the simulator's, not
        # the firmware's work (a real chip samples by itself)

    def attach(self, chip):
        self._chips.append(chip)
        chip.advance(self.now_us)

    def sync(self):
        """At speed > 0: bring simulated time (and the chips) up to the wall clock.
        With work: add the wall time worked since the last look."""
        if self.speed:
            now = int(utime.ticks_diff(utime.ticks_us(), self._start) * self.speed)
            if now > self.now_us:
                self._advance(now)
        elif self.work:
            looked = utime.ticks_us()
            worked = utime.ticks_diff(looked, self._start)
            self._start = looked
            if worked > 0:
                self._advance(self.now_us + worked)

    def ticks_ms(self):
        self.sync()
        return self.now_us // 1000

    def sleep_ms(self, ms):
        if self.speed:
            # Not time.sleep_ms: the unix port wakes every millisecond through
            # it; time.sleep is one select(), so a fleet of sims stays idle.
            utime.sleep(ms / 1000 / self.speed)
            self.sync()
        else:
            self.sync()  # the work before it
            self._advance(self.now_us + ms * 1000)

    def _advance(self, now_us):
        self.now_us = now_us
        began = utime.ticks_us()
        for chip in self._chips:
            chip.advance(now_us)
        self.emulation_us += utime.ticks_diff(utime.ticks_us(), began)
