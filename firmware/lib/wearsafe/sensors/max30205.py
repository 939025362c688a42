# MAX30205 human body temperature sensor (Maxim datasheet 19-7594).
# It has no id register: the probe checks that it answers and that its
# hysteresis register holds a plausible power-on value range.
from micropython import const

from wearsafe.sensors import SensorError

ADDRESS = const(0x48)
_TEMPERATURE = const(0x00)
_CONFIG = const(0x01)
LSB_MILLI = const(3906)  # 0.00390625 C = 1/256 C per bit


class MAX30205:
    def __init__(self, bus, bus_name="i2c", address=ADDRESS):
        self._bus = bus
        self._addr = address
        self._buf = bytearray(2)
        try:
            bus.readfrom_mem_into(address, _CONFIG, memoryview(self._buf)[:1])
        except OSError:
            raise SensorError("MAX30205: no answer on %s at address 0x%02x (it has no id "
                              "register; expected an ack): check wiring and power"
                              % (bus_name, address))

    def start(self):
        self._buf[0] = 0  # continuous conversion, normal format
        self._bus.writeto_mem(self._addr, _CONFIG, memoryview(self._buf)[:1])

    def read_raw(self):
        """Temperature in 1/256 C as a signed integer (no float: no allocation)."""
        self._bus.readfrom_mem_into(self._addr, _TEMPERATURE, self._buf)
        value = self._buf[0] << 8 | self._buf[1]
        return value - 0x10000 if value & 0x8000 else value

    def read_celsius(self):
        return self.read_raw() / 256
