"""The window's side of hands-free sorting: arrival events, item predictions, the auto-confirm timer, the mode
key, recalibration, the overlay's outline and bin, and the decision events. The rules are ``station.handsfree``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel

from station.arrival import ARRIVING, LEFT, SETTLED, SETTLED_EVENT, ArrivalEvent, ArrivalView
from station.bins import Bins
from station.camera import Frame
from station.decisions import DecisionRefusedError
from station.events import EventPublisher, decision_event, retraction_event
from station.handsfree import AUTO_MODE, COUNTDOWN, WAITING, HandsFree, Item
from station.inference import Prediction
from station.storage import NewDecision
from station.storage_jobs import trust_checks
from station.trust import bundle_checks, decision_check
from station.ui.colors import class_color
from station.ui.images import to_qimage
from station.ui.keys import bind_key

if TYPE_CHECKING:
    from station.storage import DecisionRecord
    from station.trust import Check
    from station.ui.main_window import MainWindow

log = logging.getLogger(__name__)

OUTLINE_COLORS = {ARRIVING: QColor("#f1c40f"), SETTLED: QColor("#ffffff"), "decided": QColor("#27ae60")}
WAITING_ORANGE = QColor("#e67e22")
MODE_HELP = {"manual": "a key per item", "assist": "each item held for you",
             "auto": "confident, trusted items go alone"}


class HandsFreeDesk(QObject):
    """Owned by the window; ``take_prediction`` and ``decided`` are its two entry points from the window's slots."""

    def __init__(self, window: MainWindow, hands: HandsFree, bins: Bins, publisher: EventPublisher | None) -> None:
        super().__init__(window)
        self.window = window
        self.hands = hands
        self.bins = bins
        self.publisher = publisher
        self.view: ArrivalView | None = None
        self._decided_items: dict[int, str] = {}  # detector item number -> bin, while it is still in view
        self._cued: object | None = None  # the item the operator was last alerted to
        self._held: tuple[Item, QImage] | None = None  # the item on screen and its settled frame, as an image
        self.timer = QTimer(self, singleShot=True)
        self.timer.timeout.connect(self._on_due)
        self.countdown = QTimer(self, interval=100)  # redraws the seconds left
        self.countdown.timeout.connect(self._refresh)
        self.mode_label = QLabel()
        self.mode_label.setTextFormat(Qt.TextFormat.PlainText)
        self.mode_label.setContentsMargins(8, 0, 8, 0)
        self.mode_label.setMinimumWidth(1)  # its event path can be long: cut on a narrow screen (tooltip: all)
        window.statusBar().addPermanentWidget(self.mode_label)
        self.status_timer = QTimer(self, interval=1000)
        self.status_timer.timeout.connect(self._show_mode)
        self.status_timer.start()
        window.capture.arrival_seen.connect(self._on_arrival_seen)
        bind_key(window, "M", self.next_mode)
        bind_key(window, "E", self.recalibrate)
        bind_key(window, QKeySequence(Qt.Key.Key_Escape), self.hold)
        window.models.model_swapped.connect(lambda *_: self.load_trust())
        self._apply_mode()

    # ---- keys

    def next_mode(self) -> None:
        self.hands.next_mode()
        self._apply_mode()
        self.window.video.flash(f"Mode: {self.hands.mode} — {MODE_HELP[self.hands.mode]}", QColor("#2980b9"))

    def recalibrate(self) -> None:
        self.window.capture.recalibrate()
        self.window.video.flash("Learning the empty scene: keep the view clear for a second", QColor("#2980b9"), 3000)

    def hold(self) -> None:
        if self.hands.hold():
            self.timer.stop()
            self._refresh()
            self.window.video.flash("Held: Space confirms, 1… corrects", WAITING_ORANGE)

    def _apply_mode(self) -> None:
        self.window.capture.classify_live = not self.hands.active
        idle = "Place the next item" if self.hands.active else "Waiting for the first prediction…"
        self.window.video.idle_text = idle
        if not self.hands.active:
            self.window.video.set_outline(None)
        self._refresh()
        self._show_mode()

    def _show_mode(self) -> None:
        text = f"mode {self.hands.mode}"
        if self.hands.mode == AUTO_MODE:
            text += f" (≥ {self.hands.auto_threshold:.0%}, {self.hands.auto_delay:g} s"
            if self.hands.trust.enabled:
                trusted = [c for c in self.window.desk.labels if self.hands.trust.trusted(c)]
                text += f"; trusted: {', '.join(trusted) or 'none yet'}"
            text += ")"
        if self.hands.active and len(self.hands.queue) > 1:
            text += f", {len(self.hands.queue) - 1} waiting"
        if self.publisher is not None:
            text += f" · {self.publisher.describe()}"
        self.mode_label.setText(text)
        self.mode_label.setToolTip(text)

    # ---- events from the workers

    def _on_arrival_seen(
        self, frame: Frame, events: list[ArrivalEvent], view: ArrivalView, item_frame: Frame | None
    ) -> None:
        self.view = view
        for event in events:
            if event.kind == SETTLED_EVENT and event.item is not None:
                self.hands.item_settled(event.item, item_frame or frame)
            elif event.kind == LEFT:
                self.hands.item_left(event.item)
                self._decided_items.pop(event.item or -1, None)
        if self.hands.active:
            decided = None if view.item is None else self._decided_items.get(view.item)  # its bin
            state = "decided" if decided is not None else view.state
            points = [(float(x), float(y)) for x, y in view.outline] if state in OUTLINE_COLORS else None
            label = f"{state} → {decided}" if decided is not None else state
            self.window.video.set_outline(points, label, OUTLINE_COLORS.get(state))
        if events:
            self._refresh()

    def take_prediction(self, prediction: Prediction) -> bool:
        """True when hands-free handles predictions (the window's live overlay then stays out of the way)."""
        if not self.hands.active:
            return False
        if self.hands.classified(prediction) is not None:
            self._refresh()
        return True

    def decided(self, decision: NewDecision, by_operator: bool = True) -> NewDecision:
        """The desk's decision completed with its item (hands-free) or as it is (manual)."""
        item = self.hands.current
        try:
            completed = self.hands.decided(decision, by_operator)
        except ValueError:
            raise DecisionRefusedError("No item is waiting for a decision — place the next item") from None
        if item is not None and self.hands.active:
            self._decided_items[item.number] = self.bins.of(completed.operator_label)
        self._refresh()
        return completed

    # ---- auto mode's trust (station.trust)

    def load_trust(self) -> None:
        """The running model's checks: its retraining's (in its bundle) and the operator's decisions on its answers."""
        classifier = self.window.inference.classifier
        retrained = [(("retraining", i), check) for i, check in enumerate(bundle_checks(classifier.bundle.metrics))]

        def loaded(live: list[tuple[int, Check]]) -> None:
            if self.window.inference.classifier is classifier:  # not replaced meanwhile
                self.hands.trust.reset([*retrained, *live])
                self._trust_changed()

        job = trust_checks(self.window.desk.station, classifier.version, self.window.desk.labels, self.hands.trust)
        self.window.storage.submit(job, loaded, write=False)

    def _check_of(self, record: DecisionRecord) -> Check | None:
        return decision_check(record, self.window.inference.classifier.version)

    def _trust_changed(self) -> None:
        self.hands.trust_changed()
        self._refresh()
        self._show_mode()

    # ---- decisions stored

    def on_decision_saved(self, record: DecisionRecord) -> None:
        self.hands.trust.record(record.id, self._check_of(record))
        self._trust_changed()
        self._publish(record, decision_event(record, self.bins.of(record.operator_label)), "saved")

    def on_decision_relabelled(self, record: DecisionRecord) -> None:
        self.hands.trust.update(record.id, self._check_of(record))
        self._trust_changed()

    def on_decision_removed(self, record: DecisionRecord) -> None:
        self.hands.trust.forget(record.id)
        # Its event went out when it was saved: the sorter hears that it no longer stands.
        self._publish(record, retraction_event(record, self.bins.of(record.operator_label), datetime.now(timezone.utc)),
                      "taken back")
        if self.hands.undone(record.item_id) is not None:
            self._refresh()

    def _publish(self, record: DecisionRecord, event: dict[str, object], what: str) -> None:
        if self.publisher is not None and self.publisher.closed:
            log.error("decision %d %s after the events were closed: no event sent for it", record.id, what)
        elif self.publisher is not None:
            self.publisher.publish(event)

    def _on_due(self) -> None:
        item = self.hands.due_item()
        if item is None or self.window.storage_guard.down is not None:  # storage down: it waits for the operator
            self._refresh()
            return
        try:
            decision = self.window.desk.decide(None)
        except DecisionRefusedError:  # e.g. frozen on another frame: the operator decides
            self.hands.hold()
            self._refresh()
            return
        self.window.store_decision(self.decided(decision, by_operator=False))

    # ---- what the window shows

    def _refresh(self) -> None:
        """Show the item on screen (held: the next item never replaces it) and time its auto-confirmation."""
        item = self.hands.current
        if not self.hands.active or item is None or item.prediction is None:
            self.timer.stop()
            self.countdown.stop()
            if self.hands.active:
                self.window.video.set_overlay(None)
            return
        if self.window.desk.shown is not item.prediction:
            self.window.desk.show(item.prediction)
            self.window.buttons.mark_predicted(item.prediction.best_index)
        bin_name = self.bins.of(item.prediction.label)
        state, color = self._item_state(item)
        overlay = self.window.make_overlay(item.prediction)
        if overlay is not None:
            self.window.video.set_overlay(dataclasses.replace(
                overlay, bin=bin_name, bin_color=class_color(self.bins.colour_class(bin_name), 0),
                item_state=state, item_state_color=color, held_image=self._held_image(item)))
        if item.state == WAITING and self._cued is not item:  # the operator is needed: say so once per item
            self._cued = item
            QApplication.beep()
        due = self.hands.next_due()
        if due is None:
            self.timer.stop()
            self.countdown.stop()
        elif not self.timer.isActive():
            self.timer.start(max(0, round((due - time.monotonic()) * 1000)))
            self.countdown.start()

    def _held_image(self, item: Item) -> QImage | None:
        """The item's settled frame once the live view shows something else: it has left, or others wait behind it."""
        if not (item.left or len(self.hands.queue) > 1):
            return None
        if self._held is None or self._held[0] is not item:  # converted once per item, not per redraw
            self._held = (item, to_qimage(item.frame.image))
        return self._held[1]

    def _item_state(self, item: Item) -> tuple[str, QColor]:
        if item.state == COUNTDOWN and item.due is not None:
            return f"AUTO in {max(0.0, item.due - time.monotonic()):.1f} s — Esc holds", QColor("#2980b9")
        if item.state == WAITING:
            return "WAITING FOR YOU — Space / 1…" + self._why_not_auto(item), WAITING_ORANGE
        return item.state, QColor("#555555")

    def _why_not_auto(self, item: Item) -> str:
        """Auto mode, a confident answer about a class the checks do not back yet: say how far it has come."""
        standing = self.hands.standing(item)
        if (self.hands.mode != AUTO_MODE or item.touches or standing is None or standing.trusted
                or item.prediction is None or item.prediction.confidence < self.hands.auto_threshold):
            return ""
        done = f"{standing.right} of {standing.checks} right" if standing.checks else "no checks"
        return f"\n{standing.label} not trusted: {done}"

    def close(self) -> None:
        """After the storage thread has ended: its last ``decision_saved`` signals are still queued for this
        thread, so deliver them (and publish their events) before the publisher closes."""
        self.timer.stop()
        self.countdown.stop()
        self.status_timer.stop()
        QCoreApplication.sendPostedEvents()
        if self.publisher is not None:
            self.publisher.close()
