"""The SQLAlchemy engine of a station database, and how a write transaction takes the write lock.

Two backends serve the same models and schema: SQLite in the data folder (one station, the default) and a
PostgreSQL server named by ``database_url`` (several stations). Both keep the promise the storage is written
against: write transactions run one at a time (each sees everything committed before it), a read transaction
sees one snapshot.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from station.storage.errors import StorageError

DEFAULT_BUSY_TIMEOUT_MS = 5000
SERVER_DIALECTS = ("postgresql",)
# Execution option of the write engine: its transactions take the write lock at BEGIN.
_WRITE_LOCK = "station_write_lock"
# PostgreSQL: the key of the transaction-level advisory lock every write transaction takes (any fixed bigint).
_PG_WRITE_LOCK_KEY = 0x5357_4C4B  # "SWLK"


def parse_database_url(database_url: str) -> URL:
    """The URL of a server database; a ``StorageError`` (without the URL: it may hold a password) if unusable."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise StorageError(
            "database_url is not a database URL; expected e.g. postgresql+psycopg://user:password@host/sorting"
        ) from None
    if url.get_backend_name() not in SERVER_DIALECTS:
        raise StorageError(
            f"database_url {describe(url)}: only PostgreSQL is supported as a shared database "
            "(leave database_url empty for the data folder's SQLite file)"
        )
    return url


def describe(url: URL) -> str:
    """A URL as messages and logs may show it: the password masked."""
    return url.render_as_string(hide_password=True)


def masked(database_url: str) -> str:
    """``database_url`` as text that may be shown (help, logs, the window): its password masked."""
    try:
        return describe(make_url(database_url))
    except ArgumentError:
        return "(not a database URL)"


def open_engine(db_path: Path | str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """SQLite engine whose every connection uses WAL, waits ``busy_timeout_ms`` on locks and enforces foreign keys.

    We take over BEGIN from the sqlite3 driver (its legacy mode runs SELECTs outside the transaction). A write
    transaction (``for_writes``) is BEGIN IMMEDIATE: it takes the write lock at BEGIN, where busy_timeout applies;
    a deferred transaction that reads and then writes can fail with "locked" at once instead of waiting.
    """
    # Never format a path into a URL: "?" would start a query string and "%" an escape.
    engine = create_engine(URL.create("sqlite", database=str(Path(db_path))))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            # busy_timeout first, so switching to WAL waits for other connections instead of failing.
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_LOCK) else "BEGIN")

    return engine


def open_server_engine(url: URL, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """PostgreSQL engine: a write transaction waits up to ``busy_timeout_ms`` for the write lock (then fails as a
    passing error, like SQLite's "locked"), connections are tested before use (a restarted server leaves dead ones
    in the pool) and a server that does not answer fails after about the same time."""
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": max(2, math.ceil(busy_timeout_ms / 1000)),  # libpq's minimum is 2 s
            "options": f"-c lock_timeout={int(busy_timeout_ms)}",
        },
    )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # SQLite's BEGIN IMMEDIATE: writers queue on one lock, released at COMMIT/ROLLBACK. Read Committed then
        # gives each later statement everything the writers before committed, as the SQLite code expects.
        if conn.get_execution_options().get(_WRITE_LOCK):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK_KEY})")

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def for_writes(engine: Engine) -> Engine:
    """The same engine (same pool), whose transactions take the write lock at BEGIN."""
    return engine.execution_options(**{_WRITE_LOCK: True})


def for_reads(engine: Engine) -> Engine:
    """The same engine, whose transactions see one snapshot: SQLite's WAL gives that to every transaction;
    PostgreSQL's default (Read Committed) takes a new snapshot per statement, Repeatable Read one per transaction
    (and never fails a transaction that only reads)."""
    return engine if is_sqlite(engine) else engine.execution_options(isolation_level="REPEATABLE READ")
