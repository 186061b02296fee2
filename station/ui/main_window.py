"""The station window: wiring between workers, the decision desk and the widgets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QColor, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QMessageBox, QToolBar, QVBoxLayout, QWidget

from station.bins import Bins
from station.camera import ENDED, LIVE, LOST, Frame
from station.decisions import DecisionDesk, DecisionRefusedError
from station.events import EventPublisher
from station.handsfree import HandsFree
from station.inference import Prediction
from station.model_watch import POLL_S, ModelWatcher
from station.retraining import LearningTrigger, outcome_line
from station.storage import DecisionRecord, NewDecision
from station.ui.class_buttons import ClassButtons
from station.ui.colors import CONFIRMED_GREEN, CORRECTED_PURPLE, class_color
from station.ui.hands_free import HandsFreeDesk
from station.ui.history_panel import HistoryPanel
from station.ui.images import to_qimage
from station.ui.keys import bind_key
from station.ui.plain_text import tooltip
from station.ui.retrain_dialog import RetrainDialog
from station.ui.review_dialog import ReviewDialog
from station.ui.statistics_view import StatisticsView
from station.ui.versions_dialog import VersionsDialog
from station.ui.video_view import Overlay, VideoView
from station.workers import (
    CaptureWorker,
    HistoryEntry,
    InferenceWorker,
    ModelLoadWorker,
    RetrainWorker,
    StorageWorker,
    Worker,
)
from training.messages import Mode, RetrainOutcome, RetrainProgress

log = logging.getLogger(__name__)

OK_GREEN = CONFIRMED_GREEN
HINT_GREY = QColor("#555555")
WARN_ORANGE = QColor("#e67e22")
DEMO_YELLOW = QColor("#f1c40f")
ERROR_RED = QColor("#c0392b")

REVIEW_LENGTH = 200  # decisions in the review queue
CLOSE_DRAIN_S = 3.0  # on quit, how long writes on their way may take before the operator is asked

KEYS_HELP = ("Space/Enter confirm · 1–{n} set class · Backspace/Ctrl+Z undo · F freeze · M mode · E empty scene · "
             "Esc hold · Ctrl+Q quit")


class MainWindow(QMainWindow):
    def __init__(
        self,
        desk: DecisionDesk,
        capture: CaptureWorker,
        inference: InferenceWorker,
        storage: StorageWorker,
        demo_reason: str | None = None,
        retrain_job: Callable[[Mode], Any] | None = None,
        feed_note: str | None = None,
        auto_retrain_every: int = 0,
        hands: HandsFree | None = None,
        bins: Bins | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        super().__init__()
        self.feed_note = feed_note  # a folder or the demo images: said instead of a camera's "live" and fps
        self.retrain_job = retrain_job  # mode -> the job for the Retrain buttons (None: no retraining)
        self.learning = LearningTrigger(auto_retrain_every if retrain_job is not None else 0)
        self.retrain_worker: RetrainWorker | None = None
        self.retrain_target: Callable[..., None] | None = None  # the child's entry point; None: the real one
        self.retrain_dialog: RetrainDialog | None = None
        self.versions_dialog: VersionsDialog | None = None
        self.statistics_view: StatisticsView | None = None
        self.review_dialog: ReviewDialog | None = None
        self.loaders: list[Worker] = []
        self.desk = desk
        self.capture = capture
        self.inference = inference
        self.storage = storage
        self.demo_reason = demo_reason
        self.frozen = False
        self.storage_down: str | None = None  # why the storage thread stopped, while it is stopped
        self.storage_dialog: QMessageBox | None = None
        self.camera_state = ("opening", "")
        self.decisions_today = 0
        self.last_latency_ms = 0.0
        self.colors = [class_color(name, i) for i, name in enumerate(desk.labels)]
        self.setWindowTitle("Sorting station")
        self.resize(1280, 800)

        self.video = VideoView()
        self.buttons = ClassButtons(desk.labels)
        self.history = HistoryPanel(desk.labels)
        self.history.setFixedWidth(330)
        keys = QLabel(KEYS_HELP.format(n=len(desk.labels)))
        keys.setAlignment(Qt.AlignmentFlag.AlignCenter)
        keys.setStyleSheet("color: #555; font-size: 13px;")

        left = QVBoxLayout()
        left.addWidget(self.video, 1)
        left.addWidget(self.buttons)
        left.addWidget(keys)
        central = QWidget()
        row = QHBoxLayout(central)
        row.addLayout(left, 1)
        row.addWidget(self.history)
        self.setCentralWidget(central)
        self._build_status_bar()
        self.hands_free = HandsFreeDesk(self, hands or HandsFree(), bins or Bins({}, desk.labels), publisher)
        self._build_toolbar()
        self._bind_keys()
        self._connect()
        self._update_banner()

    # ---- construction

    def _build_status_bar(self) -> None:
        self.status_labels: dict[str, QLabel] = {}
        for name in ("learning", "camera", "capture", "inference", "dropped", "model", "today"):
            label = QLabel()
            label.setContentsMargins(8, 0, 8, 0)
            self.statusBar().addPermanentWidget(label)
            self.status_labels[name] = label
        self.status_timer = QTimer(self, interval=500)
        self.status_timer.timeout.connect(self._refresh_status)
        self.status_timer.start()
        self.statistics_timer = QTimer(self, interval=1000, singleShot=True)
        self.statistics_timer.timeout.connect(self._refresh_statistics)
        # A version promoted elsewhere (another station, `station retrain`) is noticed and loaded (ModelWatcher).
        self.model_watcher = ModelWatcher(self.inference.classifier.version)
        self.model_poll_timer = QTimer(self, interval=int(POLL_S * 1000))
        self.model_poll_timer.timeout.connect(lambda: self.storage.read_active_version(self.model_watcher.generation))
        self.model_poll_timer.start()
        self._refresh_status()

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Model")
        toolbar.setMovable(False)
        toolbar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.retrain_action = QAction("Retrain (Ctrl+R)", self, shortcut=QKeySequence("Ctrl+R"))
        self.retrain_action.setToolTip("Learn from the stored decisions in the background")
        self.retrain_action.triggered.connect(lambda: self.start_retrain(Mode.FAST))
        self.full_retrain_action = QAction("Full retrain (Ctrl+Shift+R)", self, shortcut=QKeySequence("Ctrl+Shift+R"))
        self.full_retrain_action.setToolTip("Fine-tune the top of the backbone on the images too (takes minutes)")
        self.full_retrain_action.triggered.connect(lambda: self.start_retrain(Mode.FULL))
        for action in (self.retrain_action, self.full_retrain_action):
            action.setEnabled(self.retrain_job is not None)
        self.versions_action = QAction("Model versions… (Ctrl+M)", self, shortcut=QKeySequence("Ctrl+M"))
        self.versions_action.triggered.connect(self.show_versions)
        self.statistics_action = QAction("Statistics… (Ctrl+I)", self, shortcut=QKeySequence("Ctrl+I"))
        self.statistics_action.setToolTip("Decisions per class, model/operator agreement, confusion matrix, trend")
        self.statistics_action.triggered.connect(self.show_statistics)
        self.review_action = QAction("Review queue… (Ctrl+U)", self, shortcut=QKeySequence("Ctrl+U"))
        self.review_action.setToolTip("Stored decisions, least confident first, to check and relabel")
        self.review_action.triggered.connect(self.show_review)
        toolbar.addAction(self.retrain_action)
        toolbar.addAction(self.full_retrain_action)
        toolbar.addAction(self.versions_action)
        toolbar.addSeparator()
        toolbar.addAction(self.statistics_action)
        toolbar.addAction(self.review_action)
        self.addToolBar(toolbar)

    def _bind_keys(self) -> None:
        def bind(sequence: QKeySequence | QKeySequence.StandardKey | str, slot: Callable[[], object]) -> None:
            bind_key(self, sequence, slot)

        for key in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            bind(QKeySequence(key), self.confirm)
        for index in range(min(len(self.desk.labels), 9)):

            def choose_class(i: int = index) -> None:
                self.choose(i)

            bind(str(index + 1), choose_class)
        bind(QKeySequence(Qt.Key.Key_Backspace), self.undo)
        bind(QKeySequence.StandardKey.Undo, self.undo)
        bind("F", self.toggle_freeze)
        bind(QKeySequence("Ctrl+Q"), self.close)

    def _connect(self) -> None:
        self.capture.frame_captured.connect(self._on_frame_captured)
        self.capture.camera_state_changed.connect(self._on_camera_state_changed)
        self.inference.prediction_ready.connect(self._on_prediction_ready)
        for worker in (self.capture, self.inference):
            worker.errored.connect(self._on_worker_errored)
        self._connect_storage()
        self.buttons.label_chosen.connect(self.choose)
        # Through self.storage at call time: a restarted storage worker replaces it.
        self.history.relabel_requested.connect(lambda i, label: self.storage.relabel(i, label))
        self.history.delete_requested.connect(lambda i: self.storage.delete(i))

    def _connect_storage(self) -> None:
        self.storage.decision_saved.connect(self._on_decision_saved)
        self.storage.decision_saved.connect(self.hands_free.on_decision_saved)
        self.storage.decision_removed.connect(self.hands_free.on_decision_removed)
        self.storage.decision_removed.connect(self._on_decision_removed)
        self.storage.decision_relabelled.connect(self._on_decision_relabelled)
        self.storage.history_changed.connect(self._on_history_changed)
        self.storage.storage_retrying.connect(self._on_storage_retrying)
        self.storage.storage_recovered.connect(lambda: self.video.set_notice(None))
        self.storage.storage_failed.connect(self._on_storage_failed)
        self.storage.version_activated.connect(self._on_version_activated)
        self.storage.active_version_read.connect(self._on_active_version_read)
        self.storage.versions_listed.connect(self._on_versions_listed)
        self.storage.statistics_ready.connect(self._on_statistics_ready)
        self.storage.review_ready.connect(self._on_review_ready)
        self.storage.errored.connect(self._on_storage_stopped)

    # ---- operator actions

    def confirm(self) -> None:
        self._decide(None)

    def choose(self, index: int) -> None:
        self._decide(index)

    def _decide(self, index: int | None) -> None:
        if self._refuse_while_storage_down():
            return
        try:
            decision = self.hands_free.decided(self.desk.decide(index))
        except DecisionRefusedError as hint:
            self.video.flash(str(hint), HINT_GREY)
            return
        self.store_decision(decision)

    def store_decision(self, decision: NewDecision) -> None:
        self.storage.save(decision)
        self.capture.advance()  # folder with interval 0: the next image only after a decision
        self.video.flash(f"Saving {decision.operator_label}…", HINT_GREY, 3000)

    def undo(self) -> None:
        if not self._refuse_while_storage_down():
            self.storage.undo_last()

    def _refuse_while_storage_down(self) -> bool:
        """No key press is taken as saved while no storage thread runs: it would only sit in a dead queue."""
        if self.storage_down is None:
            return False
        self.video.flash(f"NOT saved — storage stopped: {self.storage_down}", ERROR_RED, 4000)
        if self.storage_dialog is not None:
            self.storage_dialog.open()  # the way back: restart storage
        return True

    def toggle_freeze(self) -> None:
        self.frozen = not self.frozen
        self.video.set_frozen(self.frozen)
        if not self.frozen:
            self.video.set_overlay(self.make_overlay(self.desk.shown))
        elif self.desk.shown is not None:  # hold the very frame the prediction was made from
            self.video.set_image(to_qimage(self.desk.shown.frame.image))

    # ---- worker events

    def _on_frame_captured(self, frame: Frame) -> None:
        if not self.frozen:
            self.video.set_image(to_qimage(frame.image))

    def _on_prediction_ready(self, prediction: Prediction) -> None:
        self.last_latency_ms = prediction.latency_ms
        if self.frozen or self.hands_free.take_prediction(prediction):
            return
        self.desk.show(prediction)
        self.video.set_overlay(self.make_overlay(prediction))
        self.buttons.mark_predicted(prediction.best_index)

    def make_overlay(self, prediction: Prediction | None) -> Overlay | None:
        if prediction is None:
            return None
        index = {name: i for i, name in enumerate(prediction.labels)}
        return Overlay(
            label=prediction.label,
            confidence=prediction.confidence,
            color=self.colors[prediction.best_index],
            top=[(name, p, self.colors[index[name]]) for name, p in prediction.top(3)],
            uncertain=self.desk.is_uncertain(prediction),
            latency_ms=prediction.latency_ms,
        )

    def _on_camera_state_changed(self, state: str, detail: str) -> None:
        self.camera_state = (state, detail)
        self._update_banner()
        self._refresh_status()

    def _update_banner(self) -> None:
        state, detail = self.camera_state
        if state == LOST:
            self.video.set_banner(f"Camera lost: {detail} — reconnecting…")
        elif state == ENDED:
            self.video.set_banner(f"End of the folder: {detail}", DEMO_YELLOW)
        elif self.demo_reason:
            self.video.set_banner(f"DEMO: bundled images, because {self.demo_reason}", DEMO_YELLOW)
        else:
            self.video.set_banner(None)

    def _on_decision_saved(self, record: DecisionRecord) -> None:
        if record.kind in ("confirmed", "auto"):
            self.video.flash(f"✔ {record.kind.capitalize()} {record.operator_label}  (#{record.id})", CONFIRMED_GREEN)
        else:
            self.video.flash(f"✎ Corrected to {record.operator_label}  (#{record.id})", CORRECTED_PURPLE)
        self.video.set_notice(None)
        self._statistics_changed()
        self.learning.decision_saved(record.kind)
        self._learn_if_due()

    def _on_decision_removed(self, record: DecisionRecord) -> None:
        self.desk.undone()
        self.video.flash(f"Removed #{record.id} ({record.operator_label})", WARN_ORANGE)
        if self.review_dialog is not None:
            self.review_dialog.remove(record)
        self._statistics_changed()

    def _on_decision_relabelled(self, record: DecisionRecord) -> None:
        self.video.flash(f"#{record.id} relabelled as {record.operator_label}", OK_GREEN)
        if self.review_dialog is not None:
            self.review_dialog.show_relabelled(record)
        self._statistics_changed()

    def _on_history_changed(self, entries: list[HistoryEntry], today: int) -> None:
        self.history.show_entries(entries)
        self.decisions_today = today
        self._refresh_status()

    def _on_storage_retrying(self, message: str) -> None:
        self.video.set_notice(f"Not saved yet: {message}")

    def _on_storage_failed(self, message: str) -> None:
        self.video.flash(message, WARN_ORANGE, 4000)

    def _on_storage_stopped(self, message: str) -> None:
        """The storage thread ended on an error: say so at once, refuse decisions, offer a restart."""
        self.storage_down = message
        self.video.set_notice(f"Decisions are NOT being saved — {message}", ERROR_RED)
        self.statusBar().showMessage(message)
        box = QMessageBox(QMessageBox.Icon.Critical, "Decisions are not being saved",
                          f"Storing decisions stopped:\n{message}\n\nNo decision is taken until storage "
                          "runs again. Fix the cause (see the message), then restart storage.",
                          QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Close, self)
        box.button(QMessageBox.StandardButton.Retry).setText("Restart storage")
        box.button(QMessageBox.StandardButton.Retry).clicked.connect(self.restart_storage)
        box.setTextFormat(Qt.TextFormat.PlainText)
        self.storage_dialog = box
        box.open()  # window-modal, never blocks the event loop

    def restart_storage(self) -> None:
        """A new storage worker on the same folder; it takes over the writes the stopped one never ran."""
        old = self.storage
        if old.isRunning():
            return
        self.storage = StorageWorker(old.data_dir, old.station, old.busy_timeout_ms, old.database_url)
        self.storage.adopt(old)
        self.storage_down = None
        self.video.set_notice(None)
        self._connect_storage()
        self.storage.start()

    def _on_worker_errored(self, message: str) -> None:
        self.video.set_notice(f"Error: {message}")
        self.statusBar().showMessage(message)

    # ---- retraining and model versions

    def start_retrain(self, mode: Mode = Mode.FAST, background: bool = False) -> None:
        """Retrain in a child process; ``background``: no dialog until asked for, progress in the status bar."""
        if self.retrain_job is None:
            return
        if self.retrain_worker is not None:
            self.video.flash("A retraining is already running", HINT_GREY)
            if self.retrain_dialog is not None:
                self.retrain_dialog.show()
            return
        worker = RetrainWorker(self.retrain_job(mode), self.retrain_target)
        dialog = RetrainDialog(self)
        worker.retrain_progress.connect(dialog.show_progress)
        worker.retrain_progress.connect(self._on_retrain_progress)
        worker.retrain_finished.connect(self._on_retrain_finished)
        worker.retrain_failed.connect(dialog.show_failure)
        worker.retrain_failed.connect(lambda message: self._show_learning(f"learning failed: {message}", "#c0392b"))
        worker.retrain_cancelled.connect(lambda: self._show_learning("learning cancelled", "#555"))
        worker.retrain_cancelled.connect(dialog.show_cancelled)
        worker.errored.connect(dialog.show_failure)
        worker.finished.connect(self._on_retrain_worker_finished)
        dialog.cancel_requested.connect(worker.cancel)
        dialog.promote_requested.connect(lambda r: self.use_model(Path(r.candidate), r.version, activate=True))
        dialog.discard_requested.connect(lambda r: self.storage.discard_version(r.version))
        self.retrain_worker, self.retrain_dialog = worker, dialog
        self.learning.started()
        self._show_learning(f"learning… ({mode})", "#2980b9")
        if not background:
            dialog.show()
        worker.start()

    def _on_retrain_progress(self, event: RetrainProgress) -> None:
        self._show_learning(f"learning… {event.phase} {event.done}/{event.total}", "#2980b9")

    def _on_retrain_finished(self, outcome: RetrainOutcome) -> None:
        if self.retrain_dialog is not None:
            self.retrain_dialog.show_result(outcome)
        self._show_learning(f"learned: {outcome_line(outcome)}", "#27ae60" if outcome.promoted else "#555")
        if outcome.promoted:  # already active in the database: load it and swap
            self.use_model(Path(outcome.candidate), outcome.version, activate=False)

    def _on_retrain_worker_finished(self) -> None:
        if self.retrain_worker is not None:
            self.retrain_worker.wait()  # "finished" comes just before the thread ends: never drop a running QThread
        self.retrain_worker = None
        self._learn_if_due()  # decisions made meanwhile may already call for the next one

    def _learn_if_due(self) -> None:
        if self.learning.due(running=self.retrain_worker is not None):
            self.start_retrain(Mode.FAST, background=True)

    def _show_learning(self, text: str, color: str) -> None:
        label = self.status_labels["learning"]
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setStyleSheet(f"color: {color}")
        label.setText(text)
        label.setToolTip(text)

    def _on_loader_finished(self, loader: Worker) -> None:
        loader.wait()  # as above: Qt aborts the process when a QThread object goes away while it still runs
        if loader in self.loaders:
            self.loaders.remove(loader)

    def use_model(self, bundle_dir: Path, version: str, activate: bool) -> None:
        """Load and warm up off the GUI thread, then swap in one step; the old model stays on failure."""
        self.model_watcher.loading(version)
        loader = ModelLoadWorker(bundle_dir, version, tag=activate, options=self.inference.classifier.options)
        loader.model_loaded.connect(self._on_model_loaded)
        loader.errored.connect(lambda message: self._on_model_load_failed(version, message))
        loader.finished.connect(lambda: self._on_loader_finished(loader))
        self.loaders.append(loader)
        self.video.flash(f"Loading model {version}…", HINT_GREY, 5000)
        loader.start()

    def _on_model_loaded(self, classifier: Any, activate: bool) -> None:
        old = self.inference.swap_classifier(classifier)
        self.model_watcher.now_running(classifier.version)
        if activate:
            self.storage.activate_version(classifier.version)
        self.video.flash(f"Now using model {classifier.version} (was {old.version})", OK_GREEN, 3000)
        self._refresh_status()

    def _on_model_load_failed(self, version: str, message: str) -> None:
        self.video.flash(f"Model {version} not used: {message}", WARN_ORANGE, 6000)

    def _on_active_version_read(self, record: Any, generation: int) -> None:
        promoted = self.model_watcher.seen(generation, record)
        if promoted is not None:  # loaded and swapped as a promotion made here; on failure the old model stays
            self.statusBar().showMessage(f"model {promoted.version} was promoted elsewhere: loading it", 5000)
            self.use_model(self.storage.version_dir(promoted), promoted.version, activate=False)

    def _on_version_activated(self, record: Any) -> None:
        self.statusBar().showMessage(f"model {record.version} is now the active version", 5000)

    def show_versions(self) -> None:
        if self.versions_dialog is None:
            self.versions_dialog = VersionsDialog(self, folder_of=self.storage.version_dir)
            self.versions_dialog.use_requested.connect(
                lambda record: self.use_model(self.storage.version_dir(record), record.version, activate=True))
        self.storage.list_versions()
        self.versions_dialog.show()

    def _on_versions_listed(self, records: list[Any]) -> None:
        if self.versions_dialog is not None:
            self.versions_dialog.show_versions(records)
            self.versions_dialog.select(self.inference.classifier.version)

    # ---- statistics and review

    def show_statistics(self) -> None:
        if self.statistics_view is None:
            self.statistics_view = StatisticsView(self)
            self.statistics_view.refresh_requested.connect(
                lambda wanted: self.storage.request_statistics(wanted, self.inference.classifier.labels))
        self.statistics_view.show()
        self.statistics_view.raise_()
        self.statistics_view.refresh()

    def _statistics_changed(self) -> None:
        # Many decisions in a row ask once: the timer restarts on each and fires a second after the last.
        if self.statistics_view is not None and self.statistics_view.isVisible():
            self.statistics_timer.start()

    def _on_statistics_ready(self, stats: Any, versions: list[str], stations: list[str]) -> None:
        if self.statistics_view is not None:
            self.statistics_view.show_statistics(stats, versions, stations)

    def show_review(self) -> None:
        if self.review_dialog is None:
            self.review_dialog = ReviewDialog(self.desk.labels, self.desk.threshold, self)
            self.review_dialog.relabel_requested.connect(lambda i, label: self.storage.relabel(i, label))
            self.review_dialog.reload_requested.connect(lambda: self.storage.request_review(REVIEW_LENGTH))
        self.review_dialog.show()
        self.review_dialog.raise_()
        self.storage.request_review(REVIEW_LENGTH)

    def _on_review_ready(self, entries: list[HistoryEntry]) -> None:
        if self.review_dialog is not None:
            self.review_dialog.show_entries(entries)

    # ---- status

    def _refresh_statistics(self) -> None:
        if self.statistics_view:
            self.statistics_view.refresh()

    def _refresh_status(self) -> None:
        state, detail = self.camera_state
        text = {LIVE: "● live", LOST: "● lost"}.get(state, f"● {state}")
        color = {LIVE: "#27ae60", LOST: "#c0392b"}.get(state, "#e67e22")
        if state == LIVE and self.feed_note:  # a slideshow is not a live camera, and its fps says nothing
            text, color = f"● {self.feed_note}", "#2980b9"
        labels = self.status_labels
        labels["camera"].setText(f"<span style='color:{color}'>{text}</span>")
        labels["camera"].setToolTip(tooltip(detail))
        labels["capture"].setVisible(not self.feed_note)
        labels["capture"].setText(f"capture {self.capture.loop.fps:.1f} fps")
        labels["inference"].setText(f"inference {self.last_latency_ms:.0f} ms ({self.inference.classifier.backend})")
        labels["dropped"].setText(f"dropped {self.capture.slot.dropped}")
        labels["model"].setText(f"model {self.inference.classifier.version}")
        labels["today"].setText(f"today {self.decisions_today} ({date.today():%d %b})")

    # ---- shutdown

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        # A write on its way (the last key press) is done in milliseconds: wait for it before asking anything.
        pending = 0 if self.storage_down is None and self.storage.drained(CLOSE_DRAIN_S) else self.storage.pending
        if pending and self.storage_down is not None:  # nothing will save them: never wait for ever
            answer = QMessageBox.question(
                self, "Decisions not saved",
                f"{pending} decision(s) were NOT saved: storage stopped ({self.storage_down}).\n"
                "Restart storage and save them (recommended), or quit and lose them?",
                QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Discard,
                QMessageBox.StandardButton.Retry,
            )
            if answer != QMessageBox.StandardButton.Discard:
                self.restart_storage()
                event.ignore()
                return
        elif pending:
            answer = QMessageBox.question(
                self, "Decisions not saved yet",
                f"{pending} decision(s) are still waiting to be saved.\n"
                "Wait for them (recommended), or quit and lose them?",
                QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Discard,
                QMessageBox.StandardButton.Retry,
            )
            if answer != QMessageBox.StandardButton.Discard:
                event.ignore()
                return
        self.status_timer.stop()
        self.statistics_timer.stop()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker: capture first, then inference, storage last (it drains its queue)."""
        self.model_poll_timer.stop()
        if self.retrain_worker is not None:
            self.retrain_worker.cancel()
            self.retrain_worker.stop(30_000)
        for loader in list(self.loaders):
            loader.stop()
        self.capture.stop()
        self.capture.slot.close()
        self.inference.stop()
        self.storage.stop()
        log.info("storage stopped; %d write(s) not done", self.storage.pending)
        self.hands_free.close()  # after storage: the last decisions' events are on their way
