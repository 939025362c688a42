"""PostgreSQL behind a server directory's message store and key vault, for a fleet
that outgrows one machine: several ingest processes on several hosts, one database.

The store's SQL is written once, for SQLite; a Connection here takes the same
statements (`?` parameters, BLOB and INTEGER columns) and raises sqlite3's DB-API
exception classes, so the ingest, the vault and forget have one code path whatever
the engine. Connections autocommit, as the SQLite ones (isolation_level=None) do.
Passwords stay out of URLs: libpq reads them from ~/.pgpass or $PGPASSFILE.
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import sqlite3
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from host_tools.paths import ToolError

# SQLite's words that PostgreSQL spells otherwise; received_ms (ms since 1970) needs
# 64 bits. BEGIN IMMEDIATE (SQLite's write lock up front) is a serializable transaction.
_DIALECT = [(re.compile(r"\bBLOB\b"), "BYTEA"), (re.compile(r"\bINTEGER\b"), "BIGINT"),
            (re.compile(r"\bBEGIN IMMEDIATE\b"), "BEGIN ISOLATION LEVEL SERIALIZABLE"),
            # PostgreSQL has no rowid: the quarantine's is a column of its own
            (re.compile(r"^CREATE TABLE IF NOT EXISTS quarantine \("),
             "CREATE TABLE IF NOT EXISTS quarantine (rowid BIGSERIAL, "),
            (re.compile(r"\?"), "%s")]


SCHEMA_LOCK = 0x77656172  # the advisory lock CREATE statements take ("wear")


def redacted(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ToolError(f"--db {redacted(url)!r}: give postgresql://USER@HOST:PORT/DATABASE")
    if parts.password is not None:
        raise ToolError("--db: keep the password out of the URL (it would be recorded in "
                        "the server directory and shown in process lists): put it in "
                        "~/.pgpass or $PGPASSFILE, which libpq reads")
    return url


class Connection:
    """One autocommitting PostgreSQL session that speaks the store's SQLite SQL."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._in_transaction = False  # a statement of one is never retried alone
        try:
            self._conn = self._connect()
        except psycopg.OperationalError as e:
            raise ToolError(f"the store's database {redacted(url)}: {_first_line(e)}") from None

    def _connect(self) -> Any:
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        sql = _translated(sql)
        errors = self._psycopg.errors
        word = sql.split(None, 1)[0].upper()
        retry = not self._in_transaction and word != "COMMIT"
        self._in_transaction = word == "BEGIN" or (self._in_transaction
                                                   and word not in ("COMMIT", "ROLLBACK"))
        try:
            try:
                return self._send(sql, params, word)
            except self._psycopg.OperationalError:
                if not (retry and self._conn.broken):
                    self._in_transaction = False  # the server ended it
                    raise
                # The server restarted (or a proxy cut the session): once more on a new
                # one. Autocommitted, so a statement is in whole or not; an INSERT that
                # did land comes back as the duplicate it is.
                self._conn = self._connect()
                return self._send(sql, params, word)
        except errors.UniqueViolation as e:
            raise sqlite3.IntegrityError(_first_line(e)) from None
        except (self._psycopg.OperationalError, errors.SerializationFailure,
                errors.InFailedSqlTransaction) as e:
            raise sqlite3.OperationalError(_first_line(e)) from None
        except self._psycopg.Error as e:  # any other: still the store's, never the caller's
            raise sqlite3.DatabaseError(_first_line(e)) from None

    def _send(self, sql: str, params: tuple[Any, ...], word: str) -> Any:
        if word != "CREATE":
            return self._conn.execute(sql, params)
        # CREATE ... IF NOT EXISTS, one session at a time: PostgreSQL checks existence
        # without a lock, so ingest processes started together would fail on the
        # catalog's unique indexes (DuplicateTable, UniqueViolation) without it.
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            return self._conn.execute(sql)

    def vacuum(self) -> None:
        """Rewrite the tables without their dead rows (VACUUM FULL). What the WAL and
        backups still hold is why forget also rotates the KEK (docs/SECURITY.md)."""
        self.execute("VACUUM FULL")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _translated(sql: str) -> str:
    """The statement in PostgreSQL's words (a few constant statements, each once)."""
    for pattern, replacement in _DIALECT:
        sql = pattern.sub(replacement, sql)
    return sql


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def server_binary(name: str) -> str:
    """initdb, pg_ctl or postgres: on PATH, or Debian's newest under /usr/lib/postgresql."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ToolError(f"{name} not found: run `make deps` (Debian package postgresql)")
    return found
