# Register-level emulations of the wearable's chips, as their datasheets
# describe them. Samples are produced by advance() as simulated time passes.
from simhw.physio import AccelModel, PpgModel, TempModel

_FIFO = 32


class MAX30102:
    """MAX30102: PART_ID 0x15 at 0xFF, 32-sample FIFO of red+IR (3 bytes each, 18-bit).

    FIFO_CONFIG (0x08) bits 7:5, SMP_AVE: each FIFO sample is the mean of 1, 2, 4,
    8, 16 or 32 (0b101 and up) adjacent conversions of each channel, so the FIFO
    fills at the sample rate divided by that (datasheet 19-7740, FIFO
    Configuration); OVF_COUNTER counts FIFO samples, not conversions.
    """

    def __init__(self, scenario):
        self.model = PpgModel(scenario)
        self.fifo = bytearray(_FIFO * 6)
        self.last_us = 0  # simulated time of the last sample (or of the last advance)
        self._reset()

    def _reset(self):
        self.regs = bytearray(256)
        self.regs[0xFE], self.regs[0xFF] = 0x03, 0x15  # REV_ID, PART_ID
        self.wr = self.rd = self.ovf = self.unread = 0
        self.byte = 0  # position inside the sample being read through FIFO_DATA
        self.sum_red = self.sum_ir = self.summed = 0  # conversions of the sample in progress

    def _rate(self):
        mode, spo2 = self.regs[0x09] & 0x07, self.regs[0x0A]
        if mode not in (0x03, 0x07):  # SpO2 or multi-LED mode
            return 0
        return (50, 100, 200, 400, 800, 1000, 1600, 3200)[(spo2 >> 2) & 0x07]

    def advance(self, now_us):
        rate = self._rate()
        if not rate:  # not sampling: time passes without samples
            self.last_us = now_us
            return
        period = 1000000 // rate
        average = 1 << min(5, self.regs[0x08] >> 5)
        while now_us - self.last_us >= period:
            self.last_us += period
            red, ir = self.model.sample(period / 1e6)
            self.sum_red += red
            self.sum_ir += ir
            self.summed += 1
            if self.summed >= average:
                self._push(self.sum_red // average, self.sum_ir // average)
                self.sum_red = self.sum_ir = self.summed = 0

    def _push(self, red, ir):
        if self.unread == _FIFO:
            self.ovf = min(self.ovf + 1, 0x1F)
            if not self.regs[0x08] & 0x10:  # no rollover: the new sample is lost
                return
            self.rd = (self.rd + 1) % _FIFO  # rollover: the oldest is overwritten
            self.unread -= 1
        j = self.wr * 6
        for k, v in enumerate((red, ir)):
            self.fifo[j + 3 * k] = (v >> 16) & 0x03
            self.fifo[j + 3 * k + 1] = (v >> 8) & 0xFF
            self.fifo[j + 3 * k + 2] = v & 0xFF
        self.wr = (self.wr + 1) % _FIFO
        self.unread += 1

    def read(self, register, buf):
        for i in range(len(buf)):
            buf[i] = self._read_byte(register if register == 0x07 else register + i)

    def _read_byte(self, register):
        if register == 0x04:
            return self.wr
        if register == 0x05:
            return self.ovf
        if register == 0x06:
            return self.rd
        if register == 0x07:
            if self.unread == 0:
                return 0
            value = self.fifo[self.rd * 6 + self.byte]
            self.byte += 1
            if self.byte == 6:  # a whole sample popped: the overflow counter resets
                self.byte = 0
                self.rd = (self.rd + 1) % _FIFO
                self.unread -= 1
                self.ovf = 0
            return value
        return self.regs[register & 0xFF]

    def write(self, register, buf):
        for i in range(len(buf)):
            self._write_byte(register + i, buf[i])

    def _write_byte(self, register, value):
        if register == 0x09 and value & 0x40:
            self._reset()  # RESET clears every register and the FIFO; the bit reads back 0
            return
        if register == 0x04:
            self.wr = value % _FIFO
        elif register == 0x05:
            self.ovf = value & 0x1F
        elif register == 0x06:
            self.rd = value % _FIFO
        else:
            self.regs[register] = value
            return
        self.unread = (self.wr - self.rd) % _FIFO
        self.byte = 0


class MAX30205:
    """MAX30205: temperature at 0x00 in 1/256 C, big-endian; no id register."""

    def __init__(self, scenario):
        self.model = TempModel(scenario)
        self.regs = {0x01: b"\x00", 0x02: b"\x4b\x00", 0x03: b"\x50\x00"}

    def advance(self, now_us):
        pass

    def read(self, register, buf):
        if register == 0x00:
            raw = int(round(self.model.sample() * 256)) & 0xFFFF
            data = bytes((raw >> 8, raw & 0xFF))
        else:
            data = self.regs.get(register, b"\x00\x00")
        for i in range(len(buf)):
            buf[i] = data[i] if i < len(data) else 0

    def write(self, register, buf):
        self.regs[register] = bytes(buf)


class LIS3DH:
    """LIS3DH: WHO_AM_I 0x33 at 0x0F, 32-level FIFO, auto-increment with address bit 7.

    BOOT (CTRL_REG5 bit 7) reloads the trimming values from the chip's flash,
    the procedure it runs at power-up, which ST puts at "approximately 5
    milliseconds" (application note AN3308, DocID18198 Rev 3, "Startup
    sequence"); the datasheet (DocID17530 Rev 2) gives no figure, and neither
    says what the interface does meanwhile. Modelled as the most conservative
    reading, for BOOT_US of simulated time after the BOOT write: the chip
    acknowledges every write and loses it; every register reads 0x00, so a
    driver can see neither its configuration nor WHO_AM_I, nor poll a BOOT bit
    that clears itself (nothing in either document promises one); no samples
    are taken. The FIFO is emptied at the BOOT write; the control registers
    keep what they held (the driver writes them all after the boot anyway).
    The boot at power-up is not modelled: the ESP32 takes far longer than
    5 ms to start the firmware.
    """

    BOOT_US = 5000

    def __init__(self, scenario):
        self.model = AccelModel(scenario)
        self.fifo = bytearray(_FIFO * 6)  # a ring of 6-byte samples
        self.head = self.count = 0
        self.regs = bytearray(256)
        self.regs[0x0F] = 0x33
        self.regs[0x20] = 0x07
        self.last_us = 0
        self.now_us = 0  # simulated time of the last advance(): when a write happens
        self.boot_end_us = 0  # a boot is in progress while now_us < boot_end_us
        self.overrun = False

    def booting(self):
        return self.now_us < self.boot_end_us

    def _rate(self):
        odr = self.regs[0x20] >> 4
        return (0, 1, 10, 25, 50, 100, 200, 400, 1600, 1344)[odr] if odr < 10 else 0

    def _fifo_on(self):
        return self.regs[0x24] & 0x40 and self.regs[0x2E] >> 6 == 2  # stream mode

    def advance(self, now_us):
        self.now_us = now_us
        rate = self._rate()
        if not rate or self.booting():  # no conversions while off or booting
            self.last_us = now_us
            return
        self.last_us = max(self.last_us, self.boot_end_us)  # sampling resumes at its end
        period = 1000000 // rate
        while now_us - self.last_us >= period:
            self.last_us += period
            self._push(self.model.sample(period / 1e6))

    def _push(self, mg):
        full_scale = (2, 4, 8, 16)[(self.regs[0x23] >> 4) & 3]
        lsb_mg = full_scale * 1000 / 2048  # 12-bit high resolution
        if not self._fifo_on():
            self.head = self.count = 0  # bypass: the output registers hold the newest
        elif self.count == _FIFO:
            self.head = (self.head + 1) % _FIFO  # stream mode: the oldest is dropped
            self.count -= 1
            self.overrun = True
        j = (self.head + self.count) % _FIFO * 6
        for k, value in enumerate(mg):
            counts = max(-2048, min(2047, int(round(value / lsb_mg))))
            word = (counts << 4) & 0xFFFF
            self.fifo[j + 2 * k], self.fifo[j + 2 * k + 1] = word & 0xFF, word >> 8
        self.count += 1

    def read(self, register, buf):
        if self.booting():
            for i in range(len(buf)):
                buf[i] = 0
            return
        increment = register & 0x80
        register &= 0x7F
        for i in range(len(buf)):
            buf[i] = self._read_byte(register)
            if increment:
                register += 1
                if register == 0x2E and self._fifo_on():
                    register = 0x28  # FIFO mode: the output registers wrap around

    def _read_byte(self, register):
        if register == 0x2F:
            n = self.count
            return (0x40 if self.overrun else 0) | (0x20 if n == 0 else 0) | min(n, 31)
        if 0x28 <= register <= 0x2D:
            if not self.count:
                return 0
            value = self.fifo[self.head * 6 + register - 0x28]
            if register == 0x2D and self._fifo_on():  # a whole sample read: pop it
                self.head = (self.head + 1) % _FIFO
                self.count -= 1
                self.overrun = False
            return value
        return self.regs[register]

    def write(self, register, buf):
        register &= 0x7F
        for i in range(len(buf)):
            if self.booting():
                return  # acknowledged, and lost
            value = buf[i]
            if register + i == 0x24 and value & 0x80:  # BOOT: reload, FIFO cleared
                self.head = self.count = 0
                self.boot_end_us = self.now_us + self.BOOT_US
                value &= 0x7F
            if register + i == 0x2E and value >> 6 == 0:  # bypass mode empties the FIFO
                self.head = self.count = 0
            self.regs[register + i] = value


CHIPS = {"max30102": (0x57, MAX30102), "max30205": (0x48, MAX30205), "lis3dh": (0x18, LIS3DH)}
