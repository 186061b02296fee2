"""``Storage``: the decisions and model versions of one data folder, as plain records.

The image file is written first (atomically) and the row committed second, so a crash in between leaves at most
an orphan file, never a row pointing at a missing image.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import tempfile
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, func, literal_column, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker

from station.storage.engine import DEFAULT_BUSY_TIMEOUT_MS, open_engine
from station.storage.errors import CorruptDatabaseError, StorageError, corrupt_message, driver_message, is_corrupt
from station.storage.folder import (
    DB_NAME,
    IMAGES_DIR,
    MODEL_LEFTOVER_GLOBS,
    MODELS_DIR,
    RETRAINED_NAME,
    TEMP_GLOBS,
    FolderLock,
    SweepReport,
    remove_file,
    remove_leftover,
)
from station.storage.images import encode_png, write_image
from station.storage.models import Decision, ModelVersion, embedding_bytes
from station.storage.records import (
    ACTIVE,
    CANDIDATE,
    IMPORTED,
    KINDS,
    RETIRED,
    VERSION_MODES,
    VERSION_STATUSES,
    DecisionRecord,
    NewDecision,
    VersionRecord,
    check_label,
    derive_kind,
    is_holdout,
    local_day_bounds,
    version_folder,
)
from station.storage.schema import prepare_schema

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
                prepare_schema(conn, self.db_path)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            if is_corrupt(exc):
                raise CorruptDatabaseError(corrupt_message(self.db_path, driver_message(exc))) from exc
            raise StorageError(f"cannot open database {self.db_path}: {driver_message(exc)}") from exc
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
        leftovers = [p for pattern in TEMP_GLOBS for p in self.images_dir.rglob(pattern) if p.is_file()]
        leftovers += [p for pattern in TEMP_GLOBS for p in self.data_dir.glob(pattern) if p.is_file()]
        if first is not None:
            oldest = first.timestamp() - 1.0  # mtime resolution
            for path in self.images_dir.rglob("*.png"):
                relative = path.relative_to(self.data_dir).as_posix()
                if relative not in referenced and path.is_file() and path.stat().st_mtime >= oldest:
                    leftovers.append(path)
        return [remove_leftover(path) for path in leftovers]

    def remove_model_leftovers(self) -> list[tuple[Path, int]]:
        """Work folders and unregistered ``rN`` folders under ``models/``. Only while no retraining runs here."""
        if not self.models_dir.is_dir():
            return []
        registered = {self.version_path(v).resolve() for v in self.versions()}
        leftovers = [p for pattern in MODEL_LEFTOVER_GLOBS for p in self.models_dir.glob(pattern) if p.is_dir()]
        leftovers += [
            p for p in self.models_dir.iterdir()
            if p.is_dir() and RETRAINED_NAME.fullmatch(p.name) and p.resolve() not in registered
        ]
        return [remove_leftover(folder) for folder in leftovers]

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` (reads every page, writes nothing): a damaged database is refused up front."""
        with self._engine.connect() as conn:
            problems = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptDatabaseError(corrupt_message(self.db_path, "; ".join(problems[:3])))

    def _open_folder(self) -> FolderLock:
        """Create the folder, take its shared lock and prove it writable.

        Fails at startup with the path in the message, not at the first decision with a bare errno.
        """
        lock: FolderLock | None = None
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            lock = FolderLock(self.data_dir)
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
        operator_label = check_label(decision.operator_label)
        kind = decision.kind or derive_kind(decision.predicted_label, operator_label)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        png = encode_png(decision.image)
        digest = hashlib.sha256(png).hexdigest()
        created = (decision.created_at or datetime.now(timezone.utc)).astimezone()  # naive = local
        embedding = None if decision.embedding is None else embedding_bytes(decision.embedding)
        file = write_image(self.images_dir, created, png, self._file_mode)

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
                record = row.to_record()
        except BaseException as exc:
            remove_file(file)
            if isinstance(exc, SQLAlchemyError):
                raise StorageError(f"cannot record the decision in {self.db_path}: {driver_message(exc)}") from exc
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
                record = row.to_record()
                s.delete(row)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot delete the decision in {self.db_path}: {driver_message(exc)}") from exc
        remove_file(self.image_file(record))
        return record

    def relabel(self, decision_id: int, operator_label: str) -> DecisionRecord:
        """Change the operator's label; ``kind`` follows (imports stay ``imported``: they had no prediction)."""
        check_label(operator_label)
        try:
            with self._sessions.begin() as s:
                row = s.get(Decision, decision_id)
                if row is None:
                    raise StorageError(f"decision {decision_id} no longer exists")
                row.operator_label = operator_label
                if row.kind != IMPORTED:
                    row.kind = derive_kind(row.predicted_label, operator_label)
                s.flush()
                record = row.to_record()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot relabel decision {decision_id} in {self.db_path}: {driver_message(exc)}"
            ) from exc
        return record

    # ---- reads

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        try:
            with self._reads() as s:
                return fn(s)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read {self.db_path}: {driver_message(exc)}") from exc

    def _records(self, query: Any) -> list[DecisionRecord]:
        return self._read(lambda s: [r.to_record() for r in s.scalars(query)])

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
                record = row.to_record()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot register model version {version!r} in {self.db_path}: {driver_message(exc)}"
            ) from exc
        return record

    def _versions(self, query: Any) -> list[VersionRecord]:
        return self._read(lambda s: [r.to_record() for r in s.scalars(query)])

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
                record = row.to_record()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot change model version {version!r} in {self.db_path}: {driver_message(exc)}"
            ) from exc
        return record

    def next_version_name(self) -> str:
        """"r<N>" one past every "r<N>" registered or present as a folder under ``models/``: never reused."""
        names = set(self._read(lambda s: list(s.scalars(select(ModelVersion.version)))))
        if self.models_dir.is_dir():
            names.update(p.name for p in self.models_dir.iterdir())
        numbers = [int(m.group(1)) for m in map(RETRAINED_NAME.fullmatch, names) if m]
        return f"r{max(numbers, default=0) + 1}"

