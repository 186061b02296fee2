"""The station window: wiring between workers, the decision desk and the widgets.

Its parts live beside it: ``ModelManager`` (retraining, model swap, versions), ``Insights`` (statistics, review
queue), ``StorageGuard`` (storage trouble, quitting with writes on their way), ``HandsFreeDesk`` (arrivals,
modes, decision events) and ``StationStatusBar``. Writes go to the storage thread as jobs; each one done comes
back as a ``decision_*`` signal that the parts follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QToolBar, QVBoxLayout, QWidget

from station import storage_jobs as jobs
from station.bins import Bins
from station.camera import ENDED, LOST, Frame
from station.decisions import DecisionDesk, DecisionRefusedError
from station.events import EventPublisher
from station.handsfree import HandsFree
from station.inference import Prediction
from station.storage import DecisionRecord, NewDecision
from station.ui.class_buttons import ClassButtons
from station.ui.colors import (
    CONFIRMED_GREEN,
    CORRECTED_PURPLE,
    DEMO_YELLOW,
    HINT_GREY,
    OK_GREEN,
    WARN_ORANGE,
    class_color,
)
from station.ui.hands_free import HandsFreeDesk
from station.ui.history_panel import HistoryPanel
from station.ui.images import to_qimage
from station.ui.insights import Insights
from station.ui.keys import bind_key, bind_label_keys
from station.ui.model_manager import ModelManager
from station.ui.screen_fit import fitting_size
from station.ui.status_bar import StationStatusBar
from station.ui.storage_guard import StorageGuard
from station.ui.video_view import Overlay, VideoView
from station.workers import CaptureWorker, InferenceWorker, StorageWorker
from training.messages import Mode

log = logging.getLogger(__name__)

KEYS_HELP = ("Space/Enter confirm · 1–{n} set class · Backspace/Ctrl+Z undo · F freeze · M mode · E empty scene · "
             "Esc hold · Ctrl+Q quit")


class MainWindow(QMainWindow):
    # A storage job done (delivered on this thread): what the panels, hands-free and learning follow.
    decision_saved = Signal(object)  # DecisionRecord
    decision_removed = Signal(object)  # DecisionRecord (undo or delete)
    decision_relabelled = Signal(object)  # DecisionRecord

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
        self.desk = desk
        self.capture = capture
        self.inference = inference
        self.storage = storage  # replaced by a restart (StorageGuard): parts reach it through the window
        self.demo_reason = demo_reason
        self.frozen = False
        self.camera_state = ("opening", "")
        self.colors = [class_color(name, i) for i, name in enumerate(desk.labels)]
        self.setWindowTitle("Sorting station")
        self.resize(fitting_size(self, QSize(1280, 800)))

        self.video = VideoView()
        self.buttons = ClassButtons(desk.labels)
        self.history = HistoryPanel(desk.labels)
        self.history.setFixedWidth(330)
        keys = QLabel(KEYS_HELP.format(n=len(desk.labels)))
        keys.setAlignment(Qt.AlignmentFlag.AlignCenter)
        keys.setWordWrap(True)  # on a narrow screen it takes two lines instead of widening the window
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

        self.status = StationStatusBar(capture, inference, feed_note)
        self.setStatusBar(self.status)
        self.storage_guard = StorageGuard(self)
        self.models = ModelManager(self, inference, lambda: self.storage, retrain_job, auto_retrain_every)
        self.insights = Insights(self, desk, inference, lambda: self.storage, self.relabel)
        self.hands_free = HandsFreeDesk(self, hands or HandsFree(), bins or Bins({}, desk.labels), publisher)
        self._build_toolbar()
        self._bind_keys()
        self._connect()
        self.hands_free.load_trust()
        self._update_banner()

    # ---- construction

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Model")
        toolbar.setMovable(False)
        toolbar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        toolbar.addActions(self.models.actions)
        toolbar.addSeparator()
        toolbar.addActions(self.insights.actions)
        self.addToolBar(toolbar)

    def _bind_keys(self) -> None:
        bind_label_keys(self, len(self.desk.labels), self.confirm, self.choose)
        bind_key(self, QKeySequence(Qt.Key.Key_Backspace), self.undo)
        bind_key(self, QKeySequence.StandardKey.Undo, self.undo)
        bind_key(self, "F", self.toggle_freeze)
        bind_key(self, QKeySequence("Ctrl+Q"), self.close)

    def _connect(self) -> None:
        self.capture.frame_captured.connect(self._on_frame_captured)
        self.capture.camera_state_changed.connect(self._on_camera_state_changed)
        self.inference.prediction_ready.connect(self._on_prediction_ready)
        for worker in (self.capture, self.inference):
            worker.errored.connect(self._on_worker_errored)
        self.use_storage(self.storage)
        self.decision_saved.connect(self._on_decision_saved)
        self.decision_saved.connect(self.insights.on_decision_changed)
        self.decision_saved.connect(self.models.on_decision_saved)
        self.decision_saved.connect(self.hands_free.on_decision_saved)
        self.decision_removed.connect(self.hands_free.on_decision_removed)
        self.decision_removed.connect(self._on_decision_removed)
        self.decision_removed.connect(self.insights.on_decision_removed)
        self.decision_relabelled.connect(self._on_decision_relabelled)
        self.decision_relabelled.connect(self.insights.on_decision_relabelled)
        self.decision_relabelled.connect(self.hands_free.on_decision_relabelled)
        self.models.message.connect(self.video.flash)
        self.models.learning_changed.connect(self.status.show_learning)
        self.models.model_swapped.connect(lambda *_: self.status.refresh())
        self.models.version_activated.connect(self.status.on_version_activated)
        self.models.promotion_seen.connect(self.status.on_promotion_seen)
        self.buttons.label_chosen.connect(self.choose)
        self.history.relabel_requested.connect(self.relabel)
        self.history.delete_requested.connect(self.delete)

    def use_storage(self, storage: StorageWorker) -> None:
        """Run on this storage worker from now on (at start, and the new one after a restart)."""
        self.storage = storage
        storage.history_changed.connect(self._on_history_changed)
        self.storage_guard.watch(storage)

    # ---- operator actions

    def confirm(self) -> None:
        self._decide(None)

    def choose(self, index: int) -> None:
        self._decide(index)

    def _decide(self, index: int | None) -> None:
        if self.storage_guard.refuse():
            return
        try:
            decision = self.hands_free.decided(self.desk.decide(index))
        except DecisionRefusedError as hint:
            self.video.flash(str(hint), HINT_GREY)
            return
        self.store_decision(decision)

    def store_decision(self, decision: NewDecision) -> None:
        self.storage.submit(jobs.save(decision, self.storage.thumbnails), self.decision_saved.emit, refresh=True)
        self.capture.advance()  # folder with interval 0: the next image only after a decision
        self.video.flash(f"Saving {decision.operator_label}…", HINT_GREY, 3000)

    def undo(self) -> None:
        if not self.storage_guard.refuse():
            self.storage.submit(jobs.undo_last(self.storage.thumbnails), self.decision_removed.emit, refresh=True)

    def relabel(self, decision_id: int, label: str) -> None:
        self.storage.submit(jobs.relabel(decision_id, label), self.decision_relabelled.emit, refresh=True)

    def delete(self, decision_id: int) -> None:
        self.storage.submit(jobs.delete(decision_id, self.storage.thumbnails), self.decision_removed.emit, refresh=True)

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
        self.status.show_camera(state, detail)

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

    def _on_decision_removed(self, record: DecisionRecord) -> None:
        self.desk.undone()
        self.video.flash(f"Removed #{record.id} ({record.operator_label})", WARN_ORANGE)

    def _on_decision_relabelled(self, record: DecisionRecord) -> None:
        self.video.flash(f"#{record.id} relabelled as {record.operator_label}", OK_GREEN)

    def _on_history_changed(self, entries: list[jobs.HistoryEntry], today: int) -> None:
        self.history.show_entries(entries)
        self.status.show_today(today)

    def _on_worker_errored(self, message: str) -> None:
        self.video.set_notice(f"Error: {message}")
        self.status.showMessage(message)

    # ---- shutdown

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        if not self.storage_guard.may_close():
            event.ignore()
            return
        self.status.timer.stop()
        self.insights.stop()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker: retraining and loaders, capture, then inference, storage last (it drains its queue)."""
        self.models.shutdown()
        self.capture.stop()
        self.capture.slot.close()
        self.inference.stop()
        self.storage.stop()
        log.info("storage stopped; %d write(s) not done", self.storage.pending)
        self.hands_free.close()  # after storage: the last decisions' events are on their way
