"""QThread workers: capture, inference and storage. Widgets are never touched from here.

Every worker shares one lifecycle (``Worker``): Qt's ``started``/``finished`` plus ``errored``
for an exception that ended it, and a cooperative ``stop()`` (never ``terminate()``).
Only plain values cross threads: frames, predictions and ``DecisionRecord`` dataclasses.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import QThread, Signal

from station.arrival import SETTLED_EVENT, ArrivalDetector, PhotoArrivals
from station.camera import CaptureLoop, Frame, FrameSource, LatestFrameSlot
from station.inference import Classifier, InferenceOptions
from station.statistics import StatsFilter, compute_statistics, covered_decisions
from station.storage import (
    ACTIVE,
    DISCARDED,
    DecisionRecord,
    NewDecision,
    Storage,
    StorageError,
    VersionRecord,
    is_corrupt,
    is_transient,
    queries,
    version_folder,
)
from training.messages import RetrainFailed, RetrainOutcome, RetrainProgress, RetrainStopped

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 72
Detector = ArrivalDetector | PhotoArrivals


class Worker(QThread):
    """A thread with one job (``work``); an exception leaves it as ``errored``, never silently."""

    errored = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:
            log.exception("%s failed", type(self).__name__)
            self.errored.emit(f"{type(self).__name__}: {exc}")

    def work(self) -> None:
        raise NotImplementedError

    def stopping(self) -> bool:
        return self._stop.is_set() or self.isInterruptionRequested()

    def stop(self, timeout_ms: int = 10_000) -> bool:
        """Ask the thread to finish and wait for it; True when it has ended."""
        self._stop.set()
        self.requestInterruption()
        self.quit()
        return self.wait(timeout_ms)


class CaptureWorker(Worker):
    """Runs the capture loop; the newest frame goes to the inference slot and to the display.

    With an arrival ``detector`` every frame also goes through it here, in the capture thread (no Qt in it);
    ``arrival_seen`` carries its events and view. In the hands-free modes (``classify_live`` False) only the
    settled frames of items are classified, pinned in the slot so that none is dropped.
    """

    frame_captured = Signal(object)  # Frame
    camera_state_changed = Signal(str, str)  # state, detail
    arrival_seen = Signal(object, object, object)  # Frame, list[ArrivalEvent], ArrivalView

    def __init__(
        self, source_factory: Callable[[], FrameSource], slot: LatestFrameSlot, detector: Detector | None = None
    ) -> None:
        super().__init__()
        self.slot = slot
        self.detector = detector
        self.classify_live = True
        self._recalibrate = threading.Event()
        self.loop = CaptureLoop(source_factory, self._on_frame, self.camera_state_changed.emit)

    def recalibrate(self) -> None:
        """Learn the empty scene again (from any thread: done in the capture thread at the next frame)."""
        self._recalibrate.set()

    def _on_frame(self, frame: Frame) -> None:
        settled = False
        if self.detector is not None:
            if self._recalibrate.is_set():
                self._recalibrate.clear()
                self.detector.calibrate()
            events = self.detector.update(frame.image, frame.timestamp)
            settled = any(event.kind == SETTLED_EVENT for event in events)
            # Before the frame reaches the slot: the window learns of the item before of its prediction.
            self.arrival_seen.emit(frame, events, self.detector.view)
        if self.classify_live:
            self.slot.put(frame)
        elif settled:
            self.slot.put(frame, pin=True)
        self.frame_captured.emit(frame)

    def advance(self) -> bool:
        """Step a folder source to its next image (after a decision)."""
        return self.loop.advance()

    def work(self) -> None:
        self.loop.run(self._stop)


class InferenceWorker(Worker):
    """Classifies the newest frame only; the classifier can be swapped in one step."""

    prediction_ready = Signal(object)  # Prediction

    def __init__(self, classifier: Classifier, slot: LatestFrameSlot) -> None:
        super().__init__()
        self.slot = slot
        self._classifier = classifier
        self._last_frame: Frame | None = None
        self._lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        with self._lock:
            return self._classifier

    def swap_classifier(self, classifier: Classifier) -> Classifier:
        """Use a new (already loaded and warmed-up) classifier from the next frame on; returns the old one.

        The last frame is offered again, so the view shows the new model's answer even when
        no new frame comes (a folder waiting for the operator's decision).
        """
        with self._lock:
            old, self._classifier = self._classifier, classifier
            last = self._last_frame
        old.close()  # its background conversion, if any, is of no use any more
        if last is not None:
            self.slot.offer(last)
        return old

    def work(self) -> None:
        try:
            while not self.stopping():
                frame = self.slot.take(timeout=0.1)
                if frame is None:
                    continue
                with self._lock:
                    self._last_frame = frame
                self.prediction_ready.emit(self.classifier.classify(frame))
        finally:
            self.classifier.close()  # a background conversion ends with the station

@dataclass(frozen=True, eq=False)
class HistoryEntry:
    record: DecisionRecord
    thumbnail: NDArray[np.uint8]  # small RGB copy for the history panel


def retryable(exc: BaseException) -> bool:
    """Locked or busy database, full disk, unwritable folder: worth waiting for, not a bug (nor corruption)."""
    if is_corrupt(exc):
        return False
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, OSError) or is_transient(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def thumbnail(image: NDArray[np.uint8], size: int = THUMBNAIL_SIZE) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    scale = size / max(height, width)
    size_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cast(NDArray[np.uint8], cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA))


class StorageWorker(Worker):
    """Owns the station's ``Storage`` (one session per thread) and runs every write in order.

    A write that fails for a passing reason (locked database, full disk, unwritable folder)
    stays queued and is retried with backoff; the UI says "saved" only on ``decision_saved``.
    """

    decision_saved = Signal(object)  # DecisionRecord
    decision_removed = Signal(object)  # DecisionRecord (undo or delete)
    decision_relabelled = Signal(object)  # DecisionRecord
    history_changed = Signal(object, int)  # list[HistoryEntry] newest first, decisions today
    storage_retrying = Signal(str)  # message; the write is still pending
    storage_recovered = Signal()
    storage_failed = Signal(str)  # a write that cannot succeed (dropped, nothing saved)
    version_activated = Signal(object)  # VersionRecord
    active_version_read = Signal(object, int)  # VersionRecord | None, the generation it was asked in (ModelWatcher)
    versions_listed = Signal(object)  # list[VersionRecord], newest first
    statistics_ready = Signal(object, object, object)  # Statistics, every model version, every station (filters)
    review_ready = Signal(object)  # list[HistoryEntry], least confident first

    BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
    HISTORY_LENGTH = 20
    REVIEW_THUMBNAIL = 128
    # Jobs that change the database: counted as pending until done. Reads (history, versions, statistics,
    # review) are not: quitting never waits or asks for them.
    WRITES = frozenset({"save", "undo", "delete", "relabel", "activate", "discard"})

    def __init__(self, data_dir: Path, station: str, busy_timeout_ms: int = 2000, database_url: str = "") -> None:
        super().__init__()
        self.data_dir = data_dir
        self.station = station
        self.busy_timeout_ms = busy_timeout_ms
        self.database_url = database_url
        self._jobs: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thumbs: dict[int, NDArray[np.uint8]] = {}
        self._active_asked = threading.Event()  # one question in the queue at most: polls don't pile up in an outage

    @property
    def pending(self) -> int:
        """Writes submitted but not yet done (saved, removed or failed); reads are not counted."""
        with self._pending_lock:
            return self._pending

    def _submit(self, kind: str, payload: Any) -> None:
        if kind in self.WRITES:
            with self._pending_lock:
                self._pending += 1
        self._jobs.put((kind, payload))

    def _done(self, kind: str) -> None:
        if kind in self.WRITES:
            with self._pending_lock:
                self._pending -= 1

    def drained(self, timeout_s: float) -> bool:
        """Whether every submitted write is done, waiting up to ``timeout_s`` for the last ones."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.pending

    def save(self, decision: NewDecision) -> None:
        self._submit("save", decision)

    def undo_last(self) -> None:
        self._submit("undo", None)

    def delete(self, decision_id: int) -> None:
        self._submit("delete", decision_id)

    def relabel(self, decision_id: int, label: str) -> None:
        self._submit("relabel", (decision_id, label))

    def activate_version(self, name: str) -> None:
        self._submit("activate", name)

    def list_versions(self) -> None:
        self._submit("versions", None)

    def read_active_version(self, generation: int) -> None:
        """Ask which version is active (``active_version_read``), unless a question is already waiting."""
        if not self._active_asked.is_set():
            self._active_asked.set()
            self._submit("active", generation)

    def discard_version(self, name: str) -> None:
        self._submit("discard", name)

    def request_statistics(self, wanted: StatsFilter, labels: tuple[str, ...]) -> None:
        self._submit("statistics", (wanted, labels))

    def request_review(self, limit: int) -> None:
        self._submit("review", limit)

    def version_dir(self, record: VersionRecord) -> Path:
        """A version's bundle folder, for the GUI thread (which holds no ``Storage``)."""
        return version_folder(self.data_dir, record)

    def adopt(self, dead: StorageWorker) -> None:
        """Take over the writes a stopped worker never ran, in order (restart after a failure)."""
        while True:
            try:
                job = dead._jobs.get_nowait()
            except queue.Empty:
                break
            dead._done(job[0])
            self._submit(*job)

    def work(self) -> None:
        storage = self._open()
        if storage is None:
            return
        try:
            self._safely(storage, "read the history", self._emit_history)
            # On stop, finish the queued writes first: a decision on its way is never dropped.
            while not (self.stopping() and self._jobs.empty()):
                try:
                    kind, payload = self._jobs.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._run_job(storage, kind, payload)
        finally:
            storage.close()

    def _open(self) -> Storage | None:
        """Wait out a locked database or a full disk; anything else (corrupt, newer schema) ends the worker."""
        attempt = 0
        while not self.stopping():
            try:
                return Storage(self.data_dir, self.station, self.busy_timeout_ms, database_url=self.database_url)
            except StorageError as exc:
                if not retryable(exc):
                    raise
                self._wait_retry(str(exc), attempt)
                attempt += 1
        return None

    def _safely(self, storage: Storage, what: str, fn: Callable[[Storage], None]) -> None:
        """Run a read whose failure must not end the thread; a corrupt database does end it (errored)."""
        try:
            fn(storage)
        except Exception as exc:
            if is_corrupt(exc):
                raise
            log.exception("storage: could not %s", what)
            self.storage_failed.emit(f"could not {what}: {exc}")

    def _run_job(self, storage: Storage, kind: str, payload: Any) -> None:
        attempt = 0
        try:
            while True:
                try:
                    self._apply(storage, kind, payload)
                    if attempt:
                        self.storage_recovered.emit()
                    break
                except Exception as exc:
                    if is_corrupt(exc):  # never keep writing to a damaged database: the worker ends, visibly
                        self.storage_failed.emit(f"{exc} — this write was NOT saved")
                        raise
                    if not retryable(exc):  # a bad request or a bug: this job fails, the thread goes on
                        if not isinstance(exc, StorageError | ValueError):
                            log.exception("storage job %s failed", kind)
                        self.storage_failed.emit(str(exc))
                        break
                    if self._stop.is_set() and attempt >= len(self.BACKOFF):
                        self.storage_failed.emit(f"{exc} — giving up at shutdown; this write was NOT saved")
                        break
                    self._wait_retry(str(exc), attempt)
                    attempt += 1
        finally:
            self._done(kind)

    def _wait_retry(self, message: str, attempt: int) -> None:
        delay = self.BACKOFF[min(attempt, len(self.BACKOFF) - 1)]
        self.storage_retrying.emit(f"{message} — retrying in {delay:g} s")
        time.sleep(delay)

    def _apply(self, storage: Storage, kind: str, payload: Any) -> None:
        if kind == "save":
            record = storage.save(payload)
            self._thumbs[record.id] = thumbnail(payload.image)
            self.decision_saved.emit(record)
        elif kind in ("undo", "delete"):
            removed = storage.undo_last(self.station) if kind == "undo" else storage.delete(payload)
            if removed is None:
                self.storage_failed.emit("nothing to undo" if kind == "undo" else "that decision no longer exists")
                return
            self._thumbs.pop(removed.id, None)
            self.decision_removed.emit(removed)
        elif kind == "relabel":
            self.decision_relabelled.emit(storage.relabel(*payload))
        elif kind in ("activate", "discard"):
            status = ACTIVE if kind == "activate" else DISCARDED
            with storage.write(f"{kind} model version {payload!r}") as s:  # the list is what this change left
                changed = queries.set_version_status(s, payload, status)
                listed = queries.list_versions(s)
            if kind == "activate":
                self.version_activated.emit(changed)
            self.versions_listed.emit(listed)
            return
        elif kind == "versions":
            self.versions_listed.emit(storage.versions())
            return
        elif kind == "active":
            self._active_asked.clear()  # first: a read that fails for good must not block every later question
            self.active_version_read.emit(storage.active_version(), payload)
            return
        elif kind == "statistics":
            wanted, labels = payload
            records = covered_decisions(storage, wanted)
            names = sorted({v.version for v in storage.versions()} | set(storage.decision_versions()))
            self.statistics_ready.emit(compute_statistics(records, labels), names, storage.decision_stations())
            return
        elif kind == "review":
            entries = [
                HistoryEntry(r, self._load_thumbnail(storage.image_file(r), self.REVIEW_THUMBNAIL))
                for r in storage.review_queue(payload)
            ]
            self.review_ready.emit(entries)
            return
        # The write is done: a failing history read must not send it back to the retry loop (it would run twice).
        self._safely(storage, "read the history", self._emit_history)

    def _emit_history(self, storage: Storage) -> None:
        # Beside a shared database the other stations' decisions are not this operator's to see, relabel or delete
        # (and this list is refreshed by this station's writes only); alone, the data folder's are, imports too.
        station = self.station if storage.is_shared else None
        entries = []
        for record in storage.recent(self.HISTORY_LENGTH, station):
            if record.id not in self._thumbs:
                self._thumbs[record.id] = self._load_thumbnail(storage.image_file(record))
            entries.append(HistoryEntry(record, self._thumbs[record.id]))
        # Keep only the shown ones: a cache of every decision's thumbnail grew ~12 KB per decision, for ever.
        self._thumbs = {entry.record.id: entry.thumbnail for entry in entries}
        self.history_changed.emit(entries, storage.count_today(station=station))

    @staticmethod
    def _load_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> NDArray[np.uint8]:
        # Decode at a half or a quarter of the size: enough for the tile, much faster for camera frames.
        reduced = cv2.IMREAD_REDUCED_COLOR_2 if size > THUMBNAIL_SIZE else cv2.IMREAD_REDUCED_COLOR_4
        image = cv2.imread(str(path), reduced)
        if image is None:  # file missing or unreadable: show a grey tile, keep the row visible
            return np.full((size, size, 3), 128, np.uint8)
        return thumbnail(cast(NDArray[np.uint8], cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), size)


class RetrainWorker(Worker):
    """Runs one retraining in a spawned child process and relays its events as signals.

    Training never runs in the GUI process: TensorFlow's threads and Qt's stay apart, a crash
    in the child cannot take the station down, and Cancel can always end it.
    """

    retrain_progress = Signal(object)  # RetrainProgress
    retrain_finished = Signal(object)  # RetrainOutcome
    retrain_failed = Signal(str)
    retrain_cancelled = Signal()

    CANCEL_GRACE_S = 20.0  # after Cancel, how long the child gets to stop on its own

    def __init__(self, job: Any, target: Callable[..., None] | None = None) -> None:
        super().__init__()
        self.job = job
        self.target = target  # the child's entry point; default station.retraining.child_main
        self._cancel_requested = threading.Event()

    def cancel(self) -> None:
        self._cancel_requested.set()

    def work(self) -> None:
        import multiprocessing

        from station.retraining import child_main, clean_partials

        context = multiprocessing.get_context("spawn")  # never fork a process with TF or Qt threads
        events = context.Queue()
        cancel = context.Event()
        process = context.Process(target=self.target or child_main, args=(self.job, events, cancel), daemon=True)
        process.start()
        outcome: object = None
        cancelled_at: float | None = None
        while outcome is None:
            if (self._cancel_requested.is_set() or self.stopping()) and cancelled_at is None:
                cancel.set()
                cancelled_at = time.monotonic()
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                if cancelled_at is not None and time.monotonic() - cancelled_at > self.CANCEL_GRACE_S:
                    process.terminate()
                    outcome = RetrainStopped()
                elif not process.is_alive() and events.empty():
                    outcome = RetrainFailed(f"the retraining process ended unexpectedly (exit code {process.exitcode})")
                continue
            if isinstance(event, RetrainProgress):
                self.retrain_progress.emit(event)
            else:
                outcome = event
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)
        clean_partials(self.job.data_dir, self.job.database_url)
        if isinstance(outcome, RetrainOutcome):
            self.retrain_finished.emit(outcome)
        elif isinstance(outcome, RetrainStopped):
            self.retrain_cancelled.emit()
        elif isinstance(outcome, RetrainFailed):
            self.retrain_failed.emit(outcome.message)
        else:  # a child target that is not ours
            self.retrain_failed.emit(f"unexpected message from the retraining process: {outcome!r}")


class ModelLoadWorker(Worker):
    """Loads and warms up a model bundle off the GUI thread; the window swaps it in on success."""

    model_loaded = Signal(object, object)  # Classifier, request tag (what to do once loaded)

    def __init__(
        self, bundle_dir: Path, version: str, tag: Any = None, options: InferenceOptions | None = None
    ) -> None:
        super().__init__()
        self.bundle_dir, self.version, self.tag, self.options = bundle_dir, version, tag, options

    def work(self) -> None:
        self.model_loaded.emit(Classifier.load(self.bundle_dir, self.version, self.options), self.tag)
