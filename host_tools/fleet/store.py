"""The message store: sealed messages as they arrived (still encrypted at rest) in
messages.db (or the server's PostgreSQL database: database.py), keyed by (key id,
partial IV). A Server directory's part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host_tools.fleet import postgres
from host_tools.fleet.database import open_database

NEW_ONLY = " ON CONFLICT (key_id, partial_iv) DO NOTHING RETURNING key_id, partial_iv"


def insert_new(db: Any, rows: list[tuple[bytes, int, str, int, bytes]]) -> set[tuple[bytes, int]]:
    """Store, in one statement, the rows (key id, partial IV, device, received ms,
    sealed) whose key is not stored yet; the (key id, partial IV) of those stored."""
    if isinstance(db, postgres.Connection):
        # One text for any batch, so psycopg parses and prepares it once (a VALUES list
        # of 500 parameters is parsed every time), and five arrays sent in binary (%b).
        columns = tuple(map(list, zip(*rows, strict=True)))
        return set(db.execute("INSERT INTO messages SELECT * FROM unnest(%b::bytea[], "
                              "%b::bigint[], %b::text[], %b::bigint[], %b::bytea[])" + NEW_ONLY,
                              columns).fetchall())
    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
    return set(db.execute("INSERT INTO messages VALUES " + values + NEW_ONLY,
                          tuple(v for row in rows for v in row)).fetchall())


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
