"""The SQLAlchemy engine of a station database: the pragmas every connection needs, and who takes the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

DEFAULT_BUSY_TIMEOUT_MS = 5000


def open_engine(db_path: Path | str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """Engine whose every connection uses WAL, waits ``busy_timeout_ms`` on locks and enforces foreign keys.

    We take over BEGIN from the sqlite3 driver (its legacy mode runs SELECTs outside the transaction). Connections
    carrying the execution option ``sqlite_begin="IMMEDIATE"`` take the write lock at BEGIN, where busy_timeout
    applies; a deferred transaction that reads and then writes can fail with "locked" at once instead of waiting.
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
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine



def for_writes(engine: Engine) -> Engine:
    """The same engine (same pool), whose transactions take the write lock at BEGIN."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")
