"""Where a server directory keeps its message store and key vault: SQLite files in
the directory (the default), or the PostgreSQL database whose URL the file
`database` there records (`--db` once; every later command finds it, so no command
can act on the SQLite files while the fleet's data is in PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host_tools.fleet import postgres, sqlite
from host_tools.fleet.pki import write_private
from host_tools.paths import ToolError

RECORD = "database"


def recorded_url(directory: Path) -> str | None:
    path = directory / RECORD
    return path.read_text().strip() if path.exists() else None


def record_url(directory: Path, url: str) -> None:
    """Record the database `--db` gave; ToolError if the directory uses another store."""
    postgres.check_url(url)
    known = recorded_url(directory)
    if known == url:
        return
    if known is not None:
        raise ToolError(f"{directory} keeps its store in {postgres.redacted(known)}, not "
                        f"{postgres.redacted(url)}: give that --db, or none")
    if any((directory / name).exists() for name in ("messages.db", "keys.db")):
        raise ToolError(f"{directory} already keeps its store in SQLite files (messages.db, "
                        "keys.db): use a new server directory for PostgreSQL")
    write_private(directory / RECORD, (url + "\n").encode())


def open_database(directory: Path, name: str) -> Any:
    """A connection to the store: PostgreSQL when recorded, else SQLite file `name`."""
    url = recorded_url(directory)
    return postgres.Connection(url) if url else sqlite.connect(directory / name)


def compact(db: Any) -> None:
    """Leave no copy of deleted rows behind in the database's own files."""
    if isinstance(db, postgres.Connection):
        db.vacuum()
    else:
        sqlite.compact(db)
