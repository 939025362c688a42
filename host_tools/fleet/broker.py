"""The broker: Mosquitto configuration for the fleet, and a local broker for tests and the sim.

The configuration has one listener, TLS with client certificates required;
there is no plaintext listener and no password login. The certificate's CN
is the MQTT user name and the client id, and the ACL gives each device exactly:
    write  devices/<its id>/up       sealed readings
    write  devices/<its id>/status   its last will ("offline")
    read   updates/<its board class>/#   its class's signed updates (OTA)
and each ingest process's identity reads devices/+/up. A device's board class
is in its certificate (subject OU), and the ACL names each device with it:
provisioning and forgetting rewrite the ACL of the server's broker and
reload it. Revoked certificates are in the CRL; the broker rereads both on
SIGHUP.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from host_tools.fleet.pki import (
    FleetCA,
    install_crl,
    install_public,
    reload_broker_pid,
    write_private,
)
from host_tools.paths import ToolError
from host_tools.processes import Service, die_with_parent

INGEST_ID = "ingest"  # the first ingest process; the others: ingest_identity(n)
INGEST_PROCESSES = 8  # each its own certificate: the broker makes its CN the client id
RELEASE_ID = "release"  # publishes signed update images
HIL_ID = "hil"  # hardware-in-the-loop: reads the board under test's uplink
# Largest MQTT packet the broker takes: an outbox record (<= 4 KiB sealed) or an
# update chunk (release.CHUNK, 4 KiB) with its topic, with room to spare.
MAX_PACKET = 16 * 1024
# QoS 1 messages the broker sends a subscriber ahead of its PUBACKs (Mosquitto's
# default is 20): two of the ingest's batches, so the next arrives while one is
# stored, and a commit's round trip (about 1 ms to a local PostgreSQL) is shared
# by 500 messages. Devices subscribe at QoS 0 only: this window is never theirs.
INFLIGHT_WINDOW = 1000
SHARE_GROUP = "ingest"
UP_TOPIC = "devices/{}/up"
# A plain persistent subscription: Mosquitto 2.0 does not restore shared
# subscriptions ($share/...) from its persistence file, so what devices publish
# after a broker restart and before the ingest is back would be dropped.
INGEST_SUBSCRIPTION = "devices/+/up"
SHARED_INGEST_SUBSCRIPTION = f"$share/{SHARE_GROUP}/devices/+/up"



def ingest_identity(n: int) -> str:
    """The certificate CN (and so the client id) of ingest process n, 1..INGEST_PROCESSES."""
    if not 1 <= n <= INGEST_PROCESSES:
        raise ToolError(f"ingest process number {n}: give 1 to {INGEST_PROCESSES}")
    return INGEST_ID if n == 1 else f"{INGEST_ID}-{n}"


_INGEST_USERS = "".join(f"user {ingest_identity(n)}\ntopic read devices/+/up\n"
                        for n in range(1, INGEST_PROCESSES + 1))
STATIC_ACL = f"""\
# wearsafe broker ACL: the user name is the client certificate's CN, and so is
# the client id (use_username_as_clientid): no one holds another's session.
# Every device (a pattern applies to all users; %u is the user name):
pattern write devices/%u/up
pattern write devices/%u/status

# Each ingest process reads every device's readings (also through $share/{SHARE_GROUP}/).
{_INGEST_USERS}
# Release engineering publishes signed images and their announcements.
user {RELEASE_ID}
topic readwrite updates/#

# A hardware-in-the-loop run reads the board under test's readings.
user {HIL_ID}
topic read devices/+/up
"""
_ACL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # nothing that could break an ACL line


def acl(ca: FleetCA) -> str:
    """The ACL: the rules above, then each device's own class of updates to read
    (from its certificate; none for a revoked or expired one)."""
    lines = [STATIC_ACL, "# Each device reads the signed updates of its own board class only."]
    for device_id, board_class in ca.board_classes().items():
        if _ACL_NAME.fullmatch(device_id) and _ACL_NAME.fullmatch(board_class):
            lines.append(f"user {device_id}\ntopic read updates/{board_class}/#")
    return "\n".join(lines) + "\n"


def reload_broker(ca: FleetCA, broker_dir: Path) -> str:
    """Give the broker configured in `broker_dir` the CA's current CRL and the ACL
    for the devices it has now, and have it reread them if it runs (SIGHUP: Mosquitto
    rereads at most 100 ms later, src/loop.c). What was done, for the operator."""
    if not (broker_dir / "mosquitto.conf").exists():
        return (f"no broker configuration in {broker_dir}: run `wearsafe broker-config` "
                "again for your broker's directory (its CRL and ACL), and reload it "
                "(SIGHUP, or systemctl reload mosquitto)")
    install_crl(ca, [broker_dir])
    install_public(broker_dir / "acl", acl(ca).encode())
    try:
        pid = reload_broker_pid(broker_dir / "mosquitto.pid")
        return f"the broker of {broker_dir} (pid {pid}) rereads its CRL and ACL"
    except ToolError as e:  # not running: it reads them when it starts
        return (f"CRL and ACL written to {broker_dir}, but the broker was not reloaded ({e}): "
                "reload yours (SIGHUP, or systemctl reload mosquitto)")


def parse_address(text: str, option: str = "--broker") -> tuple[str, int]:
    """(host, port) of a HOST:PORT address (an IPv6 host as [::1]:8883 or ::1:8883)."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ToolError(f"{option} {text!r}: give HOST:PORT, e.g. 192.168.1.10:8883")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host.strip():
        raise ToolError(f"{option} {text!r}: the host is empty: give HOST:PORT, e.g. "
                        "192.168.1.10:8883")
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_config(out: Path, ca: FleetCA, port: int = 8883, host: str = "127.0.0.1",
                 run_as_me: bool = False, verbose: bool = False,
                 names: Iterable[str] = ()) -> Path:
    """Write mosquitto.conf, its ACL and the TLS files into `out`; return the .conf.

    The server certificate names localhost, 127.0.0.1, `names` (the host names
    and addresses devices reach the broker by) and whatever it named before;
    it is (re-)issued when it lacks one (FleetCA.ensure_broker_certificate).
    Bad names: ToolError before anything is written. `run_as_me`: a broker
    started by this user (tests, the sim) keeps this user's rights instead of
    dropping to the mosquitto user, which could not read 0600 keys.
    """
    ca.ensure_broker_certificate(names)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    # each file whole: a running broker rereads them on SIGHUP
    for source in (ca.cert_path, ca.broker_cert_path, ca.crl_path):
        install_public(out / source.name, source.read_bytes())
    write_private(out / ca.broker_key_path.name, ca.broker_key_path.read_bytes())
    install_public(out / "acl", acl(ca).encode())
    lines = [
        "# wearsafe: TLS with client certificates only; there is no plaintext listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {out / 'acl'}",
        # The ingest's session (its subscription and the messages queued for it)
        # survives a broker restart: a message acknowledged to a device is not lost.
        "persistence true",
        f"persistence_location {out}/",
        "autosave_interval 10",
        # Mosquitto drops QoS 1 messages past 1000 queued for a slow or absent
        # subscriber, after the device has had its PUBACK: queue far more.
        "max_queued_messages 100000",
        f"max_inflight_messages {INFLIGHT_WINDOW}",
        # A larger packet closes the connection that sent it, before anyone reads it.
        f"max_packet_size {MAX_PACKET}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        *(["log_type all"] if verbose else []),  # every packet, for leak tests
        f"listener {port} {host}",
        "protocol mqtt",
        f"cafile {out / 'ca.crt'}",
        f"certfile {out / ca.broker_cert_path.name}",
        f"keyfile {out / ca.broker_key_path.name}",
        # The CRL lasts 30 days: past it this broker refuses EVERY client. Re-sign and
        # reload it daily: `wearsafe crl-renew --server DIR --broker-dir THIS_DIR &&
        # systemctl reload mosquitto` (a reload is a SIGHUP: it rereads this file).
        f"crlfile {out / 'crl.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        # The client id is the certificate's CN, whatever the client asked for: a
        # device with a valid certificate cannot take the ingest's persistent
        # session (and the messages queued in it), nor knock another device off.
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
    ]
    if run_as_me:
        import pwd

        lines.insert(1, f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    conf = out / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def aws_iot_policy(region: str = "*", account: str = "*") -> dict[str, object]:
    """The same rules as an AWS IoT Core policy: client id = thing name, and each
    thing's attribute `board_class` (set when it is registered) names its updates."""
    arn = f"arn:aws:iot:{region}:{account}"
    thing = "${iot:Connection.Thing.ThingName}"
    board_class = "${iot:Connection.Thing.Attributes[board_class]}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn}:client/{thing}",
             "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": [f"{arn}:topic/devices/{thing}/up",
                          f"{arn}:topic/devices/{thing}/status"]},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": f"{arn}:topicfilter/updates/{board_class}/*"},
            {"Effect": "Allow", "Action": "iot:Receive",
             "Resource": f"{arn}:topic/updates/{board_class}/*"},
        ],
    }


def write_aws_policy(out: Path) -> Path:
    path = out / "aws-iot-policy.json"
    path.write_text(json.dumps(aws_iot_policy(), indent=2) + "\n")
    return path


class Broker(Service):
    """A Mosquitto of ours on a free port of a loopback address (`host`, default
    127.0.0.1); its certificate also names `names`. Stopped on exit."""

    def __init__(self, workdir: Path, ca: FleetCA, port: int | None = None,
                 verbose: bool = False, host: str = "127.0.0.1",
                 names: Iterable[str] = ()) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ToolError(f"a local broker listens on a loopback address, not {host!r}: "
                            "for a broker the LAN reaches, use `wearsafe broker-config`")
        self.workdir = workdir
        self.verbose = verbose
        self.ca = ca
        self.host = host
        self.names = list(names)
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        return write_config(self.workdir, self.ca, self.port, self.host, run_as_me=True,
                            verbose=self.verbose, names=self.names)

    def reload(self, names: Iterable[str] = ()) -> None:
        """Rewrite the configuration (the certificate re-issued if it lacks one of
        `names`, or copied again if it changed since) and have the running broker
        reread its certificates: Mosquitto does on SIGHUP."""
        self.names = [*self.names, *names]
        self._write_config()
        if self.process is None or self.process.poll() is not None:
            raise ToolError("the broker is not running")
        os.kill(self.process.pid, signal.SIGHUP)
        certified = self.ca.certified_broker_names() or []
        deadline = time.monotonic() + 10
        while not self._serves(certified):  # it rereads them between two passes of its loop
            if time.monotonic() > deadline:
                raise ToolError(f"the broker did not take its new certificate:\n"
                                f"{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _serves(self, names: list[str]) -> bool:
        """Whether the certificate the broker presents names each of `names`."""
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        for name in names:
            try:
                with (socket.create_connection((self.host, self.port), timeout=2) as sock,
                      context.wrap_socket(sock, server_hostname=name)):
                    pass
            except ssl.SSLCertVerificationError:
                return False
            except OSError:
                pass  # past the check of its certificate: the broker wanted ours
        return True

    def start(self) -> Self:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(mosquitto, os.X_OK):
            raise ToolError("mosquitto not found: run `make deps` (Debian package mosquitto)")
        conf = self._write_config()
        log = open(self.log, "ab")  # noqa: SIM115 - the broker writes it as long as it runs
        self.process = subprocess.Popen([mosquitto, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, start_new_session=True,
                                        preexec_fn=die_with_parent)
        log.close()
        (self.workdir / "mosquitto.pid").write_text(f"{self.process.pid}\n")  # for `forget`
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise ToolError(f"mosquitto exited at start:\n{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ToolError(f"mosquitto did not listen on port {self.port}") from None
                time.sleep(0.05)
