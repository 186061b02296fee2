"""``Storage``: the decisions and model versions of one data folder, as plain records.

The image file is written first (atomically) and the row committed second, so a crash in between leaves at most
an orphan file, never a row pointing at a missing image.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker

from station.storage import queries
from station.storage.engine import (
    DEFAULT_BUSY_TIMEOUT_MS,
    describe,
    for_reads,
    for_writes,
    open_engine,
    open_server_engine,
    parse_database_url,
)
from station.storage.errors import (
    CorruptDatabaseError,
    StorageError,
    corrupt_message,
    driver_message,
    is_corrupt,
    outcome_unknown,
)
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
from station.storage.images import encode_png, station_folder, write_image
from station.storage.models import Decision, embedding_bytes
from station.storage.records import (
    ACTIVE,
    CANDIDATE,
    IMPORTED,
    KINDS,
    DecisionKind,
    DecisionRecord,
    NewDecision,
    VersionRecord,
    VersionStatus,
    check_label,
    derive_kind,
    is_holdout,
    local_day_bounds,
    version_folder,
)
from station.storage.schema import prepare_schema

log = logging.getLogger(__name__)


class Storage:
    """Decisions and model versions of one data folder, as plain records.

    Every public method is one short transaction. Where an operation has several steps that must see and leave
    one consistent state, the caller owns the transaction: ``with storage.write(...) as s:`` and the steps of
    ``queries`` (``storage.read()`` for several reads from one snapshot).
    """

    def __init__(
        self,
        data_dir: Path | str,
        station: str = "station",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        sweep: bool = True,
        database_url: str = "",
    ) -> None:
        """Open (or create) a data folder; ``sweep=False`` for readers that must leave it exactly as it is.

        ``database_url`` names a shared PostgreSQL database (``postgresql+psycopg://user@host/sorting``) whose
        image paths are relative to ``data_dir`` (then a folder every station mounts); empty = the SQLite file
        ``station.db`` in the data folder.
        """
        self.data_dir = Path(data_dir).expanduser()
        self.images_dir = self.data_dir / IMAGES_DIR
        self.models_dir = self.data_dir / MODELS_DIR
        self.db_path = self.data_dir / DB_NAME  # the SQLite file; unused with a database_url
        self.station = station
        # NewDecision.key -> images of its attempts whose commit may have happened (connection lost): the retry
        # that settles it removes those its row does not point to.
        self._unsure_images: dict[str, list[Path]] = {}
        self._server_url = parse_database_url(database_url) if database_url else None
        # How messages and logs name the database: the file, or the URL without its password.
        self.database = str(self.db_path) if self._server_url is None else describe(self._server_url)
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

    @property
    def is_shared(self) -> bool:
        """Whether the database is a server several stations share (not the data folder's SQLite file)."""
        return self._server_url is not None

    def _open_database(self, busy_timeout_ms: int) -> None:
        if self._server_url is None:
            self._engine = open_engine(self.db_path, busy_timeout_ms)
        else:
            self._engine = open_server_engine(self._server_url, busy_timeout_ms)
        write_engine = for_writes(self._engine)
        self._reads = sessionmaker(for_reads(self._engine), expire_on_commit=False)
        self._sessions = sessionmaker(write_engine, expire_on_commit=False)
        try:
            if not self.is_shared:
                self._check_integrity()  # before anything is written to it
            with write_engine.begin() as conn:  # write lock: two stations opening a new database don't both create it
                prepare_schema(conn, self.database, None if self.is_shared else self.db_path)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            if is_corrupt(exc):
                raise CorruptDatabaseError(corrupt_message(self.database, driver_message(exc))) from exc
            raise StorageError(f"cannot open database {self.database}: {driver_message(exc)}") from exc
        except BaseException:
            self._engine.dispose()
            raise
        try:
            # Images are as readable as the database file; beside a server database, as the (shared) folder.
            mode = stat.S_IMODE(self.data_dir.stat().st_mode) & 0o666 if self.is_shared else None
            self._file_mode = mode if mode is not None else stat.S_IMODE(self.db_path.stat().st_mode)
        except OSError as exc:
            self._engine.dispose()
            raise StorageError(f"data folder {self.data_dir} is not usable: {exc.strerror or exc}") from exc

    def sweep(self) -> SweepReport:
        """Remove what crashes leave behind and no row refers to; only when no other Storage has the folder open.

        - temporary files of interrupted image writes and database backups (``images/**/.*.tmp``, ``.*.tmp``);
        - image files without a row, written after the first stored decision (a save killed between its file
          and its row). Older ones are kept: they may belong to a database that was moved aside;
        - ``models/.*.partial-*`` / ``.*.old-*`` folders and ``models/rN`` folders no model version names
          (a retraining killed before it registered its candidate).

        A file a row points to is never removed. Beside a shared database nothing is swept: the folder's lock
        does not reach the other machines (a network mount), whose saves and retrainings may be in progress.
        """
        if self.is_shared:
            return SweepReport([], skipped="the data folder is shared with other stations' machines")
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

    def _sweep_images(self) -> list[tuple[Path, int]]:
        with self.read() as s:
            referenced = set(s.scalars(select(Decision.image_path)))
            first = s.scalar(select(func.min(Decision.created_at)))
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
        """Work folders and unregistered ``rN`` folders under ``models/``. Only while no retraining runs here,
        and never in a folder shared with other machines (theirs may run)."""
        if self.is_shared or not self.models_dir.is_dir():
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
            raise CorruptDatabaseError(corrupt_message(self.database, "; ".join(problems[:3])))

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

    # ---- transactions

    @contextmanager
    def write(self, action: str = "write to") -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back entirely when it raises.

        The write lock is taken at the first statement, waiting up to busy_timeout (see ``engine``). A
        database error becomes ``StorageError("cannot <action> in <database>: <reason>")``. Keep the block short
        (no file I/O, no waiting) and let no ORM object out of it: ``queries`` returns plain records.
        """
        try:
            with self._sessions.begin() as s:
                yield s
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot {action} in {self.database}: {driver_message(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read transaction: every query in the block sees the same committed state (one snapshot)."""
        try:
            with self._reads() as s:
                yield s
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read {self.database}: {driver_message(exc)}") from exc

    # ---- decisions: writes

    def save(self, decision: NewDecision) -> DecisionRecord:
        """Write the frame as PNG (atomically), then commit its row; on a failed commit the file is removed.

        Saving the same ``NewDecision`` again (a retry) returns the row an earlier attempt committed, if one did.
        """
        operator_label = check_label(decision.operator_label)
        kind = decision.kind or derive_kind(decision.predicted_label, operator_label)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        png = encode_png(decision.image)
        digest = hashlib.sha256(png).hexdigest()
        created = (decision.created_at or datetime.now(timezone.utc)).astimezone()  # naive = local
        embedding = None if decision.embedding is None else embedding_bytes(decision.embedding)
        # Beside a shared database (one folder several stations mount) each station writes in its own sub-folder.
        folder = self.images_dir
        if self.is_shared:
            folder = folder / station_folder(decision.station or self.station)
        file = write_image(folder, created, decision.key, png, self._file_mode)

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
            with self.write("record the decision") as s:
                earlier = queries.saved_decision(s, digest, decision.key)  # this save retried, the first committed
                record = queries.add_decision(s, row) if earlier is None else earlier
        except BaseException as exc:
            if outcome_unknown(exc):  # the row may be committed: keep its image until a retry knows
                self._unsure_images.setdefault(decision.key, []).append(file)
            else:
                remove_file(file)
            raise
        # Only the image the row points to stays: this attempt's when it added the row, else the earlier one's.
        for attempt in [file, *self._unsure_images.pop(decision.key, [])]:
            if attempt.relative_to(self.data_dir).as_posix() != record.image_path:
                remove_file(attempt)
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

    def _delete(self, query: Select[Decision]) -> DecisionRecord | None:
        with self.write("delete the decision") as s:
            record = queries.delete_first(s, query)
        if record is not None:
            remove_file(self.image_file(record))
        return record

    def relabel(self, decision_id: int, operator_label: str) -> DecisionRecord:
        """Change the operator's label; ``kind`` follows (imports stay ``imported``: they had no prediction)."""
        check_label(operator_label)
        with self.write(f"relabel decision {decision_id}") as s:
            return queries.relabel(s, decision_id, operator_label)

    # ---- decisions: reads

    def _records(self, query: Select[Decision]) -> list[DecisionRecord]:
        with self.read() as s:
            return queries.decision_records(s, query)

    def get(self, decision_id: int) -> DecisionRecord | None:
        found = self._records(select(Decision).where(Decision.id == decision_id))
        return found[0] if found else None

    def recent(self, limit: int = 20, station: str | None = None) -> list[DecisionRecord]:
        """Newest first (insertion order), optionally of one station only."""
        query = select(Decision).order_by(Decision.id.desc()).limit(max(0, limit))
        return self._records(query if station is None else query.where(Decision.station == station))

    def recent_answers(
        self, station: str, model_version: str, predicted_label: str, min_confidence: float, limit: int
    ) -> list[DecisionRecord]:
        """The operator's newest decisions (not the station's own, kind auto) on answers of model ``model_version``
        at ``station`` naming ``predicted_label`` at or above ``min_confidence``, newest first, at most ``limit``."""
        query = (
            select(Decision).options(defer(Decision.embedding))
            .where(Decision.station == station, Decision.model_version == model_version,
                   Decision.predicted_label == predicted_label, Decision.confidence >= min_confidence,
                   Decision.kind != DecisionKind.AUTO)
            .order_by(Decision.id.desc()).limit(max(0, limit))
        )
        return self._records(query)

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
        station: str | None = None,
    ) -> list[DecisionRecord]:
        """Oldest first, made on local days ``since``..``until`` (both included), optionally by one model version
        and at one station.

        Embeddings are left out unless asked for (statistics and export do not need ~5 KB per row).
        """
        return self._records(queries.decisions_query(since, until, model_version, with_embeddings, holdout, station))

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
        with self.read() as s:
            return queries.decision_versions(s)

    def decision_stations(self) -> list[str]:
        """Every station that stored a decision here (several share a database)."""
        with self.read() as s:
            return queries.decision_stations(s)

    def find_sha256(self, sha256: str) -> DecisionRecord | None:
        found = self._records(select(Decision).where(Decision.sha256 == sha256).order_by(Decision.id).limit(1))
        return found[0] if found else None

    def count(self, kind: str | None = None) -> int:
        with self.read() as s:
            return queries.count(s, *([] if kind is None else [Decision.kind == kind]))

    def count_today(self, now: datetime | None = None, station: str | None = None) -> int:
        """Decisions made since local midnight (``now`` naive = local time; default: the clock), optionally at one
        station.

        Imported photos are not decisions of the day (dated by their files): the statistics leave them out too.
        """
        local = (now or datetime.now()).astimezone()
        start, end = local_day_bounds(local.date())
        conditions = [Decision.created_at >= start, Decision.created_at < end, Decision.kind != IMPORTED]
        if station is not None:
            conditions.append(Decision.station == station)
        with self.read() as s:
            return queries.count(s, *conditions)

    # ---- model versions

    def stored_path(self, path: Path | str) -> str:
        """How a bundle folder is stored: relative (posix) when inside the data folder, so the folder can move;
        absolute otherwise."""
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
        status: VersionStatus | str = CANDIDATE,
        created_at: datetime | None = None,
    ) -> VersionRecord:
        """Register a bundle. ``status="active"`` retires the running version in the same transaction."""
        with self.write(f"register model version {version!r}") as s:
            return queries.add_version(
                s, version, self.stored_path(path), mode,
                parent=parent, counts=counts, metrics=metrics, status=status, created_at=created_at,
            )

    def versions(self) -> list[VersionRecord]:
        """Newest first (creation time, then insertion order)."""
        with self.read() as s:
            return queries.list_versions(s)

    def get_version(self, version: str) -> VersionRecord | None:
        with self.read() as s:
            return queries.get_version(s, version)

    def active_version(self) -> VersionRecord | None:
        with self.read() as s:
            return queries.active_version(s)

    def activate(self, version: str) -> VersionRecord:
        """Make ``version`` the active one and retire the previous (one transaction); also rolls back to old ones."""
        return self.set_version_status(version, ACTIVE)

    def set_version_status(self, version: str, status: VersionStatus | str) -> VersionRecord:
        """Set a status ("active" retires the active one, so there is never more than one active version)."""
        with self.write(f"change model version {version!r}") as s:
            return queries.set_version_status(s, version, status)

    def next_version_name(self) -> str:
        """"r<N>" one past every "r<N>" registered or present as a folder under ``models/``: never reused."""
        with self.read() as s:
            names = queries.version_names(s)
        if self.models_dir.is_dir():
            names.update(p.name for p in self.models_dir.iterdir())
        numbers = [int(m.group(1)) for m in map(RETRAINED_NAME.fullmatch, names) if m]
        return f"r{max(numbers, default=0) + 1}"

    def reserve_version_name(self) -> str:
        """A new "r<N>" whose (empty) folder under ``models/`` this call made: two retrainings at once, on one
        machine or on several sharing the folder, never pick the same name (mkdir either makes it or fails)."""
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            while True:
                name = self.next_version_name()
                try:
                    (self.models_dir / name).mkdir()
                except FileExistsError:  # another retraining took it between the two steps
                    continue
                return name
        except OSError as exc:
            raise StorageError(f"cannot make a model folder in {self.models_dir}: {exc.strerror or exc}") from exc
