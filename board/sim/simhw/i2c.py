# An emulated I2C bus with machine.I2C's memory API, as the esp32 port raises
# its errors (extmod/machine_i2c.c, ports/esp32/machine_i2c.c): a chip that
# does not acknowledge gives OSError ENODEV, a stretched or broken bus
# ETIMEDOUT, and either can happen in the middle of a transfer (a loose wire).
import os

ENODEV = 19
ETIMEDOUT = 116


class SimI2C:
    def __init__(self, clock=None):
        self.chips = {}
        self.clock = clock  # a SimClock to bring up to date before each transfer
        self._faults = []  # [address, errno, bytes before the error, transfers left]

    def attach(self, address, chip):
        self.chips[address] = chip

    def inject_fault(self, address, errno=ETIMEDOUT, after_bytes=0, count=1):
        """The next `count` transfers with `address` fail after `after_bytes` bytes."""
        self._faults.append([address, errno, after_bytes, count])

    def _fault(self, address):
        for f in self._faults:
            if f[0] == address:
                f[3] -= 1
                if f[3] <= 0:
                    self._faults.remove(f)
                return f
        return None

    def _chip(self, address):
        if self.clock:  # the chips have sampled up to now, however long since the last sleep
            self.clock.sync()
        chip = self.chips.get(address)
        if chip is None:
            raise OSError(ENODEV)
        return chip

    def scan(self):
        return sorted(self.chips)

    # The plain transfers stay one line: a larger frame is heap on the sample path.
    def readfrom_mem_into(self, address, register, buf):
        if self._faults:
            return self._faulty(address, register, buf, True)
        self._chip(address).read(register, buf)

    def readfrom_mem(self, address, register, n):
        buf = bytearray(n)
        self.readfrom_mem_into(address, register, buf)
        return bytes(buf)

    def writeto_mem(self, address, register, buf):
        if self._faults:
            return self._faulty(address, register, buf, False)
        self._chip(address).write(register, buf)

    def _faulty(self, address, register, buf, reading):
        chip = self._chip(address)
        fault = self._fault(address)
        part = memoryview(buf)[:fault[2]] if fault else buf
        if reading:
            chip.read(register, part)
        else:
            chip.write(register, part)
        if fault:
            raise OSError(fault[1])


def wearer_bus(clock):
    """The wearable's sensor bus: the chips of $WEARSAFE_SCENARIO (those it does not
    leave out), sampling as `clock` advances."""
    from simhw import scenarios
    from simhw.chips import CHIPS

    wearer = scenarios.load(os.getenv("WEARSAFE_SCENARIO") or "rest")
    bus = SimI2C(clock)
    for name in CHIPS:
        if name not in wearer["missing"]:
            address, emulation = CHIPS[name]
            chip = emulation(wearer)
            bus.attach(address, chip)
            clock.attach(chip)
    return bus
