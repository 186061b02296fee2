"""QThread workers: capture, inference and storage. Widgets are never touched from here.

Every worker shares one lifecycle (``Worker``): Qt's ``started``/``finished`` plus ``errored``
for an exception that ended it, and a cooperative ``stop()`` (never ``terminate()``).
Only plain values cross threads: frames, predictions, ``DecisionRecord`` dataclasses, and the storage jobs'
functions (built on the GUI thread from plain values, run in the storage thread; see ``station.storage_jobs``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QThread, Signal, Slot

from station.arrival import SETTLED_EVENT, ArrivalDetector, ArrivalEvent, PhotoArrivals
from station.camera import CaptureLoop, Frame, FrameSource, LatestFrameSlot
from station.inference import Classifier, InferenceOptions
from station.rate_meter import RateMeter
from station.storage import Storage, StorageError, VersionRecord, is_corrupt, is_transient, version_folder
from station.storage_jobs import Thumbnails
from training.messages import RetrainFailed, RetrainOutcome, RetrainProgress, RetrainStopped

log = logging.getLogger(__name__)

T = TypeVar("T")
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


def item_frame(frame: Frame, settled: ArrivalEvent) -> Frame:
    """The frame an item is classified and stored from: its square when the detector cut one out."""
    if settled.frame is None or settled.frame is frame.image:
        return frame
    return replace(frame, image=settled.frame)


class CaptureWorker(Worker):
    """Runs the capture loop; the newest frame goes to the inference slot and to the display.

    With an arrival ``detector`` every frame also goes through it here, in the capture thread (no Qt in it);
    ``arrival_seen`` carries its events and view. In the hands-free modes (``classify_live`` False) only the
    settled frames of items are classified, pinned in the slot so that none is dropped.
    """

    frame_captured = Signal(object)  # Frame
    camera_state_changed = Signal(str, str)  # state, detail
    # Frame, list[ArrivalEvent], ArrivalView, and the settled item's Frame (its square) or None
    arrival_seen = Signal(object, object, object, object)

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
        item: Frame | None = None
        if self.detector is not None:
            if self._recalibrate.is_set():
                self._recalibrate.clear()
                self.detector.calibrate()
            events = self.detector.update(frame.image, frame.timestamp)
            item = next((item_frame(frame, e) for e in events if e.kind == SETTLED_EVENT), None)
            # Before the frame reaches the slot: the window learns of the item before of its prediction.
            self.arrival_seen.emit(frame, events, self.detector.view, item)
        if self.classify_live:
            self.slot.put(frame)
        elif item is not None:
            self.slot.put(item, pin=True)
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
        self.rate = RateMeter()  # predictions per second, measured as the capture rate is

    @property
    def classifier(self) -> Classifier:
        with self._lock:
            return self._classifier

    @property
    def fps(self) -> float:
        """Predictions per second over the last seconds (0 while no frame comes)."""
        return self.rate.rate()

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
                prediction = self.classifier.classify(frame)
                self.rate.tick()
                self.prediction_ready.emit(prediction)
        finally:
            self.classifier.close()  # a background conversion ends with the station

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


@dataclass(frozen=True, eq=False)
class StorageJob(Generic[T]):
    fn: Callable[[Storage], T]  # runs in the storage thread
    done: Callable[[T], None]  # gets fn's result on the GUI thread
    refresh: bool  # the history is read again after it
    write: bool  # counted as pending until done: quitting waits for it or asks


class _Failed:
    """What a job that could not be done returns instead of a result (already said with ``storage_failed``)."""


_FAILED = _Failed()


class StorageWorker(Worker):
    """Owns the station's ``Storage`` (one session per thread) and runs every job in order.

    ``submit(fn, done)`` runs ``fn(storage)`` in this thread and calls ``done(result)`` on the GUI thread; the
    station's jobs are in ``station.storage_jobs``. A job that fails for a passing reason (locked database, full
    disk, unwritable folder) stays first in line and is retried with backoff: the UI says "saved" only in
    ``done``. A job that cannot succeed is dropped and said (``storage_failed``); a corrupt database ends the
    thread (``errored``).
    """

    job_done = Signal(object, object)  # done, result: emitted here, delivered on the GUI thread by _deliver
    history_changed = Signal(object, int)  # list[HistoryEntry] newest first, decisions today
    storage_retrying = Signal(str)  # message; the job is still pending
    storage_recovered = Signal()
    storage_failed = Signal(str)  # a job that cannot succeed (dropped, nothing saved)

    BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)

    def __init__(self, data_dir: Path, station: str, busy_timeout_ms: int = 2000, database_url: str = "") -> None:
        super().__init__()
        self.data_dir = data_dir
        self.station = station
        self.busy_timeout_ms = busy_timeout_ms
        self.database_url = database_url  # "" = station.db in data_dir
        self.thumbnails = Thumbnails()  # for the jobs that change the history (used in this thread only)
        self._jobs: queue.Queue[StorageJob[Any]] = queue.Queue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        # This object lives in the GUI thread: Qt queues the thread's job_done to it, so done runs there.
        self.job_done.connect(self._deliver)

    def submit(
        self, fn: Callable[[Storage], T], done: Callable[[T], None], *, refresh: bool = False, write: bool = True
    ) -> None:
        """Run ``fn(storage)`` after the jobs already queued; ``done(result)`` on the GUI thread once it succeeded.

        ``refresh``: read the history afterwards (``history_changed``). ``write=False`` for reads: quitting
        never waits or asks for them.
        """
        self._enqueue(StorageJob(fn, done, refresh, write))

    @Slot(object, object)
    def _deliver(self, done: Callable[[Any], None], result: Any) -> None:
        done(result)

    @property
    def pending(self) -> int:
        """Writes submitted but not yet done (succeeded or failed); reads are not counted."""
        with self._pending_lock:
            return self._pending

    def _enqueue(self, job: StorageJob[Any]) -> None:
        if job.write:
            with self._pending_lock:
                self._pending += 1
        self._jobs.put(job)

    def _finished(self, job: StorageJob[Any]) -> None:
        if job.write:
            with self._pending_lock:
                self._pending -= 1

    def drained(self, timeout_s: float) -> bool:
        """Whether every submitted write is done, waiting up to ``timeout_s`` for the last ones."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.pending

    def version_dir(self, record: VersionRecord) -> Path:
        """A version's bundle folder, for the GUI thread (which holds no ``Storage``)."""
        return version_folder(self.data_dir, record)

    def adopt(self, dead: StorageWorker) -> None:
        """Take over the jobs a stopped worker never ran, in order, and its thumbnails (restart after a failure)."""
        self.thumbnails = dead.thumbnails  # its queued saves fill that cache
        while True:
            try:
                job = dead._jobs.get_nowait()
            except queue.Empty:
                break
            dead._finished(job)
            self._enqueue(job)

    def work(self) -> None:
        storage = self._open()
        if storage is None:
            return
        try:
            self._safely(storage, "read the history", self._emit_history)
            # On stop, finish the queued jobs first: a decision on its way is never dropped.
            while not (self.stopping() and self._jobs.empty()):
                try:
                    job = self._jobs.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._run(storage, job)
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

    def _run(self, storage: Storage, job: StorageJob[Any]) -> None:
        try:
            result = self._retrying(lambda: job.fn(storage))
            if result is _FAILED:
                return
            self.job_done.emit(job.done, result)
            if job.refresh:
                # The job is done: a failing history read must not send it back to the retry loop (twice done).
                self._safely(storage, "read the history", self._emit_history)
        finally:
            self._finished(job)

    def _retrying(self, attempt_once: Callable[[], T]) -> T | _Failed:
        """The retry policy of every job: passing failures are retried with backoff, others are said and dropped."""
        attempt = 0
        while True:
            try:
                result = attempt_once()
            except Exception as exc:
                if is_corrupt(exc):  # never keep writing to a damaged database: the worker ends, visibly
                    self.storage_failed.emit(f"{exc} — this write was NOT saved")
                    raise
                if not retryable(exc):  # a bad request or a bug: this job fails, the thread goes on
                    if not isinstance(exc, StorageError | ValueError):
                        log.exception("storage job failed")
                    self.storage_failed.emit(str(exc))
                    return _FAILED
                if self._stop.is_set() and attempt > 0:  # quitting: one retry without waiting, then give up
                    self.storage_failed.emit(f"{exc} — giving up at shutdown; this write was NOT saved")
                    return _FAILED
                self._wait_retry(str(exc), attempt)
                attempt += 1
            else:
                if attempt:
                    self.storage_recovered.emit()
                return result

    def _wait_retry(self, message: str, attempt: int) -> None:
        delay = self.BACKOFF[min(attempt, len(self.BACKOFF) - 1)]
        self.storage_retrying.emit(f"{message} — retrying in {delay:g} s")
        self._stop.wait(delay)  # a stop ends the wait at once

    def _emit_history(self, storage: Storage) -> None:
        # Beside a shared database the other stations' decisions are not this operator's to see, relabel or delete
        # (and this list is refreshed by this station's writes only); alone, the data folder's are, imports too.
        station = self.station if storage.is_shared else None
        self.history_changed.emit(self.thumbnails.history(storage, station=station),
                                  storage.count_today(station=station))


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
