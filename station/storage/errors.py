"""What can go wrong with a data folder, and how to tell a passing problem from a lasting one."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path


class StorageError(Exception):
    """A storage problem worth showing to the operator (the message says what and where)."""


class CorruptDatabaseError(StorageError):
    """The database file is damaged; it is left exactly as it is (restore it from a backup or move it aside)."""


def corrupt_message(db_path: Path, detail: str) -> str:
    return (f"database {db_path} is corrupt ({detail}). It was left untouched: restore it from a backup, "
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


def is_transient(exc: BaseException) -> bool:
    """True when retrying later may succeed: database locked/busy, disk or quota full, file briefly in use."""
    for e in _exception_chain(exc):
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
