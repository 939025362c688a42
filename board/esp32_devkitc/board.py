# ESP32 DevKitC (ESP32-WROOM-32): the only firmware module that may touch
# machine, network and esp32. The sim board offers the same functions.
import time

NAME = "esp32_devkitc"
# The sensor bus: I2C0 on the DevKitC's default pins (wiring in README.md).
I2C_NAME = "i2c0 (SDA GPIO21, SCL GPIO22)"
_SDA = 21
_SCL = 22
_I2C_HZ = 400_000
_bus = None


def epoch_s():
    """Seconds since 1970 (MicroPython 1.22+ uses the Unix epoch on esp32); set by NTP."""
    return time.time()


def state_dir():
    """Root of the on-board filesystem (LittleFS on the vfs partition)."""
    return "/"


def sync_clock():
    """Set the RTC from NTP (OSError when it fails): TLS needs the date."""
    import ntptime

    ntptime.settime()


_wlan = None


def network_up():
    """Station mode on the network in /wifi.json ({"ssid": ..., "key": ...}); never blocks."""
    global _wlan
    import network

    if _wlan is None:
        import json

        with open("/wifi.json") as f:
            wifi = json.load(f)
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
        _wlan.connect(wifi["ssid"], wifi["key"])
    return _wlan.isconnected()


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


def i2c():
    global _bus
    if _bus is None:
        from machine import I2C, Pin

        _bus = I2C(0, scl=Pin(_SCL), sda=Pin(_SDA), freq=_I2C_HZ)
    return _bus


# -- OTA: the ESP-IDF bootloader selects and rolls back app partitions

def boot():
    """Nothing to do: the ESP-IDF bootloader already chose (or rolled back) the partition."""


def reset():
    import machine

    machine.reset()


def next_firmware_slot():
    import esp32

    return esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # the stub omits ids.get_next_update()


def running_firmware_slot():
    import esp32

    return esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # the stub omits ids.info()[4]


def confirm_firmware():
    """Cancel the rollback of the running partition (harmless when already valid)."""
    import esp32

    esp32.Partition.mark_app_valid_cancel_rollback()
