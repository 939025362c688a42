# An emulated I2C bus with machine.I2C's memory API. A chip that is not on
# the bus does not acknowledge: OSError ENODEV, as the esp32 port raises.
_ENODEV = 19


class SimI2C:
    def __init__(self):
        self.chips = {}

    def attach(self, address, chip):
        self.chips[address] = chip

    def _chip(self, address):
        chip = self.chips.get(address)
        if chip is None:
            raise OSError(_ENODEV)
        return chip

    def scan(self):
        return sorted(self.chips)

    def readfrom_mem_into(self, address, register, buf):
        self._chip(address).read(register, buf)

    def readfrom_mem(self, address, register, n):
        buf = bytearray(n)
        self.readfrom_mem_into(address, register, buf)
        return bytes(buf)

    def writeto_mem(self, address, register, buf):
        self._chip(address).write(register, buf)
