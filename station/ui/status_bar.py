"""The station's status bar: learning, camera state, capture and inference rates, dropped frames, model, today."""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from station.camera import LIVE, LOST
from station.inference import Prediction
from station.storage import VersionRecord
from station.ui.plain_text import tooltip
from station.workers import CaptureWorker, InferenceWorker

FIELDS = ("learning", "camera", "capture", "inference", "dropped", "model", "today")
LONG_FIELDS = {"learning", "model"}  # the camera state stays whole: "lost" must be seen
CAMERA_COLORS = {LIVE: "#27ae60", LOST: "#c0392b"}  # any other state: orange
SLIDESHOW_BLUE = "#2980b9"


class StationStatusBar(QStatusBar):
    """Reads the rates and counters twice a second; told the camera state, the day's count and learning."""

    def __init__(self, capture: CaptureWorker, inference: InferenceWorker, feed_note: str | None = None) -> None:
        super().__init__()
        self.capture = capture
        self.inference = inference
        self.feed_note = feed_note  # a folder or the demo images: said instead of a camera's "live" and fps
        self.camera_state = ("opening", "")
        self.decisions_today = 0
        self.latency_ms = 0.0
        self.labels: dict[str, QLabel] = {}
        for name in FIELDS:
            label = QLabel()
            label.setContentsMargins(8, 0, 8, 0)
            if name in LONG_FIELDS:  # on a narrow screen these are cut (never the window widened), not the counts
                label.setMinimumWidth(1)
            self.addPermanentWidget(label)
            self.labels[name] = label
        inference.prediction_ready.connect(self._on_prediction_ready)
        self.timer = QTimer(self, interval=500)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def show_camera(self, state: str, detail: str) -> None:
        self.camera_state = (state, detail)
        self.refresh()

    def show_today(self, decisions: int) -> None:
        self.decisions_today = decisions
        self.refresh()

    def show_learning(self, text: str, color: str) -> None:
        label = self.labels["learning"]
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setStyleSheet(f"color: {color}")
        label.setText(text)
        label.setToolTip(text)

    def on_version_activated(self, record: VersionRecord) -> None:
        self.showMessage(f"model {record.version} is now the active version", 5000)

    def on_promotion_seen(self, record: VersionRecord) -> None:
        self.showMessage(f"model {record.version} was promoted elsewhere: loading it", 5000)

    def _on_prediction_ready(self, prediction: Prediction) -> None:
        self.latency_ms = prediction.latency_ms

    def refresh(self) -> None:
        state, detail = self.camera_state
        text, color = f"● {state}", CAMERA_COLORS.get(state, "#e67e22")
        if state == LIVE and self.feed_note:  # a slideshow is not a live camera, and its fps says nothing
            text, color = f"● {self.feed_note}", SLIDESHOW_BLUE
        labels = self.labels
        labels["camera"].setText(f"<span style='color:{color}'>{text}</span>")
        labels["camera"].setToolTip(tooltip(detail))
        labels["capture"].setVisible(not self.feed_note)
        labels["capture"].setText(f"capture {self.capture.loop.fps:.1f} fps")
        classifier = self.inference.classifier
        # A slideshow's rate is its interval and hands-free modes classify only settled items: there the time per
        # prediction is the model's speed, not a rate.
        rate = f"{self.inference.fps:.1f} fps, " if self.capture.classify_live and not self.feed_note else ""
        labels["inference"].setText(f"inference {rate}{self.latency_ms:.0f} ms ({classifier.backend})")
        labels["dropped"].setText(f"dropped {self.capture.slot.dropped}")
        labels["model"].setText(f"model {classifier.version}")
        labels["model"].setToolTip(f"model {classifier.version}")
        labels["today"].setText(f"today {self.decisions_today} ({date.today():%d %b})")
