# Device settings: settings.json in the board's state directory, every key
# optional. Unknown keys and wrong types are refused with a clear message:
# a typo must not silently leave a default in force.
import json

DEFAULTS = {
    "batch_seconds": 60,  # vitals per sealed message
}


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
        if type(given[key]) is not type(DEFAULTS[key]):
            raise SettingsError("%s: %s must be a %s" % (path, key,
                                                          type(DEFAULTS[key]).__name__))
        settings[key] = given[key]
    if not 1 <= settings["batch_seconds"] <= 3600:
        raise SettingsError("%s: batch_seconds must be 1..3600" % path)
    return settings
