"""The station's storage jobs: plain functions of a ``Storage``, run in the storage thread. No Qt.

``StorageWorker.submit(fn, done)`` runs ``fn(storage)`` there and hands the result to ``done`` on the GUI
thread. Whatever a job needs besides the database (thumbnails, statistics) is computed here, off the GUI
thread. A job that finds nothing to act on raises ``NothingToDoError``: the operator is told, nothing is retried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from station.statistics import Statistics, StatsFilter, compute_statistics, covered_decisions
from station.storage import ACTIVE, DISCARDED, DecisionRecord, NewDecision, Storage, VersionRecord, queries
from station.trust import Check, SiteTrust, decision_check

T = TypeVar("T")
Job = Callable[[Storage], T]

THUMBNAIL_SIZE = 72
REVIEW_THUMBNAIL = 128
HISTORY_LENGTH = 20


@dataclass(frozen=True, eq=False)
class HistoryEntry:
    record: DecisionRecord
    thumbnail: NDArray[np.uint8]  # small RGB copy for the history panel


class NothingToDoError(ValueError):
    """Nothing to undo, a decision already deleted: the request is answered, not retried."""


def thumbnail(image: NDArray[np.uint8], size: int = THUMBNAIL_SIZE) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    scale = size / max(height, width)
    size_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cast(NDArray[np.uint8], cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA))


def load_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> NDArray[np.uint8]:
    # Decode at a half or a quarter of the size: enough for the tile, much faster for camera frames.
    reduced = cv2.IMREAD_REDUCED_COLOR_2 if size > THUMBNAIL_SIZE else cv2.IMREAD_REDUCED_COLOR_4
    image = cv2.imread(str(path), reduced)
    if image is None:  # file missing or unreadable: show a grey tile, keep the row visible
        return np.full((size, size, 3), 128, np.uint8)
    return thumbnail(cast(NDArray[np.uint8], cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), size)


class Thumbnails:
    """The history panel's thumbnails by decision id, used only in the storage thread: a decision just saved
    is shown without reading its file back."""

    def __init__(self) -> None:
        self._images: dict[int, NDArray[np.uint8]] = {}

    def remember(self, record: DecisionRecord, image: NDArray[np.uint8]) -> None:
        self._images[record.id] = thumbnail(image)

    def forget(self, record: DecisionRecord) -> None:
        self._images.pop(record.id, None)

    def history(self, storage: Storage, length: int = HISTORY_LENGTH, station: str | None = None) -> list[HistoryEntry]:
        """The newest ``length`` decisions (of one ``station``, None: all), newest first, with their thumbnails."""
        entries = []
        for record in storage.recent(length, station):
            if record.id not in self._images:
                self._images[record.id] = load_thumbnail(storage.image_file(record))
            entries.append(HistoryEntry(record, self._images[record.id]))
        # Keep only the shown ones: a cache of every decision's thumbnail grew ~12 KB per decision, for ever.
        self._images = {entry.record.id: entry.thumbnail for entry in entries}
        return entries


# ---- writes


def save(decision: NewDecision, thumbnails: Thumbnails) -> Job[DecisionRecord]:
    def job(storage: Storage) -> DecisionRecord:
        record = storage.save(decision)
        thumbnails.remember(record, decision.image)
        return record

    return job


def _removal(remove: Callable[[Storage], DecisionRecord | None], nothing: str,
             thumbnails: Thumbnails) -> Job[DecisionRecord]:
    """A job removing one decision (and its thumbnail); ``nothing`` is said when there was none to remove."""

    def job(storage: Storage) -> DecisionRecord:
        record = remove(storage)
        if record is None:
            raise NothingToDoError(nothing)
        thumbnails.forget(record)
        return record

    return job


def undo_last(thumbnails: Thumbnails) -> Job[DecisionRecord]:
    """This station's newest decision, removed."""
    return _removal(lambda storage: storage.undo_last(storage.station), "nothing to undo", thumbnails)


def delete(decision_id: int, thumbnails: Thumbnails) -> Job[DecisionRecord]:
    return _removal(lambda storage: storage.delete(decision_id), "that decision no longer exists", thumbnails)


def relabel(decision_id: int, label: str) -> Job[DecisionRecord]:
    return lambda storage: storage.relabel(decision_id, label)


@dataclass(frozen=True)
class VersionChange:
    changed: VersionRecord
    versions: list[VersionRecord]  # every version as that change left them, newest first


def _set_status(version: str, status: str, action: str) -> Job[VersionChange]:
    def job(storage: Storage) -> VersionChange:
        # One transaction: the list is what this change left, not what a later change (another station) made.
        with storage.write(f"{action} model version {version!r}") as s:
            changed = queries.set_version_status(s, version, status)
            return VersionChange(changed, queries.list_versions(s))

    return job


def activate(version: str) -> Job[VersionChange]:
    """Record ``version`` as the running model (the previous one retired)."""
    return _set_status(version, ACTIVE, "activate")


def discard(version: str) -> Job[VersionChange]:
    """Mark a candidate discarded."""
    return _set_status(version, DISCARDED, "discard")


# ---- reads


def list_versions(storage: Storage) -> list[VersionRecord]:
    """Every model version, newest first."""
    return storage.versions()


def active_version(asked: threading.Event) -> Job[VersionRecord | None]:
    """The version the database records as active (``station.model_watch``), for a poll that set ``asked``.

    ``asked`` is cleared as the read starts: while the question waits in the queue no poll adds another (they
    would pile up in an outage), and a read that fails for good does not block every later question.
    """

    def job(storage: Storage) -> VersionRecord | None:
        asked.clear()
        return storage.active_version()

    return job


@dataclass(frozen=True)
class StatisticsResult:
    statistics: Statistics
    versions: list[str]  # every model version name, for the filter
    stations: list[str]  # every station that stored a decision (several share a database), for the filter


def statistics(wanted: StatsFilter, labels: tuple[str, ...]) -> Job[StatisticsResult]:
    """The statistics of the decisions ``wanted`` covers, and the choices of the view's filters."""

    def job(storage: Storage) -> StatisticsResult:
        names = sorted({v.version for v in storage.versions()} | set(storage.decision_versions()))
        return StatisticsResult(compute_statistics(covered_decisions(storage, wanted), labels), names,
                                storage.decision_stations())

    return job


def review(limit: int) -> Job[list[HistoryEntry]]:
    """The review queue, least confident first, with larger thumbnails."""

    def job(storage: Storage) -> list[HistoryEntry]:
        return [HistoryEntry(r, load_thumbnail(storage.image_file(r), REVIEW_THUMBNAIL))
                for r in storage.review_queue(limit)]

    return job


def trust_checks(station: str, version: str, labels: tuple[str, ...], trust: SiteTrust) -> Job[list[tuple[int, Check]]]:
    """The operator's newest checks of model ``version``'s answers at this station, as many of each class as
    ``trust`` keeps, oldest first (auto mode's trust)."""

    def job(storage: Storage) -> list[tuple[int, Check]]:
        found = [(record.id, decision_check(record, version)) for label in labels
                 for record in storage.recent_answers(station, version, label, trust.threshold, trust.window)]
        return sorted(((i, check) for i, check in found if check is not None), key=lambda pair: pair[0])

    return job
