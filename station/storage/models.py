"""SQLAlchemy ORM models: the tables of ``station.db``. ORM objects never leave a session: ``to_record()`` does."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from station.storage.records import ACTIVE, VERSION_MODES, DecisionKind, DecisionRecord, VersionRecord, VersionStatus

# Embeddings are stored as raw little-endian float32 so the bytes mean the same thing on every machine.
_EMBEDDING_DTYPE = np.dtype("<f4")


def embedding_bytes(embedding: NDArray[np.floating[Any]]) -> bytes:
    return np.asarray(embedding, dtype=_EMBEDDING_DTYPE).ravel().tobytes()


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no time zones), hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def str_enum(enum: type[StrEnum], constraint: str) -> Enum:
    """A str Enum column stored as its values (not member names) in a VARCHAR with a named CHECK constraint on
    both backends; rows read back as members, and an unknown value is refused before it reaches the database."""
    return Enum(
        enum, name=constraint, native_enum=False, create_constraint=True, length=16, validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


class Decision(Base):
    __tablename__ = "decisions"
    # Ids are never reused after undo/delete, so a stale id held by the UI can't hit a newer row: SQLite needs
    # AUTOINCREMENT for that, PostgreSQL's SERIAL (a sequence) never gives a number twice anyway.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_path: Mapped[str] = mapped_column(String)  # relative to the data folder, posix separators
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    predicted_label: Mapped[str | None] = mapped_column(String)
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    operator_label: Mapped[str] = mapped_column(String)
    kind: Mapped[DecisionKind] = mapped_column(str_enum(DecisionKind, "ck_decisions_kind"))
    model_version: Mapped[str | None] = mapped_column(String)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    station: Mapped[str] = mapped_column(String)
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    item_id: Mapped[str | None] = mapped_column(String)  # hands-free: the item this decision was made for
    settle_ms: Mapped[float | None] = mapped_column(Float)  # hands-free: from the item settling to this decision
    touches: Mapped[int | None] = mapped_column(Integer)  # the operator's key presses for this item

    def to_record(self) -> DecisionRecord:
        # A query may leave the embedding unloaded (``defer``): it then reads as None instead of loading lazily.
        raw = None if "embedding" in inspect(self).unloaded else self.embedding
        emb = None if raw is None else np.frombuffer(raw, dtype=_EMBEDDING_DTYPE).astype(np.float32)
        return DecisionRecord(
            id=self.id,
            image_path=self.image_path,
            sha256=self.sha256,
            predicted_label=self.predicted_label,
            confidence=self.confidence,
            probabilities=dict(self.probabilities or {}),
            operator_label=self.operator_label,
            kind=self.kind,
            model_version=self.model_version,
            embedding=emb,
            created_at=self.created_at,
            station=self.station,
            holdout=bool(self.holdout),
            item_id=self.item_id,
            settle_ms=self.settle_ms,
            touches=self.touches,
        )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(f"mode IN {VERSION_MODES!r}", name="ck_model_versions_mode"),
        # At most one active version, enforced by the database itself (a partial unique index).
        Index(
            "uq_model_versions_one_active", "status", unique=True,
            sqlite_where=text(f"status = '{ACTIVE}'"), postgresql_where=text(f"status = '{ACTIVE}'"),
        ),
    )

    version: Mapped[str] = mapped_column(String, primary_key=True)  # "r1", or the bundled folder's name
    parent: Mapped[str | None] = mapped_column(String)
    path: Mapped[str] = mapped_column(String)  # relative to the data folder (posix) when inside it, else absolute
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    mode: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[VersionStatus] = mapped_column(str_enum(VersionStatus, "ck_model_versions_status"))
    # Registration order (schema 4), the tie-break of equal creation times: SQLite's rowid has no portable twin.
    # One past the largest, given under the write lock (``queries.add_version``).
    seq: Mapped[int] = mapped_column(Integer, default=0)

    def to_record(self) -> VersionRecord:
        return VersionRecord(
            version=self.version,
            parent=self.parent,
            path=self.path,
            created_at=self.created_at,
            mode=self.mode,
            counts=dict(self.counts or {}),
            metrics=dict(self.metrics or {}),
            status=self.status,
        )
