"""The station's models: retraining (by click, or in the background after every N decisions; one at a time, in
a child process), loading a model off the GUI thread and swapping it in, recording it as the active version, a
version promoted elsewhere (polled, ``station.model_watch``), and the model versions dialog. The window only shows
what the signals say."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from station import storage_jobs as jobs
from station.inference import Classifier
from station.model_watch import POLL_S, ModelWatcher
from station.retraining import LearningTrigger, outcome_line
from station.storage import DecisionRecord, VersionRecord
from station.ui.colors import HINT_GREY, OK_GREEN, WARN_ORANGE
from station.ui.retrain_dialog import RetrainDialog
from station.ui.versions_dialog import VersionsDialog
from station.workers import InferenceWorker, ModelLoadWorker, RetrainWorker, StorageWorker
from training.messages import Mode, RetrainOutcome, RetrainProgress

LEARNING_BLUE, LEARNED_GREEN, FAILED_RED, QUIET_GREY = "#2980b9", "#27ae60", "#c0392b", "#555"


class ModelManager(QObject):
    """Owned by the window; its toolbar shows ``actions``, its status bar and video what the signals say."""

    model_swapped = Signal(str, str)  # the version now classifying, the one before it
    version_activated = Signal(object)  # VersionRecord: the database now records it as the running model
    promotion_seen = Signal(object)  # VersionRecord made active elsewhere (another station, `station retrain`)
    retrain_finished = Signal(object)  # RetrainOutcome, after a promoted candidate was sent to be swapped in
    learning_changed = Signal(str, str)  # what the status bar says about learning: text, colour
    message = Signal(str, object, int)  # for the operator, on the video: text, QColor, milliseconds

    def __init__(
        self,
        window: QWidget,
        inference: InferenceWorker,
        storage: Callable[[], StorageWorker],
        retrain_job: Callable[[Mode], Any] | None = None,
        auto_retrain_every: int = 0,
    ) -> None:
        super().__init__(window)
        self.window = window  # the dialogs' parent
        self.inference = inference
        self.storage = storage  # the storage worker running now (a restart replaces it)
        self.retrain_job = retrain_job  # mode -> the job for a retraining (None: no retraining)
        self.learning = LearningTrigger(auto_retrain_every if retrain_job is not None else 0)
        self.retrain_target: Callable[..., None] | None = None  # the child's entry point; None: the real one
        self.retrain_worker: RetrainWorker | None = None
        self.retrain_dialog: RetrainDialog | None = None
        self.versions_dialog: VersionsDialog | None = None
        self.loaders: list[ModelLoadWorker] = []
        self.retrain_action = self._action("Retrain (Ctrl+R)", "Ctrl+R", lambda: self.start_retrain(Mode.FAST),
                                           "Learn from the stored decisions in the background")
        self.full_retrain_action = self._action(
            "Full retrain (Ctrl+Shift+R)", "Ctrl+Shift+R", lambda: self.start_retrain(Mode.FULL),
            "Fine-tune the top of the backbone on the images too (takes minutes)")
        for action in (self.retrain_action, self.full_retrain_action):
            action.setEnabled(retrain_job is not None)
        self.versions_action = self._action("Model versions… (Ctrl+M)", "Ctrl+M", self.show_versions)
        self.actions = [self.retrain_action, self.full_retrain_action, self.versions_action]
        self.watcher = ModelWatcher(inference.classifier.version)
        self._asked = threading.Event()  # an active-version question waits in the storage queue (see the job)
        self.poll_timer = QTimer(self, interval=int(POLL_S * 1000))
        self.poll_timer.timeout.connect(self.poll_active_version)
        self.poll_timer.start()

    def _action(self, text: str, key: str, slot: Callable[[], None], tip: str | None = None) -> QAction:
        action = QAction(text, self.window, shortcut=QKeySequence(key))
        if tip is not None:
            action.setToolTip(tip)
        action.triggered.connect(slot)
        return action

    # ---- retraining

    def start_retrain(self, mode: Mode = Mode.FAST, background: bool = False) -> None:
        """Retrain in a child process; ``background``: no dialog until asked for, progress in the status bar."""
        if self.retrain_job is None:
            return
        if self.retrain_worker is not None:
            self.message.emit("A retraining is already running", HINT_GREY, 1500)
            if self.retrain_dialog is not None:
                self.retrain_dialog.show()
            return
        worker = RetrainWorker(self.retrain_job(mode), self.retrain_target)
        dialog = RetrainDialog(self.window)
        worker.retrain_progress.connect(dialog.show_progress)
        worker.retrain_progress.connect(self._on_retrain_progress)
        worker.retrain_finished.connect(self._on_retrain_finished)
        worker.retrain_failed.connect(dialog.show_failure)
        worker.retrain_failed.connect(lambda message: self._show_learning(f"learning failed: {message}", FAILED_RED))
        worker.retrain_cancelled.connect(lambda: self._show_learning("learning cancelled", QUIET_GREY))
        worker.retrain_cancelled.connect(dialog.show_cancelled)
        worker.errored.connect(dialog.show_failure)
        worker.finished.connect(self._on_retrain_worker_finished)
        dialog.cancel_requested.connect(worker.cancel)
        dialog.promote_requested.connect(lambda r: self.use_model(Path(r.candidate), r.version, activate=True))
        dialog.discard_requested.connect(
            lambda r: self.storage().submit(jobs.discard(r.version), self._on_version_changed))
        self.retrain_worker, self.retrain_dialog = worker, dialog
        self.learning.started()
        self._show_learning(f"learning… ({mode})", LEARNING_BLUE)
        if not background:
            dialog.show()
        worker.start()

    def on_decision_saved(self, record: DecisionRecord) -> None:
        """Count the decision towards the next background retraining; start it when it is due."""
        self.learning.decision_saved(record.kind)
        self._learn_if_due()

    def _learn_if_due(self) -> None:
        if self.learning.due(running=self.retrain_worker is not None):
            self.start_retrain(Mode.FAST, background=True)

    def _on_retrain_progress(self, event: RetrainProgress) -> None:
        self._show_learning(f"learning… {event.phase} {event.done}/{event.total}", LEARNING_BLUE)

    def _on_retrain_finished(self, outcome: RetrainOutcome) -> None:
        if self.retrain_dialog is not None:
            self.retrain_dialog.show_result(outcome)
        self._show_learning(f"learned: {outcome_line(outcome)}", LEARNED_GREEN if outcome.promoted else QUIET_GREY)
        if outcome.promoted:  # already active in the database: load it and swap
            self.use_model(Path(outcome.candidate), outcome.version, activate=False)
        self.retrain_finished.emit(outcome)

    def _on_retrain_worker_finished(self) -> None:
        if self.retrain_worker is not None:
            self.retrain_worker.wait()  # "finished" comes just before the thread ends: never drop a running QThread
        self.retrain_worker = None
        self._learn_if_due()  # decisions made meanwhile may already call for the next one

    def _show_learning(self, text: str, color: str) -> None:
        self.learning_changed.emit(text, color)

    # ---- loading and swapping

    def use_model(self, bundle_dir: Path, version: str, activate: bool) -> None:
        """Load and warm up off the GUI thread, then swap in one step; the old model stays on failure.
        ``activate``: record it as the active version once it runs."""
        self.watcher.loading(version)  # a poll must not start loading it again meanwhile
        loader = ModelLoadWorker(bundle_dir, version, tag=activate, options=self.inference.classifier.options)
        loader.model_loaded.connect(self._on_model_loaded)
        loader.errored.connect(lambda message: self.message.emit(f"Model {version} not used: {message}",
                                                                 WARN_ORANGE, 6000))
        loader.finished.connect(lambda: self._on_loader_finished(loader))
        self.loaders.append(loader)
        self.message.emit(f"Loading model {version}…", HINT_GREY, 5000)
        loader.start()

    def _on_loader_finished(self, loader: ModelLoadWorker) -> None:
        loader.wait()  # as above: Qt aborts the process when a QThread object goes away while it still runs
        if loader in self.loaders:
            self.loaders.remove(loader)

    def _on_model_loaded(self, classifier: Classifier, activate: bool) -> None:
        old = self.inference.swap_classifier(classifier)
        self.watcher.now_running(classifier.version)
        if activate:
            self.storage().submit(jobs.activate(classifier.version), self._on_version_activated)
        self.message.emit(f"Now using model {classifier.version} (was {old.version})", OK_GREEN, 3000)
        self.model_swapped.emit(classifier.version, old.version)

    def _on_version_changed(self, change: jobs.VersionChange) -> None:
        self._on_versions_listed(change.versions)  # as that change left them

    def _on_version_activated(self, change: jobs.VersionChange) -> None:
        self._on_version_changed(change)
        self.version_activated.emit(change.changed)

    # ---- versions promoted elsewhere

    def poll_active_version(self) -> None:
        """Ask the storage thread which version is active, unless a question is already waiting there."""
        if self._asked.is_set():
            return
        self._asked.set()
        done = partial(self._on_active_version_read, self.watcher.generation)
        self.storage().submit(jobs.active_version(self._asked), done, write=False)

    def _on_active_version_read(self, generation: int, record: VersionRecord | None) -> None:
        if not self.poll_timer.isActive():  # shut down: an answer the storage thread sent as it drained loads nothing
            return
        promoted = self.watcher.seen(generation, record)
        if promoted is not None:  # loaded and swapped as a promotion made here; on failure the old model stays
            self.promotion_seen.emit(promoted)
            self.use_model(self.storage().version_dir(promoted), promoted.version, activate=False)

    # ---- the versions dialog

    def show_versions(self) -> None:
        if self.versions_dialog is None:
            folder_of = self.storage().version_dir
            self.versions_dialog = VersionsDialog(self.window, folder_of=folder_of)
            self.versions_dialog.use_requested.connect(
                lambda record: self.use_model(folder_of(record), record.version, activate=True))
        self.list_versions()
        self.versions_dialog.show()

    def list_versions(self) -> None:
        self.storage().submit(jobs.list_versions, self._on_versions_listed, write=False)

    def _on_versions_listed(self, records: list[VersionRecord]) -> None:
        if self.versions_dialog is not None:
            self.versions_dialog.show_versions(records)
            self.versions_dialog.select(self.inference.classifier.version)

    def shutdown(self) -> None:
        """Stop polling, cancel a running retraining (its child process ends too) and stop the loaders."""
        self.poll_timer.stop()
        if self.retrain_worker is not None:
            self.retrain_worker.cancel()
            self.retrain_worker.stop(30_000)
        for loader in list(self.loaders):
            loader.stop()
