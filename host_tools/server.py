"""The server side: the device key vault, the sealed-message store, the audit log.

A server directory (0700) holds:

    pki/           the fleet CA and the identities it issued (host_tools.pki)
    broker/        the Mosquitto configuration (host_tools.broker)
    kek            the key-encryption key (0600; or $WEARSAFE_KEK as 64 hex digits)
    keys.db        device payload keys, each wrapped under the KEK (RFC 3394 AES key wrap)
    messages.db    the sealed messages as they arrived: still encrypted at rest
    audit.log      one JSON line per export or forget, with no personal data

Keys and messages live in separate files so that a copy of the message
store alone opens nothing. Deleting uses SQLite's secure_delete, so a
forgotten key is overwritten on disk, not just unlinked from the b-tree.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from host_tools.broker import HIL_ID, INGEST_ID, RELEASE_ID
from host_tools.paths import ToolError
from host_tools.payloads import DeviceKey
from host_tools.pki import FleetCA, private_dir, write_private


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA secure_delete = ON")
    db.execute("PRAGMA journal_mode = WAL")
    return db


def _compact(db: sqlite3.Connection) -> None:
    """Leave no copy of deleted rows in free pages or in the write-ahead log."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def device_ref(device_id: str) -> str:
    """What the audit log names a device by: a one-way reference, not its id."""
    return hashlib.sha256(b"wearsafe-audit\0" + device_id.encode()).hexdigest()[:16]


SIMULATOR_MARK = "SIMULATOR"  # in a server directory that `wearsafe sim` made


@dataclass
class Server:
    directory: Path

    @property
    def ca(self) -> FleetCA:
        return FleetCA.open_or_create(self.directory / "pki")

    @property
    def broker_dir(self) -> Path:
        return self.directory / "broker"

    def init(self) -> Server:
        private_dir(self.directory)
        for identity in (INGEST_ID, RELEASE_ID, HIL_ID):
            self.identity(identity)
        if not (self.directory / "kek").exists() and not os.environ.get("WEARSAFE_KEK"):
            write_private(self.directory / "kek", secrets.token_bytes(32))
        return self

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

    # -- the key vault -------------------------------------------------------

    def _kek(self) -> bytes:
        if (self.directory / "kek.new").exists():
            raise ToolError(f"a key-encryption key rotation in {self.directory} was "
                            "interrupted: run `wearsafe kek-rotate` again to finish it")
        env = os.environ.get("WEARSAFE_KEK")
        if env:
            try:
                kek = bytes.fromhex(env)
            except ValueError:
                kek = b""
            if len(kek) != 32:
                raise ToolError("WEARSAFE_KEK must be 64 hex digits (a 256-bit key)")
            return kek
        path = self.directory / "kek"
        if not path.exists():
            raise ToolError(f"no key-encryption key: {path} is missing and WEARSAFE_KEK unset")
        if path.stat().st_mode & 0o077:
            raise ToolError(f"{path} is readable by others: chmod 600 it (and rotate it)")
        return path.read_bytes()

    def keys_db(self) -> sqlite3.Connection:
        db = _connect(self.directory / "keys.db")
        db.execute("CREATE TABLE IF NOT EXISTS device_keys (device_id TEXT PRIMARY KEY, "
                   "key_id BLOB UNIQUE NOT NULL, wrapped BLOB NOT NULL, base_iv BLOB NOT NULL)")
        return db

    def register(self, device_id: str, key: DeviceKey) -> None:
        with self.keys_db() as db:
            try:
                db.execute("INSERT INTO device_keys VALUES (?, ?, ?, ?)",
                           (device_id, key.key_id, aes_key_wrap(self._kek(), key.key),
                            key.base_iv))
            except sqlite3.IntegrityError:
                raise ToolError(f"device {device_id} or its key id is already "
                                "registered") from None

    def keys(self, only: str | None = None) -> dict[bytes, tuple[str, DeviceKey]]:
        """key id -> (device id, key), unwrapped: every device's, or `only` this one's."""
        kek = self._kek()
        out = {}
        where = (" WHERE device_id = ?", (only,)) if only else ("", ())
        with self.keys_db() as db:
            for device_id, kid, wrapped, base_iv in db.execute("SELECT * FROM device_keys"
                                                               + where[0], where[1]):
                try:
                    out[kid] = (device_id, DeviceKey(kid, aes_key_unwrap(kek, wrapped), base_iv))
                except InvalidUnwrap:
                    raise ToolError("a device key does not unwrap: wrong key-encryption "
                                    "key") from None
        return out

    def rotate_kek(self) -> int:
        """Rewrap every device key under a new KEK; return how many. Crash-safe: the new
        KEK is on disk (kek.new) before any key is rewrapped, the rewrap is one
        transaction, and kek.new replaces kek after it; run again after a crash and
        it finishes with whichever KEK the vault is under."""
        if os.environ.get("WEARSAFE_KEK"):
            raise ToolError("the KEK comes from $WEARSAFE_KEK: rotate it in your secret "
                            "store (unset it, rotate the file, store the new one)")
        old_path, new_path = self.directory / "kek", self.directory / "kek.new"
        if not new_path.exists():
            write_private(new_path, secrets.token_bytes(32))
        old, new = old_path.read_bytes(), new_path.read_bytes()
        with self.keys_db() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT key_id, wrapped FROM device_keys").fetchall()
            for kid, wrapped in rows:
                try:
                    key = aes_key_unwrap(old, wrapped)
                except InvalidUnwrap:
                    try:  # rewrapped already, by the run a crash interrupted
                        aes_key_unwrap(new, wrapped)
                        continue
                    except InvalidUnwrap:
                        db.execute("ROLLBACK")
                        raise ToolError("a device key unwraps under neither the old nor "
                                        "the new KEK: nothing was changed") from None
                db.execute("UPDATE device_keys SET wrapped = ? WHERE key_id = ?",
                           (aes_key_wrap(new, key), kid))
            db.execute("COMMIT")
            _compact(db)  # no copy of a key wrapped under the old KEK left behind
        os.replace(new_path, old_path)
        return len(rows)

    def key_by_id(self, kid: bytes, db: sqlite3.Connection) -> tuple[str, DeviceKey] | None:
        """(device id, key) registered under key id `kid` in the vault `db` (keys_db()),
        or None: one indexed lookup and one unwrap, whatever a message claims."""
        row = db.execute("SELECT device_id, wrapped, base_iv FROM device_keys "
                         "WHERE key_id = ?", (kid,)).fetchone()
        if row is None:
            return None
        try:
            return row[0], DeviceKey(kid, aes_key_unwrap(self._kek(), row[1]), row[2])
        except InvalidUnwrap:
            raise ToolError("a device key does not unwrap: wrong key-encryption key") from None

    def device_key(self, device_id: str) -> DeviceKey:
        for _, key in self.keys(only=device_id).values():
            return key
        raise ToolError(f"no key for device {device_id}: it was never provisioned here, or "
                        "it was forgotten (its stored messages can no longer be opened)")

    # -- the message store ---------------------------------------------------

    def messages_db(self) -> sqlite3.Connection:
        db = _connect(self.directory / "messages.db")
        db.execute("CREATE TABLE IF NOT EXISTS messages (key_id BLOB NOT NULL, "
                   "partial_iv INTEGER NOT NULL, device_id TEXT NOT NULL, "
                   "received_ms INTEGER NOT NULL, sealed BLOB NOT NULL, "
                   "PRIMARY KEY (key_id, partial_iv))")
        return db

    def stored(self, device_id: str) -> Iterator[tuple[int, bytes]]:
        """(partial IV, sealed message) of a device, in order."""
        with self.messages_db() as db:
            yield from db.execute("SELECT partial_iv, sealed FROM messages WHERE device_id = ? "
                                  "ORDER BY partial_iv", (device_id,))

    # -- forgetting and the audit log ----------------------------------------

    def forget(self, device_id: str) -> int:
        """Destroy the device's key, delete its messages; return how many went."""
        with self.keys_db() as db:
            gone = db.execute("DELETE FROM device_keys WHERE device_id = ?",
                              (device_id,)).rowcount
            _compact(db)
        with self.messages_db() as db:
            deleted = db.execute("DELETE FROM messages WHERE device_id = ?",
                                 (device_id,)).rowcount
            _compact(db)
        if not gone and not deleted:
            raise ToolError(f"no device {device_id} here: nothing to forget")
        return deleted

    def audit(self, action: str, device_id: str, **counts: int) -> None:
        entry: Mapping[str, object] = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "operator": getpass.getuser(), "action": action,
            "device_ref": device_ref(device_id), **counts}
        fd = os.open(self.directory / "audit.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(entry) + "\n")
