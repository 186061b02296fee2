"""Model versions: which one runs, where each came from, and rolling back to any of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.ui.screen_fit import fitting_size
from training.messages import RetrainReport

COLUMNS = ("version", "status", "mode", "parent", "created / first seen",
           "held-out macro-F1 (running → this)", "base-test macro-F1 (running → this)")
BUNDLED = "bundled"


def stored_report(metrics: dict[str, Any] | None) -> RetrainReport | None:
    """The retraining report a version row keeps (None for a bundled model or a row in an older shape)."""
    if not metrics:
        return None
    try:
        return RetrainReport.from_json(metrics)
    except (KeyError, TypeError, ValueError):
        return None


def score_text(report: RetrainReport | None, part: str) -> str:
    """The running model's macro-F1 then, next to the candidate's: "0.412 → 0.530"."""
    if report is None:
        return "—"
    now, new = getattr(report.current, part).macro_f1, getattr(report.candidate_metrics, part).macro_f1
    return f"{now:.3f} → {new:.3f}"


def bundle_test_f1(folder: Path) -> str:
    """A shipped bundle's own test-split macro-F1 (its metrics.json), "—" when unknown."""
    try:
        value = json.loads((folder / "metrics.json").read_text())["macro_f1"]
    except (OSError, ValueError, KeyError, TypeError):
        return "—"
    return "—" if not isinstance(value, int | float) else f"{value:.3f} (its test split)"


def date_text(record: Any) -> str:
    when = record.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
    return f"{when} (first seen)" if record.mode == BUNDLED else when


class VersionsDialog(QDialog):
    use_requested = Signal(object)  # VersionRecord to load and activate

    def __init__(self, parent: QWidget | None = None, folder_of: Callable[[Any], Path] | None = None) -> None:
        super().__init__(parent)
        self.folder_of = folder_of  # VersionRecord -> its bundle folder (for a bundled model's own metrics)
        self.setWindowTitle("Model versions")
        self.resize(fitting_size(self, QSize(1040, 360)))
        self.records: list[Any] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.use_button = QPushButton("Use selected version")
        self.use_button.clicked.connect(self._on_use)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        self.note = QLabel("Using a version loads and warms it up first; the running model is kept if that fails.")
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.note, 1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    def show_versions(self, records: list[Any]) -> None:
        self.records = list(records)
        self.table.setRowCount(len(self.records))
        for row, record in enumerate(self.records):
            report = stored_report(record.metrics)
            base_test = score_text(report, "base_test")
            if base_test == "—" and record.mode == BUNDLED and self.folder_of is not None:
                base_test = bundle_test_f1(self.folder_of(record))
            values = (record.version, record.status, record.mode, record.parent or "—", date_text(record),
                      score_text(report, "decisions"), base_test)
            for col, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if record.status == "active":
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setTextAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        # Wide enough for every column: no column hidden behind a horizontal scrollbar.
        needed = sum(self.table.columnWidth(c) for c in range(len(COLUMNS))) + 2 * self.table.frameWidth() + 40
        if self.width() < needed:
            self.resize(fitting_size(self, QSize(needed, self.height())))

    def select(self, version: str) -> None:
        for row, record in enumerate(self.records):
            if record.version == version:
                self.table.selectRow(row)

    def _on_use(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.use_requested.emit(self.records[rows[0].row()])
