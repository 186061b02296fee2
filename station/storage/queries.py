"""The steps a transaction is made of: each takes the session of ``Storage.write()`` / ``Storage.read()`` and
returns plain records, so a caller can put several of them into one transaction::

    with storage.write("activate model version 'r3'") as s:
        record = queries.set_version_status(s, "r3", ACTIVE)
        listed = queries.list_versions(s)  # exactly what the activation left, whatever other stations do
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, defer

from station.storage.engine import describe
from station.storage.errors import StorageError
from station.storage.models import Decision, ModelVersion
from station.storage.records import (
    ACTIVE,
    CANDIDATE,
    IMPORTED,
    RETIRED,
    VERSION_MODES,
    VERSION_STATUSES,
    DecisionRecord,
    VersionRecord,
    VersionStatus,
    derive_kind,
    image_name_pattern,
    local_day_bounds,
)


def _database(s: Session) -> str:
    """The database a session works on, for messages: the SQLite file, or the URL without its password."""
    url = s.get_bind().engine.url
    return str(url.database) if url.get_backend_name() == "sqlite" else describe(url)


# ---- decisions


def add_decision(s: Session, row: Decision) -> DecisionRecord:
    s.add(row)
    s.flush()  # assigns the id
    return row.to_record()


def saved_decision(s: Session, sha256: str, key: str) -> DecisionRecord | None:
    """The decision an earlier attempt saved with ``key`` (``NewDecision.key``), if its commit happened."""
    query = select(Decision).where(Decision.sha256 == sha256, Decision.image_path.like(image_name_pattern(key)))
    row = s.scalars(query.limit(1)).first()
    return None if row is None else row.to_record()


def decision_records(s: Session, query: Select[Decision]) -> list[DecisionRecord]:
    return [row.to_record() for row in s.scalars(query)]


def delete_first(s: Session, query: Select[Decision]) -> DecisionRecord | None:
    """Delete the first decision ``query`` finds (in the caller's write transaction: no race with another undo)."""
    row = s.scalars(query).first()
    if row is None:
        return None
    record = row.to_record()
    s.delete(row)
    return record


def relabel(s: Session, decision_id: int, operator_label: str) -> DecisionRecord:
    """Change the operator's label; ``kind`` follows (imports stay ``imported``: they had no prediction)."""
    row = s.get(Decision, decision_id)
    if row is None:
        raise StorageError(f"decision {decision_id} no longer exists")
    row.operator_label = operator_label
    if row.kind != IMPORTED:
        row.kind = derive_kind(row.predicted_label, operator_label)
    s.flush()
    return row.to_record()


def decisions_query(
    since: date | None = None,
    until: date | None = None,
    model_version: str | None = None,
    with_embeddings: bool = False,
    holdout: bool | None = None,
    station: str | None = None,
) -> Select[Decision]:
    """Oldest first, made on local days ``since``..``until`` (both included), optionally by one model version
    and at one station."""
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
    if station is not None:
        query = query.where(Decision.station == station)
    return query


def decision_versions(s: Session) -> list[str]:
    """Every model version that made a stored decision (some may predate the version registry)."""
    return list(s.scalars(select(Decision.model_version).where(Decision.model_version.is_not(None)).distinct()))


def decision_stations(s: Session) -> list[str]:
    """Every station that stored a decision, by name (several share a database)."""
    # Sorted here, not by ORDER BY: PostgreSQL sorts by its collation, SQLite by bytes; the box lists the same.
    return sorted(s.scalars(select(Decision.station).distinct()))


def count(s: Session, *conditions: Any) -> int:
    return s.execute(select(func.count()).select_from(Decision).where(*conditions)).scalar_one()


# ---- model versions


def list_versions(s: Session) -> list[VersionRecord]:
    """Newest first (creation time, then insertion order)."""
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.seq.desc())
    return [row.to_record() for row in s.scalars(query)]


def version_names(s: Session) -> set[str]:
    return set(s.scalars(select(ModelVersion.version)))


def get_version(s: Session, version: str) -> VersionRecord | None:
    row = s.get(ModelVersion, version)
    return None if row is None else row.to_record()


def active_version(s: Session) -> VersionRecord | None:
    row = s.scalars(select(ModelVersion).where(ModelVersion.status == ACTIVE)).first()
    return None if row is None else row.to_record()


def add_version(
    s: Session,
    version: str,
    stored_path: str,
    mode: str,
    *,
    parent: str | None = None,
    counts: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    status: VersionStatus | str = CANDIDATE,
    created_at: datetime | None = None,
) -> VersionRecord:
    """Register a bundle (``stored_path``: see ``Storage.stored_path``). ``status="active"`` retires the running
    version in the same transaction."""
    if not isinstance(version, str) or not version.strip():
        raise ValueError("version must be a non-empty string")
    if mode not in VERSION_MODES:
        raise ValueError(f"mode must be one of {VERSION_MODES}, got {mode!r}")
    if status not in VERSION_STATUSES:
        raise ValueError(f"status must be one of {VERSION_STATUSES}, got {status!r}")
    if s.get(ModelVersion, version) is not None:
        raise StorageError(f"model version {version!r} already exists in {_database(s)}")
    if status == ACTIVE:
        s.execute(update(ModelVersion).where(ModelVersion.status == ACTIVE).values(status=RETIRED))
    row = ModelVersion(
        version=version,
        parent=parent,
        path=stored_path,
        created_at=(created_at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        mode=mode,
        counts=dict(counts or {}),
        metrics=dict(metrics or {}),
        status=status,
        seq=s.scalar(select(func.coalesce(func.max(ModelVersion.seq), 0) + 1)),  # the write lock is ours
    )
    s.add(row)
    s.flush()
    return row.to_record()


def set_version_status(s: Session, version: str, status: VersionStatus | str) -> VersionRecord:
    """Set a status; making one active retires the active one first, so there is never more than one."""
    if status not in VERSION_STATUSES:
        raise ValueError(f"status must be one of {VERSION_STATUSES}, got {status!r}")
    row = s.get(ModelVersion, version)
    if row is None:
        raise StorageError(f"no model version named {version!r} in {_database(s)}")
    if status == ACTIVE:
        # Core UPDATEs in this order: the old active is retired before the unique index sees a second one.
        s.execute(
            update(ModelVersion).where(ModelVersion.status == ACTIVE, ModelVersion.version != version)
            .values(status=RETIRED)
        )
    s.execute(update(ModelVersion).where(ModelVersion.version == version).values(status=status))
    s.refresh(row)
    return row.to_record()


def activate_or_add(s: Session, version: str, stored_path: str, mode: str) -> VersionRecord:
    """Make ``version`` active: re-activated when registered (e.g. after every version was set aside by hand),
    registered as active otherwise."""
    if s.get(ModelVersion, version) is not None:
        return set_version_status(s, version, ACTIVE)
    return add_version(s, version, stored_path, mode, status=ACTIVE)
