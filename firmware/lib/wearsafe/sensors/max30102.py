# MAX30102 pulse oximeter and heart-rate front end (Maxim datasheet 19-7740).
# SpO2 mode: red (LED1) and IR (LED2), 100 samples/s, 411 us pulses (18-bit),
# each four averaged on the chip (FIFO_CONFIG SMP_AVE): the FIFO fills at 25
# samples/s, the rate the heart-rate window wants, and its 32 samples hold
# 1.28 s, where unaveraged they held 320 ms: a TLS flight or an update's flash
# erase on an ESP32 takes longer than that.
from micropython import const

from wearsafe.sensors import SensorError, probe

ADDRESS = const(0x57)
_FIFO_WR_PTR = const(0x04)
_OVF_COUNTER = const(0x05)
_FIFO_RD_PTR = const(0x06)
_FIFO_DATA = const(0x07)
_FIFO_CONFIG = const(0x08)
_MODE_CONFIG = const(0x09)
_SPO2_CONFIG = const(0x0A)
_LED1_PA = const(0x0C)
_LED2_PA = const(0x0D)
_REG_PART_ID = const(0xFF)
PART_ID_VALUE = const(0x15)

_MODE_RESET = const(0x40)
_MODE_SPO2 = const(0x03)
_FIFO_ROLLOVER = const(0x10)  # keep the newest samples when the firmware falls behind
_SMP_AVE_4 = const(0b010 << 5)  # FIFO_CONFIG bits 7:5: each FIFO sample averages 4
# ADC range 4096 nA (01), 100 samples/s (001), 411 us pulse width = 18-bit (11)
_SPO2_100SPS_18BIT = const(0b0_01_001_11)
_LED_CURRENT = const(0x24)  # 7.2 mA
FIFO_DEPTH = const(32)
_MASK18 = const(0x3FFFF)
SAMPLE_RATE = const(25)  # FIFO samples per second: 100 conversions, 4 averaged


class MAX30102:
    def __init__(self, bus, bus_name="i2c", address=ADDRESS, sleep_ms=None):
        self._bus = bus
        self._addr = address
        probe(bus, bus_name, address, _REG_PART_ID, PART_ID_VALUE, "MAX30102")
        self._sleep_ms = sleep_ms
        self._reg = bytearray(1)
        self._ptrs = bytearray(3)  # WR_PTR, OVF_COUNTER, RD_PTR: one burst read
        self._raw = bytearray(FIFO_DEPTH * 6)
        mv = memoryview(self._raw)
        self._views = [mv[:6 * n] for n in range(FIFO_DEPTH + 1)]  # no slicing per read
        self.overflows = 0  # samples the chip dropped because they were read too late

    def _write(self, register, value):
        self._reg[0] = value
        self._bus.writeto_mem(self._addr, register, self._reg)

    def start(self):
        """Soft reset, then SpO2 mode at 100 samples/s averaged by 4, 18-bit, FIFO cleared."""
        self._write(_MODE_CONFIG, _MODE_RESET)
        for _ in range(100):
            self._bus.readfrom_mem_into(self._addr, _MODE_CONFIG, self._reg)
            if not self._reg[0] & _MODE_RESET:
                break
            if self._sleep_ms:
                self._sleep_ms(1)
        else:
            raise SensorError("MAX30102: soft reset did not complete")
        self._write(_FIFO_CONFIG, _SMP_AVE_4 | _FIFO_ROLLOVER)
        self._write(_SPO2_CONFIG, _SPO2_100SPS_18BIT)
        self._write(_LED1_PA, _LED_CURRENT)
        self._write(_LED2_PA, _LED_CURRENT)
        for register in (_FIFO_WR_PTR, _OVF_COUNTER, _FIFO_RD_PTR):
            self._write(register, 0)
        self._write(_MODE_CONFIG, _MODE_SPO2)
        self.overflows = 0

    def read(self, red, ir):
        """Burst-read every sample in the FIFO into the arrays red and ir; return how many."""
        self._bus.readfrom_mem_into(self._addr, _FIFO_WR_PTR, self._ptrs)
        lost = self._ptrs[1]
        count = (self._ptrs[0] - self._ptrs[2]) & (FIFO_DEPTH - 1)
        if lost:
            self.overflows += lost
            count = FIFO_DEPTH  # the FIFO wrapped: all of it is unread
        if count == 0:
            return 0
        raw = self._raw
        self._bus.readfrom_mem_into(self._addr, _FIFO_DATA, self._views[count])
        for i in range(count):
            j = 6 * i
            red[i] = (raw[j] << 16 | raw[j + 1] << 8 | raw[j + 2]) & _MASK18
            ir[i] = (raw[j + 3] << 16 | raw[j + 4] << 8 | raw[j + 5]) & _MASK18
        return count
