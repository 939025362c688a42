# Device settings: defaults, overrides, and clear errors for bad files.
from wearsafe import settings
from wstest import raises


def _write(text):
    with open("settings.json", "w") as f:
        f.write(text)
    return "settings.json"


def test_defaults_without_a_file():
    assert settings.load("no-such-file.json") == settings.DEFAULTS


def test_a_setting_overrides_its_default():
    assert settings.load(_write('{"batch_seconds": 5}'))["batch_seconds"] == 5


def test_bad_files_are_refused_with_what_to_fix():
    cases = (
        ('{"batch_secs": 5}', "unknown setting 'batch_secs' (known: ack_timeout_s, batch_seconds, "),
        ('{"batch_seconds": "5"}', "batch_seconds must be a int"),
        ('{"batch_seconds": 0}', "batch_seconds must be 1..3600"),
        ('{"tls": 0}', "tls must be a bool"),
        ('{"broker_port": 0}', "broker_port must be 1..65535"),
        ("[1]", "must hold a JSON object"),
        ("{", "is not valid JSON"),
    )
    for text, message in cases:
        e = raises(settings.SettingsError, settings.load, _write(text))
        assert message in str(e), (text, str(e))
