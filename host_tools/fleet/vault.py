"""The device key vault: each device's payload key wrapped under the key-encryption
key (RFC 3394 AES key wrap) in keys.db; the KEK in `kek` (0600) or $WEARSAFE_KEK.
A Server directory's part (host_tools.fleet.server)."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from host_tools.fleet.database import compact, open_database
from host_tools.fleet.payloads import DeviceKey
from host_tools.fleet.pki import write_private
from host_tools.paths import ToolError


class KeyVault:
    directory: Path

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

    def keys_db(self) -> Any:
        db = open_database(self.directory, "keys.db")
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
                out[kid] = (device_id, _unwrapped(kek, kid, wrapped, base_iv))
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
            compact(db)  # no copy of a key wrapped under the old KEK left behind
        os.replace(new_path, old_path)
        return len(rows)

    def keys_by_id(self, kids: set[bytes], db: Any) -> dict[bytes, tuple[str, DeviceKey]]:
        """key id -> (device id, key) for those of `kids` registered in the vault `db`
        (keys_db()): one indexed lookup and one unwrap each, whatever messages claim."""
        out: dict[bytes, tuple[str, DeviceKey]] = {}
        kek = self._kek() if kids else b""
        for kid in kids:
            row = db.execute("SELECT device_id, wrapped, base_iv FROM device_keys "
                             "WHERE key_id = ?", (kid,)).fetchone()
            if row is not None:
                out[kid] = row[0], _unwrapped(kek, kid, row[1], row[2])
        return out

    def device_key(self, device_id: str) -> DeviceKey:
        for _, key in self.keys(only=device_id).values():
            return key
        raise ToolError(f"no key for device {device_id}: it was never provisioned here, or "
                        "it was forgotten (its stored messages can no longer be opened)")


def _unwrapped(kek: bytes, kid: bytes, wrapped: bytes, base_iv: bytes) -> DeviceKey:
    try:
        return DeviceKey(kid, aes_key_unwrap(kek, wrapped), base_iv)
    except InvalidUnwrap:
        raise ToolError("a device key does not unwrap: wrong key-encryption key") from None
