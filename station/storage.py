"""Operator decisions in SQLite, image files next to it. No Qt.

A data folder holds ``station.db`` and ``images/``. Each decision is one row plus one PNG of the exact frame the
operator saw. The file is written first (atomically) and the row committed second, so a crash in between leaves at
most an orphan file, never a row pointing at a missing image.

Hands-free sorting (schema 3): kind "auto" for decisions the station confirmed by itself, and per decision the
item it was made for, the milliseconds from the item settling to the decision, and the operator's key presses.

Model versions (schema 2): every model bundle the station has run or could run is a row in ``model_versions``
(bundled default, fast/full retrained candidates); exactly one is "active" once the station has started.

Threading: the caller owns the sessions. A ``Storage`` opens short transactions per call and returns plain frozen
dataclasses, never ORM objects, so records can be sent across threads. One ``Storage`` per thread is fine; several
processes may share a data folder (WAL + busy_timeout).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from hashlib import sha256 as _sha256
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, defer, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
DB_NAME = "station.db"
IMAGES_DIR = "images"
MODELS_DIR = "models"  # retrained bundles, one folder per version
DEFAULT_BUSY_TIMEOUT_MS = 5000

CONFIRMED = "confirmed"
CORRECTED = "corrected"
IMPORTED = "imported"
AUTO = "auto"  # confirmed by the station itself (hands-free auto mode): no operator looked at it
KINDS = (CONFIRMED, CORRECTED, IMPORTED, AUTO)

VERSION_MODES = ("bundled", "fast", "full")
CANDIDATE, ACTIVE, RETIRED, DISCARDED = "candidate", "active", "retired", "discarded"
VERSION_STATUSES = (CANDIDATE, ACTIVE, RETIRED, DISCARDED)
_RETRAINED_NAME = re.compile(r"r(\d+)")  # names given by next_version_name

# Embeddings are stored as raw little-endian float32 so the bytes mean the same thing on every machine.
_EMBEDDING_DTYPE = np.dtype("<f4")


class StorageError(Exception):
    """A storage problem worth showing to the operator (the message says what and where)."""


class CorruptDatabaseError(StorageError):
    """The database file is damaged; it is left exactly as it is (restore it from a backup or move it aside)."""


# --------------------------------------------------------------------------------------------------- ORM models


class _UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no time zones), hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


class Decision(Base):
    __tablename__ = "decisions"
    # AUTOINCREMENT: ids are never reused after undo/delete, so a stale id held by the UI can't hit a newer row.
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS!r}", name="ck_decisions_kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_path: Mapped[str] = mapped_column(String)  # relative to the data folder, posix separators
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    predicted_label: Mapped[str | None] = mapped_column(String)
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    operator_label: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime, index=True)
    station: Mapped[str] = mapped_column(String)
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    item_id: Mapped[str | None] = mapped_column(String)  # hands-free: the item this decision was made for
    settle_ms: Mapped[float | None] = mapped_column(Float)  # hands-free: from the item settling to this decision
    touches: Mapped[int | None] = mapped_column(Integer)  # the operator's key presses for this item


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(f"mode IN {VERSION_MODES!r}", name="ck_model_versions_mode"),
        CheckConstraint(f"status IN {VERSION_STATUSES!r}", name="ck_model_versions_status"),
        # At most one active version, enforced by the database itself (a partial unique index).
        Index("uq_model_versions_one_active", "status", unique=True, sqlite_where=text(f"status = '{ACTIVE}'")),
    )

    version: Mapped[str] = mapped_column(String, primary_key=True)  # "r1", or the bundled folder's name
    parent: Mapped[str | None] = mapped_column(String)
    path: Mapped[str] = mapped_column(String)  # relative to the data folder (posix) when inside it, else absolute
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)
    mode: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))


# --------------------------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays don't compare to a single bool
class NewDecision:
    """What the UI hands to ``Storage.save``; ``kind`` is derived when None, ``station`` defaults to the Storage's."""

    image: NDArray[np.uint8]  # RGB, HxWx3: the exact frame the operator judged
    predicted_label: str | None
    confidence: float | None
    probabilities: dict[str, float]
    operator_label: str
    model_version: str | None = None
    embedding: NDArray[np.float32] | None = None
    station: str | None = None
    kind: str | None = None
    created_at: datetime | None = None  # None = now; naive = station local time (imports keep their own time)
    item_id: str | None = None  # hands-free modes: the item's id (also in its published event)
    settle_ms: float | None = None
    touches: int | None = None


@dataclass(frozen=True, eq=False)
class DecisionRecord:
    """A stored decision as plain values, safe to pass between threads."""

    id: int
    image_path: str  # relative to the data folder (see Storage.image_file)
    sha256: str
    predicted_label: str | None
    confidence: float | None
    probabilities: dict[str, float]
    operator_label: str
    kind: str
    model_version: str | None
    embedding: NDArray[np.float32] | None
    created_at: datetime  # aware, UTC
    station: str
    holdout: bool
    item_id: str | None = None
    settle_ms: float | None = None
    touches: int | None = None

    def absolute_path(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.image_path


def _record(row: Decision) -> DecisionRecord:
    # A query may leave the embedding unloaded (``defer``): it then reads as None instead of loading lazily.
    raw = None if "embedding" in inspect(row).unloaded else row.embedding
    emb = None if raw is None else np.frombuffer(raw, dtype=_EMBEDDING_DTYPE).astype(np.float32)
    return DecisionRecord(
        id=row.id,
        image_path=row.image_path,
        sha256=row.sha256,
        predicted_label=row.predicted_label,
        confidence=row.confidence,
        probabilities=dict(row.probabilities or {}),
        operator_label=row.operator_label,
        kind=row.kind,
        model_version=row.model_version,
        embedding=emb,
        created_at=row.created_at,
        station=row.station,
        holdout=bool(row.holdout),
        item_id=row.item_id,
        settle_ms=row.settle_ms,
        touches=row.touches,
    )


@dataclass(frozen=True)
class VersionRecord:
    """A model version as plain values, safe to pass between threads (``Storage.version_path`` gives the folder)."""

    version: str
    parent: str | None
    path: str  # as stored: relative to the data folder when inside it, else absolute
    created_at: datetime  # aware, UTC
    mode: str  # "bundled" | "fast" | "full"
    counts: dict[str, Any]
    metrics: dict[str, Any]
    status: str  # "candidate" | "active" | "retired" | "discarded"


def _version_record(row: ModelVersion) -> VersionRecord:
    return VersionRecord(
        version=row.version,
        parent=row.parent,
        path=row.path,
        created_at=row.created_at,
        mode=row.mode,
        counts=dict(row.counts or {}),
        metrics=dict(row.metrics or {}),
        status=row.status,
    )


# --------------------------------------------------------------------------------------------------- helpers


def is_holdout(sha256: str) -> bool:
    """A fixed ~20% of images are kept out of retraining to evaluate candidates; derived from content, never changed."""
    return int(sha256[:8], 16) % 5 == 0


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """Local midnight of ``day`` and of the next day, as aware datetimes (each asks the system zone: DST-safe)."""
    start = datetime.combine(day, time.min).astimezone()
    end = datetime.combine(day + timedelta(days=1), time.min).astimezone()
    return start, end


def version_folder(data_dir: Path, record: VersionRecord) -> Path:
    """A version's bundle folder: stored relative to the data folder when inside it, else absolute."""
    path = Path(record.path)
    return path if path.is_absolute() else Path(data_dir) / path


def derive_kind(predicted_label: str | None, operator_label: str) -> str:
    return CONFIRMED if operator_label == predicted_label else CORRECTED


def _check_label(operator_label: str) -> str:
    if not isinstance(operator_label, str) or not operator_label.strip():
        raise ValueError("operator_label must be a non-empty string")
    return operator_label


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


def _reason(exc: BaseException) -> str:
    """The driver's message ("database is locked") rather than SQLAlchemy's SQL dump."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc)


def encode_png(image: NDArray[np.uint8]) -> bytes:
    """Lossless PNG of an RGB uint8 HxWx3 frame (no BGR swap here: frames are RGB since capture)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be an RGB uint8 array of shape HxWx3, got {dtype} {shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def _fsync_dir(folder: Path) -> None:
    """Make a rename/creation inside ``folder`` durable before the row that points at it is committed (POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same folder, fsync, rename: readers see the whole file or nothing.

    ``mode``: mkstemp makes the file private (0600); images get the database's own mode instead.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------------- engine


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


# --------------------------------------------------------------------------------------------------- schema


def _read_version(conn: Connection) -> int | None:
    """None for an empty database; 0 for a pre-versioning layout (decisions without a usable meta row)."""
    tables = set(inspect(conn).get_table_names())
    if "meta" in tables:
        value = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar_one_or_none()
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise StorageError(f"unreadable schema_version {value!r}") from None
    return 0 if tables & {"meta", "decisions"} else None


def _set_version(conn: Connection, version: int) -> None:
    conn.execute(text("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', :v)"), {"v": str(version)})


def _upgrade_0_to_1(conn: Connection) -> None:
    """Bootstrap from the unversioned prototype: no meta table, decisions without embedding/holdout."""
    insp = inspect(conn)
    if insp.has_table("decisions"):
        cols = {c["name"] for c in insp.get_columns("decisions")}
        if "embedding" not in cols:
            conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN embedding BLOB")
        if "holdout" not in cols:
            conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN holdout BOOLEAN NOT NULL DEFAULT 0")
            rows = conn.execute(text("SELECT id, sha256 FROM decisions")).all()
            held = [{"id": i} for i, sha in rows if sha and is_holdout(sha)]
            if held:
                conn.execute(text("UPDATE decisions SET holdout = 1 WHERE id = :id"), held)
    Base.metadata.create_all(conn)  # missing tables (meta, or decisions itself)
    for index in Decision.__table__.indexes:  # create_all only adds indexes along with a new table
        index.create(conn, checkfirst=True)


def _upgrade_1_to_2(conn: Connection) -> None:
    """Model versions: the registry of bundles behind retraining and rollback."""
    ModelVersion.__table__.create(conn, checkfirst=True)  # with its indexes


def _upgrade_2_to_3(conn: Connection) -> None:
    """Hands-free: kind "auto" and the item columns. The kind CHECK is part of the table's SQL, so the table is
    rebuilt (SQLite's documented way): rename, create anew, copy, drop. Ids stay, and so does the AUTOINCREMENT
    counter, so an id undone before the upgrade is still never given again."""
    has_counters = inspect(conn).has_table("sqlite_sequence")  # only once an AUTOINCREMENT table has had a row
    counter = None
    if has_counters:
        counter = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'decisions'").scalar()
    columns = ", ".join(f'"{c["name"]}"' for c in inspect(conn).get_columns("decisions"))
    conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_v2")
    for index in inspect(conn).get_indexes("decisions_v2"):  # their names are needed for the new table's
        conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
    Decision.__table__.create(conn)  # with its indexes
    conn.exec_driver_sql(f"INSERT INTO decisions ({columns}) SELECT {columns} FROM decisions_v2")
    conn.exec_driver_sql("DROP TABLE decisions_v2")
    if counter is not None:
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'decisions'")
        conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES ('decisions', :seq)"), {"seq": counter})


# Key = the version a step upgrades FROM. Each step runs inside the same transaction as the version bump.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {0: _upgrade_0_to_1, 1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


def _prepare_schema(conn: Connection, db_path: Path) -> None:
    version = _read_version(conn)
    if version is None:
        Base.metadata.create_all(conn)
        _set_version(conn, SCHEMA_VERSION)
        return
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database {db_path} has schema version {version}, this station knows up to {SCHEMA_VERSION}; "
            "update the station"
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StorageError(f"database {db_path} has schema version {version}, which this station cannot upgrade")
        log.info("upgrading %s from schema version %d to %d", db_path, version, version + 1)
        step(conn)
        version += 1
        _set_version(conn, version)


# --------------------------------------------------------------------------------------------------- sweeping

LOCK_NAME = ".station.lock"
_TEMP_GLOBS = (".*.tmp", ".write-test-*")  # _write_atomically's and _open_folder's temporaries
_MODEL_LEFTOVER_GLOBS = (".*.partial-*", ".*.old-*")  # training.files.make_work_folder / replace_folder


@dataclass(frozen=True)
class SweepReport:
    """What opening a data folder removed: crash leftovers no row refers to."""

    removed: list[Path]
    bytes: int = 0  # their total size
    skipped: str | None = None  # why nothing was swept (the folder is in use by another process)


def _remove(path: Path) -> tuple[Path, int]:
    """Remove a leftover file or folder; (path, bytes freed)."""
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path, ignore_errors=True)
    else:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
    return path, size


class _FolderLock:
    """A shared lock on ``data_dir/.station.lock`` held by every open Storage (every process, every thread).

    Only a Storage that can briefly take it exclusively knows that nothing else writes to the folder, so only
    then are leftovers swept: a file being saved or a model being trained by another process is never touched.
    """

    def __init__(self, data_dir: Path) -> None:
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks, so never sweep
            self._fcntl = None
            return
        self._fcntl = fcntl
        self._fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def try_exclusive(self) -> bool:
        if self._fd is None or self._fcntl is None:
            return False
        try:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except OSError:
            # A failed conversion has already dropped the shared lock (flock(2): not atomic): take it back,
            # or a later Storage would sweep the temporary files this one is writing.
            self.share()
            return False
        return True

    def share(self) -> None:
        if self._fd is not None and self._fcntl is not None:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------------------------------- Storage


class Storage:
    """Decisions of one data folder. Every method is one short transaction; results are plain ``DecisionRecord``s."""

    def __init__(
        self,
        data_dir: Path | str,
        station: str = "station",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        sweep: bool = True,
    ) -> None:
        """Open (or create) a data folder; ``sweep=False`` for readers that must leave it exactly as it is."""
        self.data_dir = Path(data_dir).expanduser()
        self.images_dir = self.data_dir / IMAGES_DIR
        self.models_dir = self.data_dir / MODELS_DIR
        self.db_path = self.data_dir / DB_NAME
        self.station = station
        # The shared lock comes before the write test: another Storage sweeping now must not take our test file.
        self._lock = self._open_folder()
        try:
            self._open_database(busy_timeout_ms)
        except BaseException:
            self._lock.release()
            raise
        try:
            self.swept = self.sweep() if sweep else SweepReport([], skipped="not asked to")
        except BaseException:
            self.close()
            raise

    def _open_database(self, busy_timeout_ms: int) -> None:
        self._engine = open_engine(self.db_path, busy_timeout_ms)
        write_engine = self._engine.execution_options(sqlite_begin="IMMEDIATE")
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._sessions = sessionmaker(write_engine, expire_on_commit=False)
        try:
            self._check_integrity()  # before anything is written to it
            with write_engine.begin() as conn:  # IMMEDIATE: two stations opening a new folder don't both create it
                _prepare_schema(conn, self.db_path)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            if is_corrupt(exc):
                raise CorruptDatabaseError(_corrupt_message(self.db_path, _reason(exc))) from exc
            raise StorageError(f"cannot open database {self.db_path}: {_reason(exc)}") from exc
        except BaseException:
            self._engine.dispose()
            raise
        try:
            self._file_mode = stat.S_IMODE(self.db_path.stat().st_mode)  # images are as readable as the database
        except OSError as exc:
            self._engine.dispose()
            raise StorageError(f"data folder {self.data_dir} is not usable: {exc.strerror or exc}") from exc

    def sweep(self) -> SweepReport:
        """Remove what crashes leave behind and no row refers to; only when no other Storage has the folder open.

        - temporary files of interrupted image writes (``images/**/.*.tmp``);
        - image files without a row, written after the first stored decision (a save killed between its file
          and its row). Older ones are kept: they may belong to a database that was moved aside;
        - ``models/.*.partial-*`` / ``.*.old-*`` folders and ``models/rN`` folders no model version names
          (a retraining killed before it registered its candidate).

        A file a row points to is never removed.
        """
        if not self._lock.try_exclusive():
            return SweepReport([], skipped="the data folder is in use by another process")
        try:
            removed = self._sweep_images() + self.remove_model_leftovers()
        except OSError as exc:  # e.g. a leftover we may not remove: report, the folder still opens
            log.warning("could not sweep %s: %s", self.data_dir, exc)
            return SweepReport([], skipped=f"sweeping failed: {exc}")
        finally:
            self._lock.share()
        for path, size in removed:
            log.warning("removed crash leftover %s (%d bytes)", path, size)
        return SweepReport([p for p, _ in removed], sum(size for _, size in removed))

    def _sweep_images(self) -> list[Path]:
        def read(s: Session) -> tuple[set[str], datetime | None]:
            return set(s.scalars(select(Decision.image_path))), s.scalar(select(func.min(Decision.created_at)))

        referenced, first = self._read(read)
        leftovers = [p for pattern in _TEMP_GLOBS for p in self.images_dir.rglob(pattern) if p.is_file()]
        leftovers += [p for p in self.data_dir.glob(".write-test-*") if p.is_file()]
        if first is not None:
            oldest = first.timestamp() - 1.0  # mtime resolution
            for path in self.images_dir.rglob("*.png"):
                relative = path.relative_to(self.data_dir).as_posix()
                if relative not in referenced and path.is_file() and path.stat().st_mtime >= oldest:
                    leftovers.append(path)
        return [_remove(path) for path in leftovers]

    def remove_model_leftovers(self) -> list[tuple[Path, int]]:
        """Work folders and unregistered ``rN`` folders under ``models/``. Only while no retraining runs here."""
        if not self.models_dir.is_dir():
            return []
        registered = {self.version_path(v).resolve() for v in self.versions()}
        leftovers = [p for pattern in _MODEL_LEFTOVER_GLOBS for p in self.models_dir.glob(pattern) if p.is_dir()]
        leftovers += [
            p for p in self.models_dir.iterdir()
            if p.is_dir() and _RETRAINED_NAME.fullmatch(p.name) and p.resolve() not in registered
        ]
        return [_remove(folder) for folder in leftovers]

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` (reads every page, writes nothing): a damaged database is refused up front."""
        with self._engine.connect() as conn:
            problems = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptDatabaseError(_corrupt_message(self.db_path, "; ".join(problems[:3])))

    def _open_folder(self) -> _FolderLock:
        """Create the folder, take its shared lock and prove it writable.

        Fails at startup with the path in the message, not at the first decision with a bare errno.
        """
        lock: _FolderLock | None = None
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            lock = _FolderLock(self.data_dir)
            for folder in (self.data_dir, self.images_dir):
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                    pass
        except OSError as exc:
            if lock is not None:
                lock.release()
            raise StorageError(f"data folder {self.data_dir} is not usable: {exc.strerror or exc}") from exc
        return lock

    @property
    def engine(self) -> Engine:
        return self._engine

    def image_file(self, record: DecisionRecord) -> Path:
        return record.absolute_path(self.data_dir)

    def close(self) -> None:
        self._engine.dispose()
        self._lock.release()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes

    def save(self, decision: NewDecision) -> DecisionRecord:
        """Write the frame as PNG (atomically), then commit its row; on a failed commit the file is removed."""
        operator_label = _check_label(decision.operator_label)
        kind = decision.kind or derive_kind(decision.predicted_label, operator_label)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        png = encode_png(decision.image)
        digest = _sha256(png).hexdigest()
        created = (decision.created_at or datetime.now(timezone.utc)).astimezone()  # naive = local
        embedding = None
        if decision.embedding is not None:
            embedding = np.asarray(decision.embedding, dtype=_EMBEDDING_DTYPE).ravel().tobytes()

        day = self.images_dir / f"{created:%Y-%m-%d}"
        file = day / f"{created:%H%M%S}-{uuid.uuid4().hex}.png"
        try:
            new_day = not day.exists()
            day.mkdir(parents=True, exist_ok=True)
            if new_day:
                _fsync_dir(self.images_dir)
            _write_atomically(file, png, self._file_mode)
        except OSError as exc:
            raise StorageError(f"cannot write image {file}: {exc.strerror or exc}") from exc

        row = Decision(
            image_path=file.relative_to(self.data_dir).as_posix(),
            sha256=digest,
            predicted_label=decision.predicted_label,
            confidence=None if decision.confidence is None else float(decision.confidence),  # np.float32 won't bind
            probabilities={str(k): float(v) for k, v in decision.probabilities.items()},
            operator_label=operator_label,
            kind=kind,
            model_version=decision.model_version,
            embedding=embedding,
            created_at=created.astimezone(timezone.utc),
            station=decision.station or self.station,
            holdout=is_holdout(digest),
            item_id=decision.item_id,
            settle_ms=decision.settle_ms,
            touches=decision.touches,
        )
        try:
            with self._sessions.begin() as s:
                s.add(row)
                s.flush()
                record = _record(row)
        except BaseException as exc:
            _remove_file(file)
            if isinstance(exc, SQLAlchemyError):
                raise StorageError(f"cannot record the decision in {self.db_path}: {_reason(exc)}") from exc
            raise
        return record

    def delete(self, decision_id: int) -> DecisionRecord | None:
        """Delete the row (committed), then its image. None when there was no such decision."""
        return self._delete(select(Decision).where(Decision.id == decision_id))

    def undo_last(self, station: str | None = None) -> DecisionRecord | None:
        """Delete the most recently saved decision (of ``station`` if given). "Last" is insertion order."""
        query = select(Decision).order_by(Decision.id.desc()).limit(1)
        if station is not None:
            query = query.where(Decision.station == station)
        return self._delete(query)

    def _delete(self, query: Any) -> DecisionRecord | None:
        try:
            with self._sessions.begin() as s:  # find + delete in one write transaction: no race with another undo
                row = s.scalars(query).first()
                if row is None:
                    return None
                record = _record(row)
                s.delete(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot delete the decision in {self.db_path}: {_reason(exc)}") from exc
        _remove_file(self.image_file(record))
        return record

    def relabel(self, decision_id: int, operator_label: str) -> DecisionRecord:
        """Change the operator's label; ``kind`` follows (imports stay ``imported``: they had no prediction)."""
        _check_label(operator_label)
        try:
            with self._sessions.begin() as s:
                row = s.get(Decision, decision_id)
                if row is None:
                    raise StorageError(f"decision {decision_id} no longer exists")
                row.operator_label = operator_label
                if row.kind != IMPORTED:
                    row.kind = derive_kind(row.predicted_label, operator_label)
                s.flush()
                record = _record(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot relabel decision {decision_id} in {self.db_path}: {_reason(exc)}") from exc
        return record

    # ---- reads

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        try:
            with self._reads() as s:
                return fn(s)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read {self.db_path}: {_reason(exc)}") from exc

    def _records(self, query: Any) -> list[DecisionRecord]:
        return self._read(lambda s: [_record(r) for r in s.scalars(query)])

    def get(self, decision_id: int) -> DecisionRecord | None:
        found = self._records(select(Decision).where(Decision.id == decision_id))
        return found[0] if found else None

    def recent(self, limit: int = 20) -> list[DecisionRecord]:
        """Newest first (insertion order)."""
        return self._records(select(Decision).order_by(Decision.id.desc()).limit(max(0, limit)))

    def all_decisions(self, holdout: bool | None = None) -> list[DecisionRecord]:
        """Oldest first, with embeddings; ``holdout=False`` gives the retraining pool, ``True`` the evaluation set."""
        return self.decisions(with_embeddings=True, holdout=holdout)

    def decisions(
        self,
        since: date | None = None,
        until: date | None = None,
        model_version: str | None = None,
        with_embeddings: bool = False,
        holdout: bool | None = None,
    ) -> list[DecisionRecord]:
        """Oldest first, made on local days ``since``..``until`` (both included), optionally by one model version.

        Embeddings are left out unless asked for (statistics and export do not need ~5 KB per row).
        """
        query = select(Decision).order_by(Decision.id)
        if not with_embeddings:
            query = query.options(defer(Decision.embedding))
        if since is not None:
            query = query.where(Decision.created_at >= local_day_bounds(since)[0])
        if until is not None:
            query = query.where(Decision.created_at < local_day_bounds(until)[1])
        if model_version is not None:
            query = query.where(Decision.model_version == model_version)
        if holdout is not None:
            query = query.where(Decision.holdout == holdout)
        return self._records(query)

    def review_queue(self, limit: int = 200) -> list[DecisionRecord]:
        """Decisions with a prediction, least confident first (ties: oldest first); imports have none."""
        query = (
            select(Decision)
            .options(defer(Decision.embedding))
            .where(Decision.confidence.is_not(None))
            .order_by(Decision.confidence, Decision.id)
            .limit(max(0, limit))
        )
        return self._records(query)

    def decision_versions(self) -> list[str]:
        """Every model version that made a stored decision (some may predate the version registry)."""
        query = select(Decision.model_version).where(Decision.model_version.is_not(None)).distinct()
        return self._read(lambda s: list(s.scalars(query)))

    def find_sha256(self, sha256: str) -> DecisionRecord | None:
        found = self._records(select(Decision).where(Decision.sha256 == sha256).order_by(Decision.id).limit(1))
        return found[0] if found else None

    def count(self, kind: str | None = None) -> int:
        query = select(func.count()).select_from(Decision)
        if kind is not None:
            query = query.where(Decision.kind == kind)
        return self._read(lambda s: s.scalar(query))

    def count_today(self, now: datetime | None = None) -> int:
        """Decisions made since local midnight (``now`` naive = local time; default: the clock).

        Imported photos are not decisions of the day (dated by their files): the statistics leave them out too.
        """
        local = (now or datetime.now()).astimezone()
        start, end = local_day_bounds(local.date())
        in_day = (Decision.created_at >= start) & (Decision.created_at < end) & (Decision.kind != IMPORTED)
        query = select(func.count()).select_from(Decision).where(in_day)
        return self._read(lambda s: s.scalar(query))

    # ---- model versions

    def _stored_path(self, path: Path | str) -> str:
        """Relative (posix) when inside the data folder, so the folder can move; absolute otherwise."""
        absolute = Path(path).expanduser().resolve()
        try:
            return absolute.relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(absolute)

    def version_path(self, record: VersionRecord) -> Path:
        """The bundle folder of ``record`` as an absolute path."""
        return version_folder(self.data_dir, record)

    def add_version(
        self,
        version: str,
        path: Path | str,
        mode: str,
        *,
        parent: str | None = None,
        counts: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        status: str = CANDIDATE,
        created_at: datetime | None = None,
    ) -> VersionRecord:
        """Register a bundle. ``status="active"`` retires the running version in the same transaction."""
        if not isinstance(version, str) or not version.strip():
            raise ValueError("version must be a non-empty string")
        if mode not in VERSION_MODES:
            raise ValueError(f"mode must be one of {VERSION_MODES}, got {mode!r}")
        if status not in VERSION_STATUSES:
            raise ValueError(f"status must be one of {VERSION_STATUSES}, got {status!r}")
        row = ModelVersion(
            version=version,
            parent=parent,
            path=self._stored_path(path),
            created_at=(created_at or datetime.now(timezone.utc)).astimezone(timezone.utc),
            mode=mode,
            counts=dict(counts or {}),
            metrics=dict(metrics or {}),
            status=status,
        )
        try:
            with self._sessions.begin() as s:
                if s.get(ModelVersion, version) is not None:
                    raise StorageError(f"model version {version!r} already exists in {self.db_path}")
                if status == ACTIVE:
                    s.execute(update(ModelVersion).where(ModelVersion.status == ACTIVE).values(status=RETIRED))
                s.add(row)
                s.flush()
                record = _version_record(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot register model version {version!r} in {self.db_path}: {_reason(exc)}") from exc
        return record

    def _versions(self, query: Any) -> list[VersionRecord]:
        return self._read(lambda s: [_version_record(r) for r in s.scalars(query)])

    def versions(self) -> list[VersionRecord]:
        """Newest first (creation time, then insertion order)."""
        return self._versions(
            select(ModelVersion).order_by(ModelVersion.created_at.desc(), literal_column("model_versions.rowid").desc())
        )

    def get_version(self, version: str) -> VersionRecord | None:
        found = self._versions(select(ModelVersion).where(ModelVersion.version == version))
        return found[0] if found else None

    def active_version(self) -> VersionRecord | None:
        found = self._versions(select(ModelVersion).where(ModelVersion.status == ACTIVE))
        return found[0] if found else None

    def activate(self, version: str) -> VersionRecord:
        """Make ``version`` the active one and retire the previous (one transaction); also rolls back to old ones."""
        return self._change_status(version, ACTIVE)

    def set_version_status(self, version: str, status: str) -> VersionRecord:
        """Set a status ("active" goes through ``activate``, so there is never more than one active version)."""
        if status not in VERSION_STATUSES:
            raise ValueError(f"status must be one of {VERSION_STATUSES}, got {status!r}")
        return self._change_status(version, status)

    def _change_status(self, version: str, status: str) -> VersionRecord:
        try:
            with self._sessions.begin() as s:
                row = s.get(ModelVersion, version)
                if row is None:
                    raise StorageError(f"no model version named {version!r} in {self.db_path}")
                if status == ACTIVE:
                    # Core UPDATEs in this order: the old active is retired before the unique index sees a second one.
                    s.execute(
                        update(ModelVersion)
                        .where(ModelVersion.status == ACTIVE, ModelVersion.version != version)
                        .values(status=RETIRED)
                    )
                s.execute(update(ModelVersion).where(ModelVersion.version == version).values(status=status))
                s.refresh(row)
                record = _version_record(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot change model version {version!r} in {self.db_path}: {_reason(exc)}") from exc
        return record

    def next_version_name(self) -> str:
        """"r<N>" one past every "r<N>" registered or present as a folder under ``models/``: never reused."""
        names = set(self._read(lambda s: list(s.scalars(select(ModelVersion.version)))))
        if self.models_dir.is_dir():
            names.update(p.name for p in self.models_dir.iterdir())
        numbers = [int(m.group(1)) for m in map(_RETRAINED_NAME.fullmatch, names) if m]
        return f"r{max(numbers, default=0) + 1}"


def _corrupt_message(db_path: Path, detail: str) -> str:
    return (f"database {db_path} is corrupt ({detail}). It was left untouched: restore it from a backup, "
            "or move it aside to start a new one")


def _remove_file(path: Path) -> None:
    # The row is already gone (or never existed): a file we can't remove is a harmless orphan, so log, don't raise.
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
