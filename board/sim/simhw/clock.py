# Simulated time. It advances only when the firmware sleeps, and the
# emulated chips produce their samples then, so tests run as fast as the
# CPU allows; with speed 1 it also really sleeps, for a live simulator.
class SimClock:
    def __init__(self, speed=0.0):
        self.now_us = 0
        self.speed = speed
        self._chips = []

    def attach(self, chip):
        self._chips.append(chip)
        chip.advance(self.now_us)

    def ticks_ms(self):
        return self.now_us // 1000

    def sleep_ms(self, ms):
        if self.speed:
            # Not time.sleep_ms: the unix port wakes every millisecond through
            # it; time.sleep is one select(), so a fleet of sims stays idle.
            # utime: under the esp32-port model `time` is the model itself.
            import utime

            utime.sleep(ms / 1000 / self.speed)
        self.now_us += ms * 1000
        for chip in self._chips:
            chip.advance(self.now_us)
