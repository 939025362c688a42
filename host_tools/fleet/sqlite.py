"""SQLite files of a server directory: created 0600, deletions overwritten on disk."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from host_tools.paths import ToolError

# INSERT ... RETURNING (the ingest's one statement per batch) came in SQLite 3.35.0
NEEDED = (3, 35, 0)


def connect(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < NEEDED:
        raise ToolError(f"this Python's SQLite is {sqlite3.sqlite_version}; the store needs "
                        f"{'.'.join(map(str, NEEDED))} or newer (INSERT ... RETURNING): "
                        "use a newer Python, or --db postgresql://...")
    try:  # 0600 from the start; ingest processes started together may race to create it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA secure_delete = ON")
    db.execute("PRAGMA journal_mode = WAL")
    return db


def compact(db: sqlite3.Connection) -> None:
    """Leave no copy of deleted rows in free pages or in the write-ahead log."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
