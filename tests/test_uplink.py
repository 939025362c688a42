"""The device's uplink end to end: the firmware on the unix port, a real Mosquitto
with TLS and client certificates, and the ingest storing what arrives."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cbor2

from host_tools.fleet.export import export, readings
from host_tools.paths import THIRD_PARTY_LIB, micropython


def test_a_device_publishes_and_the_ingest_stores_and_opens_each_batch(fleet):
    device = fleet.add_device(batch_seconds=2)
    done = fleet.run_app(device, seconds=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "link-up" in done.stdout, done.stdout
    # its status (version) at boot, then five batches
    assert fleet.wait_stored(6) == 6, fleet.ingest_log.read_text()
    assert fleet.ingest.duplicates == fleet.ingest.rejected == 0
    rows = readings(fleet.server, device.device_id)
    quantities = {r["quantity"] for r in rows}
    assert {"heart-rate", "spo2", "body-temp", "steps"} <= quantities, rows
    assert all(40 <= r["value"] <= 200 for r in rows if r["quantity"] == "heart-rate")
    # what is stored is the sealed message, encrypted at rest
    for _, sealed in fleet.server.stored(device.device_id):
        assert cbor2.loads(sealed).tag == 16
    assert export(fleet.server, device.device_id, "csv").startswith("time,quantity,value,unit")


def test_the_device_log_holds_no_reading_and_no_key(fleet):
    device = fleet.add_device(batch_seconds=2)
    done = fleet.run_app(device, seconds=4)
    assert done.returncode == 0, done.stdout + done.stderr
    key = fleet.server.device_key(device.device_id)
    for line in done.stdout.splitlines():
        assert "beat" not in line and "Cel" not in line
        assert key.key.hex() not in line
    assert "sealed" in done.stdout and "outbox" in done.stdout


def newer_umqtt(lib: Path) -> Path:
    """umqtt.simple as frozen in the stock ESP32 firmware (1.4+), from the pinned 1.3.4.

    The newer API differs where TLS starts: the constructor takes an SSLContext as
    `ssl` and no `ssl_params`, and connect() calls ssl.wrap_socket(sock,
    server_hostname=server) instead of importing ussl. Those lines are rewritten
    here; the test fails if the pinned source no longer has them.
    """
    source = (THIRD_PARTY_LIB / "umqtt" / "simple.py").read_text()
    rewrites = {
        "ssl=False, ssl_params={}):": "ssl=None):",
        "        self.ssl_params = ssl_params\n": "",
        "            import ussl\n            self.sock = ussl.wrap_socket(self.sock, "
        "**self.ssl_params)":
        "            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)",
    }
    for old, new in rewrites.items():
        assert source.count(old) == 1, f"umqtt.simple 1.3.4 changed: {old!r}"
        source = source.replace(old, new)
    (lib / "umqtt").mkdir(parents=True)
    (lib / "umqtt" / "simple.py").write_text(source)
    return lib


def test_the_newer_umqtt_simple_of_the_esp32_firmware_works_too(fleet, tmp_path):
    lib = newer_umqtt(tmp_path / "newer-lib")
    device = fleet.add_device(batch_seconds=2)
    path = f"{lib}{os.pathsep}{fleet.fs / 'lib'}{os.pathsep}.frozen"
    done = fleet.run_app(device, seconds=4, MICROPYPATH=path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet.wait_stored(3) == 3, fleet.ingest_log.read_text()  # status, two batches
    check = subprocess.run([micropython(), "-c", "import umqtt.simple as u; print(u.__file__)"],
                           env=dict(os.environ, MICROPYPATH=path), capture_output=True,
                           text=True, check=True)
    assert check.stdout.strip() == str(lib / "umqtt" / "simple.py")


def test_a_blocked_loop_is_reported_and_the_heart_rate_after_it_is_right(fleet):
    """The loop blocked for 3 s (WEARSAFE_SIM_STALL, the sim board's test hook):
    the pack says what the FIFOs lost, no heart rate spans the gap, and the
    heart rate once a clean window has refilled is the wearer's (rest: 62)."""
    device = fleet.add_device(batch_seconds=5)
    done = fleet.run_app(device, seconds=25, WEARSAFE_SIM_STALL="10000:3000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fleet.wait_stored(6) >= 6, fleet.ingest_log.read_text()
    rows = readings(fleet.server, device.device_id)
    lost = [r for r in rows if r["quantity"] == "ppg-lost"]
    overruns = [r for r in rows if r["quantity"] == "accel-overrun"]
    assert [r["value"] for r in lost] == [31] and [r["value"] for r in overruns] == [1], rows
    gap = lost[0]["time"]
    rates = {r["time"]: r["value"] for r in rows if r["quantity"] == "heart-rate"}
    assert not [t for t in rates if gap <= t < gap + 3], rates  # a new window fills first
    after = [v for t, v in rates.items() if t >= gap + 8]
    assert after and all(abs(v - 62) <= 3 for v in after), rates
    totals = [r["value"] for r in rows if r["quantity"] == "ppg-lost-total"]
    assert totals and totals[0] == "0"  # each status message: the count since boot


HANDSHAKE = """
import boot, board
from wearsafe import app, keystore, link, realtime, settings

inside, served = [False], [0]
tls_io = link._Bounded._tls_io

def counting_io(self, operation, arg):  # every call into mbedTLS (the handshake's too)
    inside[0] = True
    try:
        return tls_io(self, operation, arg)
    finally:
        inside[0] = False

def sensors():  # a sensor task due at every chance to run
    served[0] += inside[0]

link._Bounded._tls_io = counting_io
realtime.every(board, 0, sensors)
state = board.state_dir()
store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
uplink = app.start(state, settings.load(state + "/settings.json"), store)[1].link
board.radio(True)
board.sleep_ms(2000)  # joining the network
print("up", uplink.ensure(), "served-inside-mbedtls", served[0])
"""


def test_the_tls_handshake_serves_the_sensors_between_its_records(fleet):
    # On an ESP32 the client's second flight (chain check, the server's signature,
    # key exchange, our signature) is over two seconds of mbedTLS: served only
    # between flights, a 1.28 s FIFO overflows at each reconnect. mbedTLS reads and
    # writes each record through link._Serviced, which serves the sensors there.
    device = fleet.add_device()
    command = fleet.app_command(device, seconds=1)
    command["args"][-1] = HANDSHAKE
    done = subprocess.run(**command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    words = done.stdout.split()
    assert words[words.index("up") + 1] == "True", done.stdout
    # ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone
    # are read, then Certificate, ClientKeyExchange, CertificateVerify,
    # ChangeCipherSpec, Finished written, each through the socket
    assert int(words[words.index("served-inside-mbedtls") + 1]) >= 8, done.stdout
