# ESP32 DevKitC (ESP32-WROOM-32): the only firmware module that may touch
# machine, network and esp32. The sim board offers the same functions.
import time

NAME = "esp32_devkitc"


def state_dir():
    """Root of the on-board filesystem (LittleFS on the vfs partition)."""
    return "/"


def ticks_ms():
    return time.ticks_ms()


def ticks_diff(a, b):
    return time.ticks_diff(a, b)


def sleep_ms(ms):
    time.sleep_ms(ms)


def nvs(namespace):
    """The ESP-IDF NVS namespace (encrypted when NVS encryption is enabled)."""
    import esp32

    return esp32.NVS(namespace)
