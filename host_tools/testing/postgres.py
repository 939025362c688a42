"""A real PostgreSQL for the tests and benchmarks: initdb and pg_ctl (Debian's
postgresql) in a directory of its own, on a free loopback port, stopped on exit.
The server refuses to run as root, so as root it runs as the postgres user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from host_tools.fleet.broker import free_port
from host_tools.fleet.postgres import server_binary
from host_tools.paths import ToolError

SUPERUSER = "wearsafe"


class PostgresServer:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="wearsafe-pg-"))
        self.data = self.directory / "data"
        self.port = 0
        self._databases = 0

    def _as_owner(self, *command: str) -> list[str]:
        if os.geteuid() != 0:
            return list(command)
        shutil.chown(self.directory, "postgres", "postgres")
        return ["runuser", "-u", "postgres", "--", *command]

    def _run(self, *command: str) -> None:
        done = subprocess.run(self._as_owner(*command), capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode:
            raise ToolError(f"{' '.join(command[:2])}: {done.stdout}{done.stderr}"[-2000:])

    def start(self) -> Self:
        self._run(server_binary("initdb"), "-D", str(self.data), "-U", SUPERUSER,
                  "-A", "trust", "-E", "UTF8", "--no-instructions")
        self.port = free_port()
        self.start_again()
        return self

    def start_again(self) -> None:
        """After stop(remove=False): the same data, the same port."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.directory}")
        self._run(server_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.directory / "postgres.log"), "-w", "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._databases += 1
        name = f"fleet{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self, remove: bool = True) -> None:
        if self.data.exists():
            self._run(server_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                      "stop")
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        self.stop(remove=False)
        self.start_again()
