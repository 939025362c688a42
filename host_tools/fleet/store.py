"""The message store: sealed messages as they arrived (still encrypted at rest) in
messages.db (or the server's PostgreSQL database: database.py), keyed by (key id,
partial IV). A Server directory's part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host_tools.fleet.database import open_database


class MessageStore:
    directory: Path

    def messages_db(self) -> Any:
        db = open_database(self.directory, "messages.db")
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
