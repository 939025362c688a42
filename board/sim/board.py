# The simulated board: the unix port standing in for an ESP32 wearable.
# Firmware code reaches hardware only through this module's functions; the
# esp32_devkitc board module offers the same ones on real hardware.
import os
import time

NAME = "sim"


def state_dir():
    """Where this simulated device keeps its flash and NVS: $WEARSAFE_SIM_DIR."""
    return os.getenv("WEARSAFE_SIM_DIR") or "."


def ticks_ms():
    return time.ticks_ms()


def ticks_diff(a, b):
    return time.ticks_diff(a, b)


def sleep_ms(ms):
    time.sleep_ms(ms)


def nvs(namespace):
    """Non-volatile storage with esp32.NVS's interface, in a file of the state dir."""
    from simhw.nvs import FileNVS

    return FileNVS(state_dir() + "/nvs-" + namespace + ".bin")
