"""Plain values that leave the storage: safe to pass between threads (never ORM objects), and the rules about them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.messages import Mode


class DecisionKind(StrEnum):
    """How a decision was made; a ``str``, so it compares to and serialises as its value."""

    CONFIRMED = "confirmed"
    CORRECTED = "corrected"
    IMPORTED = "imported"
    AUTO = "auto"  # confirmed by the station itself (hands-free auto mode): no operator looked at it


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"  # at most one (a partial unique index)
    RETIRED = "retired"
    DISCARDED = "discarded"


# Short names for the members, used throughout the station.
CONFIRMED, CORRECTED, IMPORTED, AUTO = (DecisionKind.CONFIRMED, DecisionKind.CORRECTED, DecisionKind.IMPORTED,
                                        DecisionKind.AUTO)
CANDIDATE, ACTIVE, RETIRED, DISCARDED = (VersionStatus.CANDIDATE, VersionStatus.ACTIVE, VersionStatus.RETIRED,
                                         VersionStatus.DISCARDED)
KINDS = tuple(DecisionKind)
VERSION_STATUSES = tuple(VersionStatus)
VERSION_MODES = ("bundled", *(m.value for m in Mode))  # the shipped model, or how a retraining made it


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
    kind: DecisionKind | None = None
    created_at: datetime | None = None  # None = now; naive = station local time (imports keep their own time)
    item_id: str | None = None  # hands-free modes: the item's id (also in its published event)
    settle_ms: float | None = None
    touches: int | None = None
    # Names this decision through retries of its save: its image is "<time>-<key>-<attempt>.png", and a retry
    # after a commit that happened unacknowledged (the connection lost on the way back) finds that row instead of
    # adding a second. Random, so image names never collide between stations sharing a folder.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


def image_name_pattern(key: str) -> str:
    """A LIKE pattern matching the stored image path of the decision saved with ``key`` (a hex uuid: no wildcards)."""
    return f"%-{key}-%.png"


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
    kind: DecisionKind
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
    status: VersionStatus


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


def derive_kind(predicted_label: str | None, operator_label: str) -> DecisionKind:
    return CONFIRMED if operator_label == predicted_label else CORRECTED


def check_label(operator_label: str) -> str:
    if not isinstance(operator_label, str) or not operator_label.strip():
        raise ValueError("operator_label must be a non-empty string")
    return operator_label
