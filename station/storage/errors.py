"""What can go wrong with a data folder, and how to tell a passing problem from a lasting one."""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.exc import DBAPIError


class StorageError(Exception):
    """A storage problem worth showing to the operator (the message says what and where)."""


class CorruptDatabaseError(StorageError):
    """The database file is damaged; it is left exactly as it is (restore it from a backup or move it aside)."""


def corrupt_message(database: Path | str, detail: str) -> str:
    return (f"database {database} is corrupt ({detail}). It was left untouched: restore it from a backup, "
            "or move it aside to start a new one")


def driver_message(exc: BaseException) -> str:
    """The driver's message ("database is locked") rather than SQLAlchemy's SQL dump."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """exc, its causes/contexts and SQLAlchemy's wrapped DBAPI error (``.orig``), each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)
        todo += [e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None]


_SQLITE_TRANSIENT_CODES = {5, 6, 13}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL (primary codes)
_TRANSIENT_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_TRANSIENT_WINERRORS = {32, 33}  # file in use (e.g. an antivirus scanning the fresh image)


# PostgreSQL SQLSTATEs (or their classes). The connection lost or refused (08), the server shutting down (57P01,
# 57P02): the outcome of a COMMIT on its way is unknown. Worth retrying besides: the server starting (57P03),
# serialization failure and deadlock (40001, 40P01), a lock wait that timed out (55P03: the write lock, see
# engine.open_server_engine), out of resources (53: disk full, too many connections).
_LOST_CONNECTION_SQLSTATES = ("08", "57P01", "57P02")
_SERVER_TRANSIENT_SQLSTATES = (*_LOST_CONNECTION_SQLSTATES, "57P03", "40001", "40P01", "55P03", "53")


def _server_error_matches(e: BaseException, sqlstates: tuple[str, ...]) -> bool:
    if isinstance(e, DBAPIError) and e.connection_invalidated:  # SQLAlchemy saw the connection die
        return True
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(sqlstates)
    # Without a SQLSTATE psycopg's OperationalError is a connection that could not be made or was lost. The module
    # is loaded whenever one of its errors exists: never imported here, so SQLite stations need no driver.
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(e, psycopg.OperationalError)


def outcome_unknown(exc: BaseException) -> bool:
    """True when the connection to a server was lost: a COMMIT on its way may or may not have happened, so what
    it wrote must be kept until someone knows (a retry finds the row, or the sweep removes an orphan file)."""
    return any(_server_error_matches(e, _LOST_CONNECTION_SQLSTATES) for e in _exception_chain(exc))


def is_transient(exc: BaseException) -> bool:
    """True when retrying later may succeed: database locked/busy, server unreachable or restarting, disk or quota
    full, file briefly in use."""
    for e in _exception_chain(exc):
        if _server_error_matches(e, _SERVER_TRANSIENT_SQLSTATES):
            return True
        if isinstance(e, sqlite3.OperationalError):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _SQLITE_TRANSIENT_CODES:
                return True
            msg = str(e).lower()
            if "locked" in msg or "busy" in msg or "disk is full" in msg:
                return True
        elif isinstance(e, OSError) and (
            e.errno in _TRANSIENT_ERRNOS or getattr(e, "winerror", None) in _TRANSIENT_WINERRORS
        ):
            return True
    return False


_SQLITE_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def is_corrupt(exc: BaseException) -> bool:
    """True when SQLite found the database file damaged (or not a database): never worth retrying or writing to."""
    for e in _exception_chain(exc):
        if isinstance(e, CorruptDatabaseError):
            return True
        if isinstance(e, sqlite3.DatabaseError):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _SQLITE_CORRUPT_CODES:
                return True
            msg = str(e).lower()
            if "malformed" in msg or "not a database" in msg:
                return True
    return False
