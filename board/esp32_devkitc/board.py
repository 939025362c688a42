# ESP32 DevKitC (ESP32-WROOM-32): the only firmware module that may touch
# machine, network and esp32. The sim board offers the same functions.
# Each fact this module relies on is cited, with the MicroPython or ESP-IDF
# source that defines it, in the esp32-port model's modules (board/sim/esp32port),
# over which this same module runs on the desktop (docs/ARCHITECTURE.md).
import os
import time

NAME = "esp32_devkitc"
# The sensor bus: I2C0 on the DevKitC's default pins (wiring in README.md).
I2C_NAME = "i2c0 (SDA GPIO21, SCL GPIO22)"
_SDA = 21
_SCL = 22
_I2C_HZ = 400_000
# time.time() counts from 2000 on the esp32 port (MICROPY_EPOCH_IS_2000), from
# 1970 where a port says so: Unix time is time.time() + this.
_UNIX_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_ROOT = os.getcwd()  # "/" at boot; a test harness's scratch directory otherwise
_bus = None
_wlan = None
_wifi_error = None  # why the station cannot join, logged once
_radio_on = False
# The CPU at 240 MHz: ESP32_GENERIC boots at ESP-IDF's default of 160 MHz. The work
# of each second is done sooner and the chip goes back to light sleep sooner; the
# simulator's ESP32 speed and the energy model are calibrated at 240 MHz.
CPU_HZ = 240_000_000


def _full_speed():
    import machine

    machine.freq(CPU_HZ)


_full_speed()


def epoch_s():
    """Unix time (seconds since 1970) from the RTC that NTP set."""
    return time.time() + _UNIX_OFFSET


def state_dir():
    """Root of the on-board filesystem (LittleFS on the vfs partition)."""
    return _ROOT


def sync_clock():
    """Set the RTC from NTP; OSError when it fails (ntptime's short replies raise
    other errors, which must not reach the application)."""
    import ntptime

    try:
        ntptime.settime()
    except OSError:
        raise
    except Exception as e:
        raise OSError("NTP: %s %s" % (type(e).__name__, e))


def _join_wifi():
    """Station mode on the network in wifi.json ({"ssid": ..., "key": ...})."""
    import json

    import network

    try:
        with open(_ROOT.rstrip("/") + "/wifi.json") as f:
            wifi = json.load(f)
        ssid, key = wifi["ssid"], wifi["key"]
    except OSError:
        raise ValueError("no wifi.json: give `wearsafe flash --wifi` or copy one to the board")
    except (ValueError, KeyError, TypeError):
        raise ValueError('wifi.json must be {"ssid": "...", "key": "..."}')
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(ssid, key)
    return wlan


def radio(on):
    """Switch Wi-Fi on (the station starts joining) or off (WLAN.active(False): the
    radio is powered down, ports/esp32/network_wlan.c esp_wifi_stop)."""
    global _wlan, _radio_on
    _radio_on = bool(on)
    if not on and _wlan is not None:
        _wlan.disconnect()
        _wlan.active(False)
        _wlan = None


def network_up():
    """True once the station, switched on, has an address; never blocks, never raises."""
    global _wlan, _wifi_error
    if not _radio_on:
        return False
    if _wlan is None:
        if _wifi_error:
            return False
        try:
            _wlan = _join_wifi()
        except (ValueError, OSError) as e:
            _wifi_error = str(e)
            print("board: Wi-Fi off:", _wifi_error)
            return False
    return _wlan.isconnected()


def ticks_ms():
    return time.ticks_ms()


def ticks_diff(a, b):
    return time.ticks_diff(a, b)


def ticks_add(t, delta):
    return time.ticks_add(t, delta)


def sleep_ms(ms):
    time.sleep_ms(ms)


def lightsleep(ms):
    """The CPU stops for ms (esp_light_sleep_start, ports/esp32/modmachine.c); the I2C
    chips go on sampling into their FIFOs. Only while Wi-Fi is off."""
    import machine

    machine.lightsleep(ms)


def on_charger():
    """The DevKitC has no charger sense line: a wearable wires VBUS to a GPIO here."""
    return False


def simulator_ms():
    return 0


def watchdog(timeout_ms):
    """The hardware task watchdog: not fed within timeout_ms, the chip resets."""
    from machine import WDT

    return WDT(timeout=timeout_ms)


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
    """The OTA slot the next firmware goes to; None on a firmware without OTA slots
    (the stock ESP32_GENERIC image: firmware updates need its OTA variant)."""
    import esp32

    try:
        return esp32.Partition(esp32.Partition.RUNNING).get_next_update()  # type: ignore[arg-type]
    except OSError:
        return None


def running_firmware_slot():
    """The label of the app partition running now (Partition objects have no equality)."""
    import esp32

    return esp32.Partition(esp32.Partition.RUNNING).info()[4]  # type: ignore[arg-type]


def confirm_firmware():
    """Cancel the rollback of the running partition. False where there is nothing to
    confirm: no otadata (the stock image) or none written yet (no update so far)."""
    import esp32

    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError:
        return False
    return True
