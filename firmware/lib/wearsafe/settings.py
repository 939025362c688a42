# Device settings: settings.json in the board's state directory, every key
# optional. Unknown keys and wrong types are refused with a clear message:
# a typo must not silently leave a default in force.
import json

DEFAULTS = {
    "batch_seconds": 60,  # vitals per sealed message
    "broker_host": "",  # the broker's name, as its certificate gives it
    "broker_port": 8883,  # MQTT over TLS
    "tls": True,  # anything else is refused: there is no plaintext MQTT
    "keepalive_s": 60,
    "ack_timeout_s": 10,  # PUBACK, handshake, any read or write
    "outbox_segments": 16,  # outbox: segments of 4 KiB on flash
    "confirm_timeout_s": 300,  # an update that has not reached the broker by then rolls back
    # The radio is up only in upload windows: every upload_interval_s, or sooner once
    # upload_backlog messages wait, or at once for an alert. 0: always connected.
    "upload_interval_s": 900,
    "upload_backlog": 30,
    # Alerts: sealed and sent at once, whatever the window.
    "alert_spo2_below": 0.90,  # SpO2 (0..1) below this
    "alert_heart_rate_low": 40,  # heart rate outside low..high (beats/min) ...
    "alert_heart_rate_high": 120,
    "alert_heart_rate_s": 60,  # ... for this many seconds in a row
    "alert_temp_above": 38.5,  # body temperature, Celsius
}
# A batch is one sealed message, one outbox record (4,086 bytes at most): a
# minute of vitals seals to about 1 KB, so batches above about 250 s cannot
# be stored at all. 180 s leaves room for every series at once.
MAX_BATCH_SECONDS = 180
_RANGES: dict = {"batch_seconds": (1, MAX_BATCH_SECONDS), "broker_port": (1, 65535),
                 "keepalive_s": (5, 3600), "ack_timeout_s": (1, 120), "outbox_segments": (2, 256),
                 "confirm_timeout_s": (30, 3600), "upload_interval_s": (0, 86400),
                 "upload_backlog": (1, 256), "alert_spo2_below": (0.5, 1.0),
                 "alert_heart_rate_low": (20, 100), "alert_heart_rate_high": (60, 250),
                 "alert_heart_rate_s": (5, 3600), "alert_temp_above": (37.0, 43.0)}


class SettingsError(ValueError):
    pass


def load(path):
    settings = dict(DEFAULTS)
    try:
        with open(path) as f:
            given = json.load(f)
    except OSError:
        return settings  # no file: defaults
    except ValueError:
        raise SettingsError("%s is not valid JSON" % path)
    if not isinstance(given, dict):
        raise SettingsError("%s must hold a JSON object" % path)
    for key in given:
        if key not in DEFAULTS:
            raise SettingsError("%s: unknown setting %r (known: %s)"
                                % (path, key, ", ".join(sorted(DEFAULTS))))
        if type(given[key]) is not type(DEFAULTS[key]) and not (
                type(DEFAULTS[key]) is float and type(given[key]) is int):
            raise SettingsError("%s: %s must be a %s" % (path, key,
                                                          type(DEFAULTS[key]).__name__))
        settings[key] = given[key]
    for key in _RANGES:
        low, high = _RANGES[key]
        if not low <= settings[key] <= high:
            raise SettingsError("%s: %s must be %s..%s" % (path, key, low, high))
    return settings
