"""A throwaway PostgreSQL cluster for the tests (DESIGN principle 11: the real server on loopback, never a mock).

``initdb`` in a temporary folder, ``pg_ctl start`` on a free loopback port with its socket in that folder, one
database per test, everything removed at the end. As root the server runs as the ``postgres`` user (initdb refuses
root), so the folder is made theirs.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL

SUPERUSER = "postgres"
# Debian installs the server outside PATH, one folder per major version.
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's newest version; None if neither."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = [Path(p) for p in sorted(Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")), key=_major, reverse=True)]
    return next((p for p in candidates if (p / "initdb").is_file() and (p / "pg_ctl").is_file()), None)


def _major(path: Path) -> int:
    try:
        return int(path.parent.name.split(".")[0])
    except ValueError:
        return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server with trust authentication on 127.0.0.1, in a folder of its own."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._names = itertools.count(1)
        self._as_server_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user=SUPERUSER)
            self._as_server_user = ["runuser", "-u", SUPERUSER, "--"]
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-instructions")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_server_user, str(self.bin_dir / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{log[-2000:]}")

    def start(self) -> None:
        # fsync off: the tests restart the server cleanly, never the machine, and the CI box is busy.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def url(self, database: str = "postgres") -> URL:
        return URL.create("postgresql+psycopg", username=SUPERUSER, host="127.0.0.1", port=self.port,
                          database=database)

    def _admin(self, statement: str, database: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:  # CREATE/DROP DATABASE refuse to run in a transaction
            conn.execute(sql.SQL(statement).format(sql.Identifier(database)))

    def create_database(self) -> str:
        name = f"test_{next(self._names)}"
        self._admin("CREATE DATABASE {}", name)
        return name

    def drop_database(self, name: str) -> None:
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)  # FORCE: a connection a test leaked

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
