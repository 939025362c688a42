# The simulated board: the unix port standing in for an ESP32 wearable.
# Firmware code reaches hardware only through this module's functions; the
# esp32_devkitc board module offers the same ones on real hardware.
#
# Environment: WEARSAFE_SIM_DIR (state: flash, NVS), WEARSAFE_SCENARIO (what
# the wearer does: a name from simhw/scenarios.py or a .json file),
# WEARSAFE_SIM_SPEED (1 = real time, the default; 0 = as fast as possible;
# WEARSAFE_SIM_WORK=1 with 0: working takes time, sleeping none),
# WEARSAFE_SIM_SEED (repeatable noise), WEARSAFE_SIM_EPOCH (the clock at
# start, in Unix seconds; default the host's: 0 is a clock NTP never set).
# The radio is off while the file radio-off exists in the state directory (out
# of reach), and while the firmware has switched it off (radio()); switched on,
# it joins the network in WEARSAFE_SIM_JOIN_MS (default 1500: an ESP32 joining
# with DHCP takes 1.5 to 2 s, espressif/arduino-esp32#11139).
# WEARSAFE_SIM_STALL=AT_MS:FOR_MS (a test hook): the first sleep once AT_MS of
# simulated time have passed lasts FOR_MS longer, as if the loop had been
# blocked that long (a TLS handshake, a flash erase on the chip).
import os
import random
import time

from simhw import clock, ticks

NAME = "sim"
I2C_NAME = "sim-i2c0"

_clock = clock.from_env()
_EPOCH_AT_START = int(os.getenv("WEARSAFE_SIM_EPOCH") or time.time())
_TICKS0 = ticks.start_value()  # $WEARSAFE_TICKS_START: start just below the wrap
_bus = None
_watchdogs: list = []
random.seed(int(os.getenv("WEARSAFE_SIM_SEED") or "0") or int.from_bytes(os.urandom(4), "big"))


def epoch_s():
    """Seconds since 1970: the host's clock at start, then simulated time."""
    return _EPOCH_AT_START + _clock.ticks_ms() // 1000


def state_dir():
    """Where this simulated device keeps its flash and NVS: $WEARSAFE_SIM_DIR."""
    return os.getenv("WEARSAFE_SIM_DIR") or "."


def sync_clock():
    """NTP on a board; a simulated clock stays as the environment set it."""


_JOIN_MS = int(os.getenv("WEARSAFE_SIM_JOIN_MS") or "1500")
_radio_since = None  # ticks when the firmware switched the radio on; None: off


def radio(on):
    """Switch the radio on (it starts joining) or off."""
    global _radio_since
    if not on:
        _radio_since = None
    elif _radio_since is None:
        _radio_since = ticks_ms()


def network_up():
    """True once the radio, switched on and in reach, has joined."""
    if _radio_since is None or ticks_diff(ticks_ms(), _radio_since) < _JOIN_MS:
        return False
    return not _flag("radio-off")


def on_charger():
    """True while the file charging exists in the state directory (the sim's flag)."""
    return _flag("charging")


def _flag(name):
    try:
        os.stat(state_dir() + "/" + name)
        return True
    except OSError:
        return False


def simulator_ms():
    """Time the simulator itself took (the emulated chips), which a board does not."""
    return _clock.emulation_us // 1000


def ticks_ms():
    """Milliseconds, wrapping at 2^30 as on the ESP32 (simhw/ticks.py)."""
    return (_TICKS0 + _clock.ticks_ms()) & (ticks.PERIOD - 1)


def ticks_diff(a, b):
    return ticks.diff(a, b)


def ticks_add(t, delta):
    return ticks.add(t, delta)


_stall = [int(v) for v in (os.getenv("WEARSAFE_SIM_STALL") or "").split(":") if v]


def sleep_ms(ms):
    if _stall and _clock.ticks_ms() >= _stall[0]:
        ms += _stall.pop()
        _stall.clear()
    _clock.sleep_ms(ms)
    for dog in _watchdogs:
        dog.check()


def lightsleep(ms):
    """machine.lightsleep on an ESP32: the CPU stops for ms (the radio must be off)."""
    sleep_ms(ms)


def watchdog(timeout_ms):
    """machine.WDT's behaviour in simulated time: not fed in time, the board resets."""
    from simhw.watchdog import Watchdog

    dog = Watchdog(timeout_ms, ticks_ms, reset)
    _watchdogs.append(dog)
    return dog


def scenario():
    from simhw import scenarios

    return scenarios.load(os.getenv("WEARSAFE_SCENARIO") or "rest")


def i2c():
    """The sensor bus, carrying the chips the scenario does not leave out."""
    global _bus
    if _bus is None:
        from simhw.i2c import wearer_bus

        _bus = wearer_bus(_clock)
    return _bus


def nvs(namespace):
    """Non-volatile storage with esp32.NVS's interface, in a file of the state dir."""
    from simhw.nvs import FileNVS

    return FileNVS(state_dir() + "/nvs-" + namespace + ".bin")


# -- OTA: file-backed partitions and the bootloader's rules (simhw/partition.py)

RESET_EXIT = 75  # the process ends with this code to reset; the host starts it again


def boot():
    """The bootloader's step at power-on: trial or rollback of a selected partition."""
    from simhw import partition

    partition.otadata(state_dir()).boot()


def reset():
    import sys

    sys.exit(RESET_EXIT)


def next_firmware_slot():
    from simhw import partition

    return partition.next_update(state_dir(), sleep_ms)


def running_firmware_slot():
    from simhw import partition

    return partition.running(state_dir())


def confirm_firmware():
    from simhw import partition

    partition.otadata(state_dir()).confirm()
    return True
