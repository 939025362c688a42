# LIS3DH 3-axis accelerometer (ST datasheet DocID17530): 25 Hz, +-4 g,
# high resolution (12-bit), block data update, FIFO in stream mode so that
# the firmware reads bursts of samples. 25 Hz resolves a step (at most 3 a
# second) and lets the 32-level FIFO hold 1.28 s, as long as the PPG's.
import time

from micropython import const

from wearsafe.sensors import probe

ADDRESS = const(0x18)
_REG_WHO_AM_I = const(0x0F)
WHO_AM_I_VALUE = const(0x33)
_CTRL_REG1 = const(0x20)
_CTRL_REG4 = const(0x23)
_CTRL_REG5 = const(0x24)
_OUT_X_L = const(0x28)
_FIFO_CTRL = const(0x2E)
_FIFO_SRC = const(0x2F)
_AUTO_INCREMENT = const(0x80)  # register address MSB: multi-byte read

_ODR_25HZ_XYZ = const(0x37)  # ODR 0011 = 25 Hz, normal power, X/Y/Z enabled
_BDU_4G_HR = const(0x98)  # block data update, +-4 g, high resolution
_BOOT = const(0x80)
_FIFO_EN = const(0x40)
_FIFO_STREAM = const(0x80)
_FSS_MASK = const(0x1F)
_OVRN = const(0x40)
# BOOT reloads the trimming values from the chip's flash; writes made before that
# ends are lost. ST gives one figure for the boot procedure: "approximately 5
# milliseconds" (application note AN3308, DocID18198 Rev 3, "Startup sequence",
# of the boot at power-up, which BOOT starts again); the datasheet (DocID17530
# Rev 2) gives none. An approximate figure is no bound: twice it.
BOOT_MS = const(10)
FIFO_DEPTH = const(32)
SAMPLE_RATE = const(25)
MG_PER_LSB = const(2)  # +-4 g, high resolution: 2 mg per 12-bit digit


class LIS3DH:
    def __init__(self, bus, bus_name="i2c", address=ADDRESS, sleep_ms=None):
        self._bus = bus
        self._addr = address
        probe(bus, bus_name, address, _REG_WHO_AM_I, WHO_AM_I_VALUE, "LIS3DH")
        self._sleep_ms = sleep_ms or time.sleep_ms
        self._reg = bytearray(1)
        self._raw = bytearray(FIFO_DEPTH * 6)
        mv = memoryview(self._raw)
        self._views = [mv[:6 * n] for n in range(FIFO_DEPTH + 1)]
        self.overruns = 0

    def _write(self, register, value):
        self._reg[0] = value
        self._bus.writeto_mem(self._addr, register, self._reg)

    def start(self):
        self._write(_CTRL_REG5, _BOOT)  # reload trimming, reset the FIFO
        self._sleep_ms(BOOT_MS)  # the chip takes no writes until the boot is over
        self._write(_CTRL_REG1, _ODR_25HZ_XYZ)
        self._write(_CTRL_REG4, _BDU_4G_HR)
        self._write(_CTRL_REG5, _FIFO_EN)
        self._write(_FIFO_CTRL, 0)  # bypass clears the FIFO ...
        self._write(_FIFO_CTRL, _FIFO_STREAM)  # ... then stream mode
        self.overruns = 0

    def read(self, x, y, z):
        """Burst-read the FIFO into arrays x, y, z (milli-g); return the sample count."""
        self._bus.readfrom_mem_into(self._addr, _FIFO_SRC, self._reg)
        src = self._reg[0]
        if src & _OVRN:
            self.overruns += 1
        count = src & _FSS_MASK
        if count == 0:
            return 0
        raw = self._raw
        self._bus.readfrom_mem_into(self._addr, _OUT_X_L | _AUTO_INCREMENT, self._views[count])
        for i in range(count):
            j = 6 * i
            x[i] = _signed12(raw[j] | raw[j + 1] << 8) * MG_PER_LSB
            y[i] = _signed12(raw[j + 2] | raw[j + 3] << 8) * MG_PER_LSB
            z[i] = _signed12(raw[j + 4] | raw[j + 5] << 8) * MG_PER_LSB
        return count


def _signed12(word):
    # 12-bit left-justified in 16 bits, two's complement
    word >>= 4
    return word - 0x1000 if word & 0x800 else word
