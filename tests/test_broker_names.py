"""The broker's certificate names the hosts devices reach it by (issue 12, item 6).

A device checks the broker's host name (CERT_REQUIRED, server_hostname = its
settings' broker_host), so a broker reached by a LAN name or address must
present a certificate naming it. The broker here is the real Mosquitto; its
"LAN address" is 127.0.0.2 and its LAN name is resolved by hand to that
address (loopback only: nothing here reaches another network address).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from host_tools.fleet.server import Server
from host_tools.paths import micropython, venv_tool

LAN_NAME = "wearsafe-broker.lan"
LAN_ADDRESS = "127.0.0.2"  # loopback, standing in for the broker's LAN address
NOT_GIVEN = ("other-broker.lan", "127.0.0.3")
LOCAL = ("localhost", "127.0.0.1")
WEARSAFE = venv_tool("wearsafe")
# MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id "names-test"
CONNECT = b"\x10\x16\x00\x04MQTT\x04\x02\x00\x0a\x00\x0anames-test"
CONNACK_OK = b"\x20\x02\x00\x00"

DEVICE_CLIENT = f"""
import socket, ssl, sys
d, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def read(name):
    with open(d + "/" + name, "rb") as f:
        return f.read()
# the context exactly as the firmware's link builds it (wearsafe/link.py)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.verify_mode = ssl.CERT_REQUIRED
context.load_verify_locations(cadata=read("ca.der"))
context.load_cert_chain(read("device.der"), read("device.key.der"))
for name in sys.argv[4:]:
    sock = socket.socket()
    sock.settimeout(5)
    sock.connect(socket.getaddrinfo(address, port)[0][-1])
    try:
        tls = context.wrap_socket(sock, server_hostname=name)
    except (OSError, ValueError) as e:  # ValueError: mbedTLS's verification verdict
        sock.close()
        print(name, "refused", " ".join(str(e).split()))
        continue
    tls.write({CONNECT!r})
    answer = tls.read(4)
    tls.close()
    print(name, "connected" if answer == {CONNACK_OK!r} else "answered " + repr(answer))
"""


def wearsafe(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEARSAFE, *map(str, argv)], capture_output=True, text=True,
                          timeout=120)


def certified(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress))}


def python_client(pki: Path, address: str, port: int, name: str) -> str:
    """'connected' when a client that checks the host name `name` gets through TLS and
    the broker accepts its MQTT CONNECT; otherwise why not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.load_verify_locations(pki / "ca.crt")
    context.load_cert_chain(pki / "ingest.crt", pki / "ingest.key")
    with socket.create_connection((address, port), timeout=5) as sock:
        try:
            with context.wrap_socket(sock, server_hostname=name) as tls:
                tls.sendall(CONNECT)
                answer = tls.recv(4)
        except ssl.SSLCertVerificationError as e:
            return f"refused: {e.verify_message}"
    return "connected" if answer == CONNACK_OK else f"answered {answer!r}"


def device_client(certs: Path, address: str, port: int, names: list[str]) -> dict[str, str]:
    """The same from the MicroPython unix port (its ssl is mbedTLS, as on the ESP32)."""
    done = subprocess.run([micropython(), "-c", DEVICE_CLIENT, str(certs), address, str(port),
                           *names], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def device_certs(server: Server, directory: Path) -> Path:
    from host_tools.fleet.pki import der, write_private

    key_path, cert_path = server.ca.issue("00000000000000d1")
    directory.mkdir()
    (directory / "ca.der").write_bytes(der(server.ca.cert_path))
    (directory / "device.der").write_bytes(der(cert_path))
    write_private(directory / "device.key.der", der(key_path))
    key_path.unlink()
    return directory


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_broker_certificate_names_lan_host(tmp_path):
    from host_tools.fleet.broker import Broker

    server = Server(tmp_path / "server").init()
    pki = server.ca.directory
    certs = device_certs(server, tmp_path / "certs")
    broker = Broker(server.broker_dir, server.ca, host=LAN_ADDRESS).start()
    try:
        # first use: the certificate names the local names only
        assert certified(pki / "localhost.crt") == set(LOCAL)
        assert python_client(pki, LAN_ADDRESS, broker.port, "localhost") == "connected"
        assert "mismatch" in python_client(pki, LAN_ADDRESS, broker.port, LAN_NAME)
        first_serial = x509.load_pem_x509_certificate(
            (pki / "localhost.crt").read_bytes()).serial_number

        # the operator names the broker's LAN name and address: the certificate is
        # re-issued (it already existed), written where the broker reads it, and the
        # broker told to reload it (Mosquitto rereads its certificates on SIGHUP)
        out = wearsafe("broker-config", "--server", server.directory, "--out",
                       tmp_path / "conf", "--host", LAN_ADDRESS, "--port", broker.port,
                       "--broker-name", LAN_NAME, "--broker-name", LAN_ADDRESS)
        assert out.returncode == 0, out.stderr
        assert "re-issued" in out.stdout and "reload" in out.stdout
        assert certified(pki / "localhost.crt") == {*LOCAL, LAN_NAME, LAN_ADDRESS}
        assert certified(tmp_path / "conf" / "localhost.crt") == {*LOCAL, LAN_NAME, LAN_ADDRESS}
        assert x509.load_pem_x509_certificate(
            (pki / "localhost.crt").read_bytes()).serial_number != first_serial
        for key in (pki / "localhost.key", tmp_path / "conf" / "localhost.key"):
            assert mode(key) == 0o600
        broker.reload()
        assert mode(server.broker_dir / "localhost.key") == 0o600

        for name in (LAN_NAME, LAN_ADDRESS, *LOCAL):
            assert python_client(pki, LAN_ADDRESS, broker.port, name) == "connected", name
        for name in NOT_GIVEN:
            verdict = python_client(pki, LAN_ADDRESS, broker.port, name)
            assert verdict.startswith("refused") and "mismatch" in verdict, (name, verdict)

        device = device_client(certs, LAN_ADDRESS, broker.port,
                               [LAN_NAME, LAN_ADDRESS, *LOCAL, *NOT_GIVEN])
        for name in (LAN_NAME, LAN_ADDRESS, *LOCAL):
            assert device[name] == "connected", (name, device)
        for name in NOT_GIVEN:
            assert device[name].startswith("refused") and "does not match" in device[name], \
                (name, device)
    finally:
        broker.stop()


def test_certificate_reissued_only_when_its_names_change(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    from host_tools.fleet.broker import write_config
    from host_tools.fleet.pki import _pem_key, write_private

    ca = Server(tmp_path / "server").init().ca
    out = tmp_path / "broker"

    def serial() -> int:
        return x509.load_pem_x509_certificate(
            (ca.directory / "localhost.crt").read_bytes()).serial_number

    write_config(out, ca)
    first = serial()
    write_config(out, ca)
    assert serial() == first  # nothing changed: the same certificate
    write_config(out, ca, names=["Broker.LAN"])
    second = serial()
    assert second != first and certified(ca.directory / "localhost.crt") == {*LOCAL,
                                                                             "broker.lan"}
    write_config(out, ca)  # no names given: those certified stay (devices use them)
    assert serial() == second
    write_config(out, ca, names=["broker.lan", "localhost"])
    assert serial() == second
    assert (out / "localhost.crt").read_bytes() == (ca.directory / "localhost.crt").read_bytes()
    # a key that does not match the certificate (a crash between the two writes)
    write_private(ca.directory / "localhost.key", _pem_key(ec.generate_private_key(
        ec.SECP256R1())))
    write_config(out, ca)
    assert serial() != second and certified(ca.directory / "localhost.crt") == {*LOCAL,
                                                                                "broker.lan"}
    third = serial()
    # one near its end (RENEW_DAYS) is renewed, with the names it had
    ca.issue("localhost", server=True, names=["broker.lan"], days=10)
    write_config(out, ca)
    assert serial() not in (third, first, second)
    cert = x509.load_pem_x509_certificate((out / "localhost.crt").read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days > 800
    assert certified(out / "localhost.crt") == {*LOCAL, "broker.lan"}
    for key in (ca.directory / "localhost.key", out / "localhost.key"):
        assert mode(key) == 0o600
    assert not [p.name for p in (*ca.directory.iterdir(), *out.iterdir())
                if p.name.endswith(".tmp")]


BAD_NAMES = {
    "": "empty",
    " ": "empty",
    "*.lan": "wildcard",
    "broker.*": "wildcard",
    "300.1.2.3": "not a valid IP address",
    "192.168.1": "not a valid IP address",
    "[::1]": "not a valid IP address",
    "fe80::1%eth0": "zone",
    "bad_name.lan": "not a valid host name",
    "broker..lan": "not a valid host name",
    "-broker.lan": "not a valid host name",
    "broker.lan.": "not a valid host name",
}


@pytest.mark.parametrize("name", list(BAD_NAMES))
def test_a_bad_broker_name_is_a_clear_error_and_changes_nothing(tmp_path, name):
    server_dir = tmp_path / "server"
    assert wearsafe("broker-config", "--server", server_dir, "--out", tmp_path / "conf",
                    "--broker-name", LAN_NAME).returncode == 0
    before = {p.name: p.read_bytes() for p in (server_dir / "pki").iterdir()}

    out = wearsafe("broker-config", "--server", server_dir, "--out", tmp_path / "conf2",
                   "--broker-name", LAN_NAME, f"--broker-name={name}")
    assert out.returncode == 1 and BAD_NAMES[name] in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("wearsafe broker-config: ")
    assert not (tmp_path / "conf2").exists()

    bundle = tmp_path / "bundles" / "dev"
    out = wearsafe("provision", "--server", server_dir, "--out", bundle, f"--broker-host={name}")
    assert out.returncode == 1 and BAD_NAMES[name] in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("wearsafe provision: ")
    assert not bundle.exists()
    assert {p.name: p.read_bytes() for p in (server_dir / "pki").iterdir()} == before

    fresh = tmp_path / "fresh-server"  # nothing is created for a bad name
    out = wearsafe("provision", "--server", fresh, "--out", bundle, f"--broker-host={name}")
    assert out.returncode == 1 and BAD_NAMES[name] in out.stderr, out.stderr
    assert not fresh.exists() and not bundle.exists()


def registered(server_dir: Path) -> int:
    with sqlite3.connect(server_dir / "keys.db") as db:
        return int(db.execute("SELECT count(*) FROM device_keys").fetchone()[0])


def test_provision_refuses_a_broker_host_the_certificate_does_not_name(tmp_path):
    server_dir = tmp_path / "server"
    assert wearsafe("broker-config", "--server", server_dir, "--out", tmp_path / "conf",
                    "--broker-name", LAN_NAME, "--broker-name", "192.168.1.10").returncode == 0
    cert_before = (server_dir / "pki" / "localhost.crt").read_bytes()

    for host in (LAN_NAME, "WEARSAFE-broker.lan", "192.168.1.10", "localhost"):
        bundle = tmp_path / "bundles" / host
        out = wearsafe("provision", "--server", server_dir, "--out", bundle, "--broker-host",
                       host)
        assert out.returncode == 0, out.stderr
        settings = json.loads((bundle / "settings.json").read_text())
        assert settings["broker_host"] == host.lower()
    devices = registered(server_dir)

    bundle = tmp_path / "bundles" / "stray"
    out = wearsafe("provision", "--server", server_dir, "--out", bundle, "--broker-host",
                   "other-broker.lan")
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stderr
    # what is wrong, what the certificate names, and the commands that fix it
    assert "does not name 'other-broker.lan'" in out.stderr, out.stderr
    assert f"localhost, 127.0.0.1, {LAN_NAME}, 192.168.1.10" in out.stderr
    assert "wearsafe broker-config" in out.stderr and "--broker-name other-broker.lan" \
        in out.stderr and "SIGHUP" in out.stderr
    assert not bundle.exists() and not (tmp_path / "bundles" / ".stray.new").exists()
    assert registered(server_dir) == devices  # no key registered for it
    assert (server_dir / "pki" / "localhost.crt").read_bytes() == cert_before

    # the fix the message gives works
    assert wearsafe("broker-config", "--server", server_dir, "--out", tmp_path / "conf",
                    "--broker-name", "other-broker.lan").returncode == 0
    assert certified(server_dir / "pki" / "localhost.crt") == {
        *LOCAL, LAN_NAME, "192.168.1.10", "other-broker.lan"}
    out = wearsafe("provision", "--server", server_dir, "--out", bundle, "--broker-host",
                   "other-broker.lan")
    assert out.returncode == 0, out.stderr


def test_hil_refuses_a_broker_the_certificate_does_not_name(tmp_path):
    """Said before the board is touched (/dev/ttyUSB7 does not exist here)."""
    server_dir = tmp_path / "server"
    assert wearsafe("broker-config", "--server", server_dir, "--out", tmp_path / "conf",
                    "--broker-name", LAN_NAME).returncode == 0
    out = wearsafe("hil", "--port", "/dev/ttyUSB7", "--server", server_dir, "--broker",
                   "other-broker.lan:8883")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "does not name 'other-broker.lan'" in out.stderr, out.stderr


def test_first_provision_certifies_the_broker_host(tmp_path):
    """No broker certificate yet (no broker can be running it): the first one names the
    host the device is given."""
    server_dir = tmp_path / "server"
    out = wearsafe("provision", "--server", server_dir, "--out", tmp_path / "dev",
                   "--broker-host", LAN_ADDRESS)
    assert out.returncode == 0, out.stderr
    assert certified(server_dir / "pki" / "localhost.crt") == {*LOCAL, LAN_ADDRESS}
    assert mode(server_dir / "pki" / "localhost.key") == 0o600
    assert "broker certificate" in out.stdout and "wearsafe broker-config" in out.stdout


def test_the_broker_certificate_key_never_leaves_0600(tmp_path):
    """Even over a stale temporary file left readable by others."""
    from host_tools.fleet.broker import write_config

    ca = Server(tmp_path / "server").init().ca
    out = tmp_path / "broker"
    out.mkdir(mode=0o700)
    for stale in (ca.directory / "localhost.key.tmp", out / "localhost.key.tmp",
                  out / "localhost.key"):
        stale.write_text("stale")
        os.chmod(stale, 0o644)
    write_config(out, ca, names=[LAN_NAME])
    for key in (ca.directory / "localhost.key", out / "localhost.key"):
        assert mode(key) == 0o600



def test_the_firmware_reaches_the_broker_by_its_lan_address(tmp_path, sim_build):
    """The device's own link (umqtt.simple over the unix port's mbedTLS, checking the
    host name) publishes to a broker it is given by address, which the ingest (paho,
    checking the host name too) reads from the same address."""
    import threading

    from host_tools.device.provision import provision_sim_device, sim_env
    from host_tools.fleet.broker import Broker
    from host_tools.fleet.ingest import Ingest
    from host_tools.sim.fleet import SIM_HEAP

    server = Server(tmp_path / "server").init()
    with Broker(server.broker_dir, server.ca, host=LAN_ADDRESS, names=[LAN_ADDRESS]) as broker, \
            open(tmp_path / "ingest.log", "w") as log:
        ingest = Ingest(server, log=log)
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=ingest.run, args=(broker.port, LAN_ADDRESS),
                                  kwargs={"stop": stop, "ready": ready}, daemon=True)
        thread.start()
        try:
            assert ready.wait(10), (tmp_path / "ingest.log").read_text()
            device = provision_sim_device(server, sim_build, tmp_path / "device",
                                          broker.port, 2, broker_host=LAN_ADDRESS)
            done = subprocess.run(
                [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c",
                 "import boot, wearsafe.app; wearsafe.app.run(4)"], cwd=sim_build,
                env=sim_env(sim_build, device.state, WEARSAFE_SIM_SPEED="0"),
                capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "link-up" in done.stdout, done.stdout
            deadline = time.monotonic() + 10
            while not ingest.stored and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ingest.stored >= 1, (tmp_path / "ingest.log").read_text()
        finally:
            stop.set()
            thread.join(10)
