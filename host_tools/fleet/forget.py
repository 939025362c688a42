"""Forgetting a device (crypto-shredding): its key destroyed, its records deleted, its
certificate revoked, the broker reloaded and its live session cut."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from host_tools.fleet.broker import reload_broker
from host_tools.fleet.mqtt import start_client, tls_client
from host_tools.fleet.server import Server
from host_tools.paths import ToolError


def forget(server: Server, device_id: str,
           broker: tuple[str, int] | None = None) -> tuple[int, list[str]]:
    """Crypto-shred a device: key, records, certificate; the broker rereads its CRL, and
    its live session is cut at `broker` (host, port; default: this server's local
    broker). (messages deleted, what was done about the broker, for the operator)."""
    deleted = server.forget(device_id)
    if (server.ca.directory / f"{device_id}.crt").exists():
        server.ca.revoke(device_id)
    notes = [reload_broker(server.ca, server.broker_dir)]
    if server.database_url:
        notes.append(rotate_after_forget(server))
    broker = broker or local_broker(server)
    if broker is None:
        notes.append("no broker given (--broker HOST:PORT): a live session of the device "
                     "lasts until it reconnects")
    else:
        try:
            cut_session(server, device_id, *broker)
            notes.append(f"its session at {broker[0]}:{broker[1]} was cut and its retained "
                         "status cleared")
        except ToolError as e:
            notes.append(f"its session was NOT cut: {e}")
    server.audit("forget", device_id, records_deleted=deleted)
    return deleted, notes


def rotate_after_forget(server: Server) -> str:
    """PostgreSQL keeps what DELETE removed in its WAL (and backups keep it for good):
    there the device's key is still wrapped under the KEK. The other keys rewrapped
    under a new KEK, that old one (which alone opens the copy) is gone."""
    try:
        count = server.rotate_kek()
    except ToolError as e:
        return (f"the KEK was NOT rotated ({e}): until it is, a copy of the device's "
                "wrapped key in PostgreSQL's WAL or a backup can still open its messages")
    return (f"the KEK was rotated ({count} keys rewrapped): copies of the forgotten key "
            "in PostgreSQL's WAL and backups no longer unwrap")


def local_broker(server: Server) -> tuple[str, int] | None:
    """(host, port) of the listener in this server's broker configuration, if any."""
    try:
        conf = (server.broker_dir / "mosquitto.conf").read_text()
    except OSError:
        return None
    for line in conf.splitlines():
        if line.startswith("listener "):
            _, port, *host = line.split()
            return (host[0] if host else "localhost"), int(port)
    return None


CUT_SESSION_MINUTES = 10  # the life of the certificate that takes a device's place


def cut_session(server: Server, device_id: str, host: str, port: int) -> None:
    """Close a forgotten or revoked device's live connection and clear its retained
    status (its last will). The broker makes a certificate's CN the client id, so a
    connection as the device takes its place: the CA issues a certificate for it that
    lives minutes, whose key stays in a temporary directory of 0700. Revoke the
    device's own certificate and reload the broker first, or it is back at once.
    ToolError when the broker cannot be reached or refuses."""
    connected = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        server.ca.issue(device_id, days=CUT_SESSION_MINUTES / 1440, into=Path(tmp))
        client = tls_client(server, device_id, cert_dir=Path(tmp))
        client.on_connect = lambda c, u, f, rc, p: rc == 0 and connected.set()
        start_client(client, host, port, "forget")
    try:
        if not connected.wait(10):
            raise ToolError(f"the broker at {host}:{port} did not let the session cut in")
        info = client.publish(f"devices/{device_id}/status", b"", qos=1, retain=True)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
