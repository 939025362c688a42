# The application package and the board seam load and work on the target.
import board
import wearsafe
from wearsafe import link

# The whole application's import within an ESP32's GC heap once grown, as this
# 64-bit port holds it (host_tools/testing/vboard.py: ESP32_HEAP).
HEAP = "128K"


def test_version_is_semver():
    parts = wearsafe.VERSION.split(".")
    assert len(parts) == 3
    for p in parts:
        int(p)


def test_board_clock_advances():
    t0 = board.ticks_ms()
    board.sleep_ms(20)
    assert board.ticks_diff(board.ticks_ms(), t0) >= 20


def test_topics_hold_the_device_pseudonym_and_nothing_else():
    assert link.up_topic("a1b2c3d4") == "devices/a1b2c3d4/up"
    assert link.status_topic("a1b2c3d4") == "devices/a1b2c3d4/status"


def test_the_app_loads():
    from wearsafe import app

    assert app.Uplink and app.run


def test_umqtt_simple_is_on_the_device_path():
    from umqtt.simple import MQTTClient

    assert MQTTClient.publish
