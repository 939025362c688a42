# The esp32 port's `network` (WLAN station), modelled on the unix port. TEST
# EQUIPMENT (see time.py). Source: ports/esp32/network_wlan.c and
# modnetwork_globals.h: WLAN(STA_IF) is a singleton; connect() returns at once
# and raises ESP_ERR_WIFI_NOT_STARTED unless active(True); isconnected() is
# true only once an address is assigned, which takes time (simulated:
# $WEARSAFE_ESP32_WIFI_MS, default 1500). The air: the access point
# $WEARSAFE_ESP32_AP ("ssid:key"; unset: any network answers), out of reach
# while the file radio-off exists in the state directory (as on the sim board).
import os
import time

import flashmodel

STA_IF, AP_IF = 0, 1
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_BEACON_TIMEOUT, STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 200, 201, 202
_ESP_ERR_WIFI_NOT_STARTED = 0x3004
flashmodel._NAMES[_ESP_ERR_WIFI_NOT_STARTED] = "ESP_ERR_WIFI_NOT_STARTED"
_wlans = {}


def _in_reach():
    try:
        os.stat(flashmodel.state_dir() + "/radio-off")
        return False
    except OSError:
        return True


class _WLAN:
    def __init__(self, interface):
        self._interface = interface
        self._active = False
        self._ssid = self._key = None
        self._since = 0

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._ssid = None
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise flashmodel.esp_error(_ESP_ERR_WIFI_NOT_STARTED)
        self._ssid, self._key = ssid, key
        self._since = time.ticks_ms()

    def disconnect(self):
        self._ssid = None

    def status(self, param=None):
        if not self._active or self._ssid is None:
            return STAT_IDLE
        ap = os.getenv("WEARSAFE_ESP32_AP")
        if not _in_reach() or (ap and ap.split(":", 1)[0] != self._ssid):
            return STAT_NO_AP_FOUND
        if ap and ap.split(":", 1)[1] != (self._key or ""):
            return STAT_WRONG_PASSWORD
        latency = int(os.getenv("WEARSAFE_ESP32_WIFI_MS") or "1500")
        if time.ticks_diff(time.ticks_ms(), self._since) < latency:
            return STAT_CONNECTING
        return STAT_GOT_IP

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self, config=None):
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kwargs):
        if args == ("mac",):
            return b"\x24\x0a\xc4\x00\x00\x01"
        return None


def WLAN(interface=STA_IF):
    if interface not in _wlans:
        _wlans[interface] = _WLAN(interface)
    return _wlans[interface]
