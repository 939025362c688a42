# board/esp32_devkitc's module over the esp32-port model (board/sim/esp32port):
# each test names the first-flash failure it guards against (issue 12), and
# fails on the model with the old board or firmware code.
import os
import time

import board
import esp32
import machine
from wearsafe import crash, link, sensing, settings
from wstest import raises

BOARDS = ("esp32_devkitc",)
UNIX_ONLY = True  # uses the model's own hooks (fault injection, variants, ticks)
HEAP = "128K"  # an ESP32's 110 KB GC heap on this port (vboard.ESP32_HEAP)


def _wifi(text='{"ssid": "lab", "key": "secret"}'):
    with open("wifi.json", "w") as f:
        f.write(text)


def _online():
    _wifi()
    board.radio(True)
    for _ in range(50):
        if board.network_up():
            return
        board.sleep_ms(100)
    raise AssertionError("the modelled station never got an address")


def test_1_epoch_is_unix_time_after_ntp():
    assert time.time() < link.MIN_EPOCH  # the port counts from 2000
    _online()
    board.sync_clock()
    assert abs(board.epoch_s() - time.world_unix_s()) <= 1
    assert board.epoch_s() >= link.MIN_EPOCH


def test_2_confirm_without_otadata_is_not_an_error():
    assert board.confirm_firmware() is False  # OTA variant, no update yet: erased otadata
    os.putenv("WEARSAFE_ESP32_VARIANT", "stock")
    try:
        assert board.confirm_firmware() is False  # stock image: no otadata at all
    finally:
        os.putenv("WEARSAFE_ESP32_VARIANT", "ota")


def _installer():
    import bootsel
    from wearsafe.ota import install

    bootsel.boot()  # what boot.py does first: the boot record's folder
    trust = {"class": "esp32_devkitc", "class_id": bytes(16), "keys": [bytes(44)]}
    return install.Installer(board, trust, install.Counters(board.nvs("ota")))


def test_3_firmware_goes_to_the_other_slot_and_stock_says_why_not():
    from wearsafe.ota import image, install

    slot = board.next_firmware_slot()
    assert slot.info()[4] == "ota_1" != board.running_firmware_slot()
    assert _installer().capacity(image.KIND_FIRMWARE) == 0x180000
    os.putenv("WEARSAFE_ESP32_VARIANT", "stock")
    try:
        assert board.next_firmware_slot() is None
        e = raises(install.UpdateError, _installer().capacity, image.KIND_FIRMWARE)
        assert "OTA variant" in str(e)
    finally:
        os.putenv("WEARSAFE_ESP32_VARIANT", "ota")


def test_3_writing_the_running_app_panics_the_model():
    running = esp32.Partition(esp32.Partition.RUNNING)
    try:
        running.writeblocks(0, bytearray(4096))
    except SystemExit:
        return
    raise AssertionError("a write into the running app must abort, as ESP-IDF does")


def test_4_running_slot_is_a_label():
    assert board.running_firmware_slot() == "ota_0"


def _certs(ca=b"not a certificate"):
    try:
        os.mkdir("certs")
    except OSError:
        pass
    for name in link.CERT_FILES:
        with open("certs/" + name, "wb") as f:
            f.write(ca)


def test_5_unusable_tls_material_backs_off_instead_of_raising():
    _online()
    _certs()
    config = dict(settings.DEFAULTS, broker_host="localhost", ack_timeout_s=1)
    uplink = link.Link(config, "a1b2c3d4", "certs", board)
    assert uplink.ensure() is False  # ValueError from mbedTLS became a LinkError
    assert "unusable" in uplink.last_error


def test_7_sensing_keeps_time_through_the_ticks_wrap():
    time.model_set_ticks((1 << 30) - 60000)  # a minute before the 30-bit wrap
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    start_us = time.clock.now_us
    seconds = 0
    for _ in sensing.run(hub, board, 120):
        seconds += 1
    elapsed_ms = (time.clock.now_us - start_us) // 1000
    assert seconds == 120 and 119900 <= elapsed_ms <= 120300, elapsed_ms


def test_7_the_links_backoff_deadline_holds_across_the_ticks_wrap():
    # its own test (a fresh heap, as at boot): after 120 s of sensing in the same
    # heap, the link's 8 KB buffer found no hole on a loaded CI machine
    time.model_set_ticks((1 << 30) - 500)
    _certs()
    uplink = link.Link(dict(settings.DEFAULTS, broker_host="localhost"), "a1b2c3d4", "certs",
                       board)
    uplink.drop("test")
    waited = 0
    while board.ticks_diff(board.ticks_ms(), uplink._retry_at) < 0:
        board.sleep_ms(100)
        waited += 100
        assert waited <= 2000, "the backoff never ends"
    assert waited >= 400


def test_7_a_link_made_late_in_the_ticks_period_tries_at_once():
    time.model_set_ticks((1 << 30) - 60000)  # booted (or first online) 12.4 days in
    _online()
    board.sync_clock()
    _certs()
    uplink = link.Link(dict(settings.DEFAULTS, broker_host="localhost", ack_timeout_s=1),
                       "a1b2c3d4", "certs", board)
    assert uplink.ensure() is False
    assert uplink.last_error is not None, "the first connect waits for the ticks to wrap"


def test_8_missing_or_bad_wifi_json_is_no_network_not_a_crash():
    board.radio(True)
    assert board.network_up() is False  # no wifi.json
    board._wlan = board._wifi_error = None
    _wifi("{not json")
    assert board.network_up() is False


def test_8_a_loose_wire_mid_read_is_counted_not_raised():
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    board.sleep_ms(300)
    machine.inject_i2c_fault(0x57, 116, after_bytes=3)  # ETIMEDOUT inside the FIFO burst
    hub.poll()
    machine.inject_i2c_fault(0x48, 19)  # ENODEV from the thermometer
    hub.vitals(sensing.Vitals())
    board.sleep_ms(300)
    machine.inject_i2c_fault(0x18, 116, after_bytes=3)  # and inside the accelerometer's burst
    hub.poll()
    assert hub.bus_errors == 3
    seconds = 0
    for _ in sensing.run(hub, board, 3):
        seconds += 1
    assert seconds == 3


def test_8_a_short_ntp_reply_is_an_oserror():
    _online()
    with open("ntp-fault", "w") as f:
        f.write("short")
    raises(OSError, board.sync_clock)


class _Verified:
    """A verifier whose firmware image passed every check: only the bootloader's is left."""

    def __init__(self, sink, kind):
        self.sink = sink
        self.kind = kind
        self.version = "2.0.0"
        self.counter = 2
        self.digest = bytes(32)

    def finish(self):
        return self


def test_9_an_image_the_bootloader_refuses_is_an_update_error():
    from wearsafe.ota import image, install

    installer = _installer()
    sink = install._PartitionSink(board.next_firmware_slot())
    block = bytearray(4096)
    block[0] = 0xE9  # the combined file starts with the bootloader: an image, not an app
    sink.write(block)
    e = raises(install.UpdateError, installer.commit, _Verified(sink, image.KIND_FIRMWARE))
    assert "micropython.bin" in str(e)
    assert "firmware_trial" not in installer.record.data  # nothing left on trial


def test_10_the_tls_context_is_built_once():
    _online()
    board.sync_clock()
    _certs()
    uplink = link.Link(dict(settings.DEFAULTS, broker_host="localhost"), "a1b2c3d4", "certs",
                       board)
    try:
        uplink._context()
    except ValueError:
        pass
    uplink._ssl_context = context = object()
    assert uplink._context() is context


def _connect_failing_with(error):
    """Link.ensure() with a client whose connect ends in `error` once its TLS socket
    is there; (ensure()'s result, the link's last error, whether the socket was closed)."""
    from umqtt.simple import MQTTClient

    closed = []

    class Socket:
        def close(self):
            closed.append(True)

    class Failing(MQTTClient):
        def connect(self, clean_session=True):
            self.sock = Socket()
            raise error

    _online()
    board.sync_clock()
    _certs()
    uplink = link.Link(dict(settings.DEFAULTS, broker_host="localhost"), "a1b2c3d4", "certs",
                       board)
    uplink._ssl_context = object()  # no handshake here: the failure is what counts
    real, link.MQTTClient = link.MQTTClient, Failing
    try:
        up = uplink.ensure()
    finally:
        link.MQTTClient = real
    return up, uplink.last_error, closed == [True]


def test_5_a_broker_certificate_that_fails_verification_backs_off():
    # mbedTLS's verdict on the broker's certificate, host name or date (modtls_mbedtls.c)
    up, error, closed = _connect_failing_with(ValueError("MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"))
    assert up is False and "TLS verification of localhost failed" in error, error
    assert closed


def test_10_a_refused_connect_closes_its_socket():
    from umqtt.simple import MQTTException

    up, error, closed = _connect_failing_with(MQTTException(5))  # CONNACK: not authorised
    assert up is False and "refused" in error, error
    assert closed, "a refused session keeps its mbedTLS buffers"


def test_11_a_firmware_trial_is_a_trial():
    installer = _installer()
    installer.record.data["firmware_trial"] = {"slot": board.running_firmware_slot()}
    assert installer.firmware_on_trial()
    installer.record.data["firmware_trial"] = {"slot": "ota_1"}  # rolled back already
    assert not installer.firmware_on_trial()


def test_crashes_pause_more_each_time_and_are_reported():
    nvs = board.nvs(crash.NAMESPACE)
    pauses = []
    crash.note(nvs, ValueError("x"), pauses.append)
    crash.note(nvs, KeyError("y"), pauses.append)
    assert pauses[1] == 2 * pauses[0] >= 4000
    assert crash.report(nvs) == [("crashes", "2 KeyError")]
    crash.clear_streak(nvs)
    crash.note(nvs, ValueError("z"), pauses.append)
    assert pauses[2] == pauses[0]


def test_the_watchdog_resets_a_hung_device():
    dog = board.watchdog(1000)
    board.sleep_ms(900)
    dog.feed()
    board.sleep_ms(900)
    try:
        board.sleep_ms(200)
    except SystemExit:
        return
    raise AssertionError("the watchdog did not reset the board")


def test_16_the_cpu_runs_at_240_mhz_not_the_ports_160():
    assert board.CPU_HZ == 240_000_000 and machine.freq() == board.CPU_HZ
    raises(ValueError, machine.freq, 100_000_000)


def test_16_the_radio_is_off_until_switched_on_and_off_again_after():
    _wifi()
    board.radio(False)
    assert board.network_up() is False  # a wifi.json alone joins nothing
    _online()
    board.radio(False)
    assert board.network_up() is False and board._wlan is None
