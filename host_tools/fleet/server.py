"""A server directory: the fleet's PKI, its broker configuration, and its records,
each part in its own module: the device key vault (vault.py), the sealed-message
store (store.py) and the audit log (audit.py). A server directory (0700) holds:

    pki/           the fleet CA and the identities it issued (host_tools.fleet.pki)
    broker/        the Mosquitto configuration (host_tools.fleet.broker)
    kek            the key-encryption key (0600; or $WEARSAFE_KEK as 64 hex digits)
    keys.db        device payload keys, each wrapped under the KEK (RFC 3394 AES key wrap)
    messages.db    the sealed messages as they arrived: still encrypted at rest
    audit.log      one JSON line per export or forget, with no personal data
    update-keys/   the public update-signing keys devices provisioned here trust
    SIMULATOR      present only in a directory `wearsafe sim` made (its update key
                   is a throwaway: it never provisions a real device)

Keys and messages live in separate files so that a copy of the message
store alone opens nothing. Deleting uses SQLite's secure_delete, so a
forgotten key is overwritten on disk, not just unlinked from the b-tree.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from host_tools.fleet.audit import AuditLog
from host_tools.fleet.broker import HIL_ID, INGEST_ID, RELEASE_ID
from host_tools.fleet.database import compact, record_url, recorded_url
from host_tools.fleet.pki import FleetCA, private_dir, write_private
from host_tools.fleet.store import MessageStore
from host_tools.fleet.vault import KeyVault
from host_tools.paths import ToolError

SIMULATOR_MARK = "SIMULATOR"  # in a server directory that `wearsafe sim` made


@dataclass
class Server(KeyVault, MessageStore, AuditLog):
    directory: Path

    @property
    def ca(self) -> FleetCA:
        return FleetCA.open_or_create(self.directory / "pki")

    @property
    def broker_dir(self) -> Path:
        return self.directory / "broker"

    def init(self, db: str | None = None) -> Server:
        """Create what is missing; `db`: keep the store in that PostgreSQL database."""
        private_dir(self.directory)
        self.use_database(db)
        for identity in (INGEST_ID, RELEASE_ID, HIL_ID):
            self.identity(identity)
        if not (self.directory / "kek").exists() and not os.environ.get("WEARSAFE_KEK"):
            write_private(self.directory / "kek", secrets.token_bytes(32))
        return self

    def use_database(self, url: str | None) -> Server:
        if url:
            record_url(self.directory, url)
        return self

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL database the store is in; None: SQLite files here."""
        return recorded_url(self.directory)

    @property
    def is_simulator(self) -> bool:
        """A `wearsafe sim` server directory: its update key is a throwaway."""
        return (self.directory / SIMULATOR_MARK).exists()

    def mark_simulator(self) -> None:
        (self.directory / SIMULATOR_MARK).write_text(
            "wearsafe sim's server: its signing key is a throwaway; never provision real "
            "devices from it\n")

    def identity(self, name: str) -> str:
        """A service identity's certificate (ingest, release, hil), issued on first use."""
        if not (self.ca.directory / f"{name}.crt").exists():
            self.ca.issue(name)
        return name

    # -- update-signing keys the devices trust (public halves, SPKI DER) -------

    def trust_update_key(self, spki: bytes) -> None:
        d = self.directory / "update-keys"
        d.mkdir(exist_ok=True)
        (d / f"{hashlib.sha256(spki).hexdigest()[:16]}.der").write_bytes(spki)

    def update_keys(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((self.directory / "update-keys").glob("*.der"))]

    # -- forgetting ----------------------------------------------------------

    def forget(self, device_id: str) -> int:
        """Destroy the device's key, delete its messages; return how many went."""
        with self.keys_db() as db:
            gone = db.execute("DELETE FROM device_keys WHERE device_id = ?",
                              (device_id,)).rowcount
            compact(db)
        with self.messages_db() as db:
            deleted = db.execute("DELETE FROM messages WHERE device_id = ?",
                                 (device_id,)).rowcount
            compact(db)
        if not gone and not deleted:
            raise ToolError(f"no device {device_id} here: nothing to forget")
        return deleted

def open_server(directory: Path, db: str | None = None) -> Server:
    if not (directory / "pki" / "ca.crt").exists():
        raise ToolError(f"{directory} is not a wearsafe server directory (no pki/ca.crt): "
                        "create it with `wearsafe broker-config --server DIR`")
    (server := Server(directory).use_database(db)).ca.warn_expiring(server.broker_dir)
    return server
