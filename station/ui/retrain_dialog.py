"""Retraining progress, then current vs candidate side by side, with Promote / Discard."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.ui.screen_fit import fitting_size
from training.messages import RetrainOutcome, RetrainProgress, Scores

PARTS = (("decisions", "held-out decisions"), ("base_test", "base test split"))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s left" if minutes else f"{secs} s left"


class RetrainDialog(QDialog):
    cancel_requested = Signal()
    promote_requested = Signal(object)  # RetrainOutcome
    discard_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retrain on the operator's decisions")
        self.setModal(False)
        self.resize(fitting_size(self, QSize(860, 560)))
        self.outcome: RetrainOutcome | None = None  # not "result": QDialog.result() is a method
        self.pages = QStackedWidget()
        self.pages.addWidget(self._progress_page())
        self.pages.addWidget(self._result_page())
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)

    # ---- pages

    def _progress_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.phase_label = QLabel("Starting the retraining process…")
        self.phase_label.setTextFormat(Qt.TextFormat.PlainText)  # failure messages may quote class names
        self.phase_label.setStyleSheet("font-size: 16px;")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first progress event
        self.eta_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel)
        layout.addStretch(1)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.cancel_button, alignment=Qt.AlignmentFlag.AlignRight)
        layout.addStretch(1)
        return page

    def _result_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setStyleSheet("font-size: 15px;")
        self.table = QTableWidget()
        self.confusions = QGridLayout()
        buttons = QHBoxLayout()
        self.promote_button = QPushButton("Promote candidate")
        self.discard_button = QPushButton("Discard candidate")
        self.close_button = QPushButton("Close")
        self.promote_button.clicked.connect(lambda: self._decide(self.promote_requested))
        self.discard_button.clicked.connect(lambda: self._decide(self.discard_requested))
        self.close_button.clicked.connect(self.close)
        buttons.addStretch(1)
        for button in (self.promote_button, self.discard_button, self.close_button):
            buttons.addWidget(button)
        layout.addWidget(self.verdict)
        layout.addWidget(self.table, 1)
        layout.addLayout(self.confusions)
        layout.addLayout(buttons)
        return page

    # ---- events from the worker

    def show_progress(self, event: RetrainProgress) -> None:
        self.phase_label.setText(f"Phase: {event.phase}")
        if event.total:
            self.bar.setRange(0, event.total)
            self.bar.setValue(event.done)
        self.eta_label.setText(format_eta(event.eta))

    def show_result(self, outcome: RetrainOutcome) -> None:
        self.outcome = outcome
        verdict = "Promoted: the station now uses it." if outcome.promoted else "Not promoted."
        self.verdict.setText(
            f"<b>Candidate {outcome.version}</b> (from {outcome.parent}), "
            f"{outcome.seconds:.1f} s. Gate: {outcome.gate_reason}. <b>{verdict}</b>")
        self._fill_table(outcome)
        self._fill_confusions(outcome)
        self.promote_button.setVisible(not outcome.promoted)
        self.discard_button.setVisible(not outcome.promoted)
        self.pages.setCurrentIndex(1)

    def show_failure(self, message: str) -> None:
        self.phase_label.setText(f"Retraining failed: {message}\nThe running model and all data are unchanged.")
        self._finish_progress()

    def show_cancelled(self) -> None:
        self.phase_label.setText("Retraining cancelled. The running model and all data are unchanged.")
        self._finish_progress()

    def _finish_progress(self) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.eta_label.setText("")
        self.cancel_button.setText("Close")
        self.cancel_button.clicked.disconnect()
        self.cancel_button.clicked.connect(self.close)

    def _on_cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.phase_label.setText("Cancelling…")
        self.cancel_requested.emit()

    def _decide(self, signal: Any) -> None:
        self.promote_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        if self.outcome is not None:
            signal.emit(self.outcome)

    # ---- tables

    def _fill_table(self, outcome: RetrainOutcome) -> None:
        labels = outcome.current.base_test.labels
        rows = [("accuracy", "accuracy"), ("macro_f1", "macro-F1")] + [(f"recall:{c}", f"recall {c}") for c in labels]
        self.table.setRowCount(len(rows) + 1)
        self.table.setColumnCount(2 * len(PARTS))
        self.table.setHorizontalHeaderLabels(
            [f"{title}\n{who}" for _, title in PARTS for who in ("current", "candidate")])
        self.table.setVerticalHeaderLabels(["images"] + [title for _, title in rows])
        for col, (part, _) in enumerate(PARTS):
            for offset, scores in enumerate((getattr(outcome.current, part), getattr(outcome.candidate_metrics, part))):
                column = 2 * col + offset
                self.table.setItem(0, column, QTableWidgetItem(str(scores.count)))
                for row, (key, _) in enumerate(rows, start=1):
                    value = metric_value(scores, key)
                    item = QTableWidgetItem("—" if value is None else f"{value:.3f}")
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()

    def _fill_confusions(self, outcome: RetrainOutcome) -> None:
        while self.confusions.count():
            item = self.confusions.takeAt(0)  # never None while count() > 0
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for col, (who, scores) in enumerate((("current", outcome.current), ("candidate", outcome.candidate_metrics))):
            self.confusions.addWidget(QLabel(f"Held-out decisions, {who} (rows: operator label)"), 0, col)
            self.confusions.addWidget(confusion_table(scores.decisions.confusion, scores.decisions.labels), 1, col)


def metric_value(scores: Scores, key: str) -> float | None:
    if key.startswith("recall:"):
        return scores.recall(key.split(":", 1)[1])
    return None if not scores.count else float(getattr(scores, key))


def confusion_table(matrix: list[list[int]], labels: list[str]) -> QTableWidget:
    table = QTableWidget(len(matrix), len(matrix))
    table.setHorizontalHeaderLabels(labels)
    table.setVerticalHeaderLabels(labels)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            item = QTableWidgetItem(str(count))
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            if i == j:
                item.setBackground(Qt.GlobalColor.green if count else Qt.GlobalColor.white)
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
    table.setMaximumHeight(230)
    return table
