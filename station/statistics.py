"""What the supervisor sees: decisions per class, model/operator agreement, confusion and its trend. No Qt.

Agreement is the share of decisions whose operator label equals the model's prediction. Imported images
had no prediction: they are counted apart and left out of everything else; so are the station's own
auto-confirmed decisions (kind "auto"), which no operator judged. Throughput (hands-free sorting) counts every
decision but imports, per hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from station.storage import AUTO, IMPORTED, DecisionRecord, Storage

HOURLY_UP_TO = timedelta(days=2)  # a range this short is plotted per hour, a longer one per day


@dataclass(frozen=True)
class StatsFilter:
    """Which decisions the view covers: one model version (None: all), local days since..until (inclusive), and
    one station (None: all; several share a database)."""

    model_version: str | None = None
    since: date | None = None
    until: date | None = None
    station: str | None = None


def covered_decisions(storage: Storage, wanted: StatsFilter) -> list[DecisionRecord]:
    """The decisions ``wanted`` covers, oldest first: the one place a filter becomes a query."""
    return storage.decisions(wanted.since, wanted.until, wanted.model_version, station=wanted.station)


@dataclass(frozen=True)
class ClassStats:
    name: str
    today: int  # decisions the operator labelled with this class today
    overall: int  # ... in the filtered range
    agreed: int  # of ``overall``, how many the model had predicted as this class

    @property
    def agreement(self) -> float | None:
        """The model's recall on this class, as judged by the operator (None: no decisions)."""
        return self.agreed / self.overall if self.overall else None


@dataclass(frozen=True)
class TimeBucket:
    start: datetime  # local time, start of the hour or day
    decisions: int
    agreed: int

    @property
    def agreement(self) -> float:
        return self.agreed / self.decisions


@dataclass(frozen=True)
class VersionMark:
    version: str
    first_decision: datetime  # local time: when this version's first decision in the range was made


@dataclass(frozen=True)
class HourThroughput:
    """Sorting pace in one local hour (every decision but imports is one item)."""

    start: datetime  # local time, start of the hour
    items: int
    items_per_minute: float | None  # between the hour's first and last decision; None with a single item
    auto_share: float  # decided by the station itself (kind "auto")
    touches_per_item: float  # operator key presses per item (a manual decision without a count is one press)
    median_settle_ms: float | None  # from the item settling to its decision (hands-free decisions only)


@dataclass(frozen=True, eq=False)  # eq=False: the confusion matrix is an array
class Statistics:
    labels: tuple[str, ...]  # rows and columns of ``confusion``, in the model's order
    classes: tuple[ClassStats, ...]
    today: int
    overall: int
    agreed: int
    imported: int  # imported images in the range (no prediction: not in the other numbers)
    confusion: NDArray[np.int64]  # rows: operator label, columns: model prediction
    bucket: str  # "hour" or "day"
    timeline: tuple[TimeBucket, ...]  # only buckets with decisions, oldest first
    marks: tuple[VersionMark, ...]  # oldest first
    auto: int = 0  # auto-confirmed decisions in the range (no operator judged them: not in the agreement)
    throughput: tuple[HourThroughput, ...] = ()  # oldest first

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.overall if self.overall else None


def compute_statistics(
    records: Sequence[DecisionRecord], labels: Sequence[str], now: datetime | None = None
) -> Statistics:
    """Statistics of ``records`` (already filtered); ``labels`` orders the classes, unknown ones are appended.

    ``now`` (default: the clock; naive = local time) decides what "today" is.
    """
    judged = [r for r in records if r.kind not in (IMPORTED, AUTO) and r.predicted_label is not None]
    names = list(dict.fromkeys(labels))
    for r in judged:
        for name in (r.operator_label, r.predicted_label):
            # a class the current model does not know (an older model's): still shown. Never None in judged:
            # the first check only narrows predicted_label's type.
            if name is not None and name not in names:
                names.append(name)
    index = {name: i for i, name in enumerate(names)}
    today = (now or datetime.now()).astimezone().date()

    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    per_class_today = np.zeros(len(names), dtype=np.int64)
    for r in judged:
        confusion[index[r.operator_label], index[str(r.predicted_label)]] += 1
        if local(r.created_at).date() == today:
            per_class_today[index[r.operator_label]] += 1
    classes = tuple(
        ClassStats(name, int(per_class_today[i]), int(confusion[i].sum()), int(confusion[i, i]))
        for i, name in enumerate(names)
    )
    bucket = choose_bucket(judged)
    return Statistics(
        labels=tuple(names),
        classes=classes,
        today=int(per_class_today.sum()),
        overall=len(judged),
        agreed=int(np.trace(confusion)),
        imported=sum(r.kind == IMPORTED for r in records),
        confusion=confusion,
        bucket=bucket,
        timeline=timeline(judged, bucket),
        marks=version_marks(judged),
        auto=sum(r.kind == AUTO for r in records),
        throughput=throughput(records),
    )


def local(moment: datetime) -> datetime:
    return moment.astimezone()


def choose_bucket(records: Sequence[DecisionRecord]) -> str:
    if not records:
        return "hour"
    times = [r.created_at for r in records]
    return "hour" if max(times) - min(times) <= HOURLY_UP_TO else "day"


def bucket_start(moment: datetime, bucket: str) -> datetime:
    """The local hour or local midnight ``moment`` falls in."""
    moment = local(moment)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return datetime.combine(moment.date(), datetime.min.time()).astimezone()


def timeline(records: Sequence[DecisionRecord], bucket: str) -> tuple[TimeBucket, ...]:
    counts: dict[datetime, list[int]] = {}
    for r in records:
        entry = counts.setdefault(bucket_start(r.created_at, bucket), [0, 0])
        entry[0] += 1
        entry[1] += r.operator_label == r.predicted_label
    return tuple(TimeBucket(start, n, agreed) for start, (n, agreed) in sorted(counts.items()))


def throughput(records: Sequence[DecisionRecord]) -> tuple[HourThroughput, ...]:
    """Items per minute, share decided automatically, operator touches per item and median settle-to-decision
    time, per local hour with decisions."""
    hours: dict[datetime, list[DecisionRecord]] = {}
    for r in records:
        if r.kind != IMPORTED:
            hours.setdefault(bucket_start(r.created_at, "hour"), []).append(r)
    rows = []
    for start, items in sorted(hours.items()):
        times = sorted(r.created_at for r in items)
        span_min = (times[-1] - times[0]).total_seconds() / 60.0
        touches = [r.touches if r.touches is not None else (0 if r.kind == AUTO else 1) for r in items]
        settle = [r.settle_ms for r in items if r.settle_ms is not None]
        rows.append(HourThroughput(
            start=start,
            items=len(items),
            items_per_minute=(len(items) - 1) / span_min if span_min > 0 else None,
            auto_share=sum(r.kind == AUTO for r in items) / len(items),
            touches_per_item=sum(touches) / len(items),
            median_settle_ms=float(np.median(settle)) if settle else None,
        ))
    return tuple(rows)


def version_marks(records: Sequence[DecisionRecord]) -> tuple[VersionMark, ...]:
    """The first decision of each model version: where a retrained model started sorting."""
    first: dict[str, datetime] = {}
    for r in records:
        if r.model_version is not None and (r.model_version not in first or r.created_at < first[r.model_version]):
            first[r.model_version] = r.created_at
    return tuple(VersionMark(v, local(t)) for v, t in sorted(first.items(), key=lambda item: item[1]))
