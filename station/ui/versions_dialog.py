"""Model versions: which one runs, where each came from, and rolling back to any of them."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("version", "status", "mode", "parent", "created", "held-out macro-F1", "base-test macro-F1")


def held_out_f1(metrics: dict[str, Any] | None, part: str) -> str:
    value = ((metrics or {}).get("candidate_metrics") or {}).get(part, {}).get("macro_f1")
    return "—" if value is None else f"{value:.3f}"


class VersionsDialog(QDialog):
    use_requested = Signal(object)  # VersionRecord to load and activate

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model versions")
        self.resize(820, 360)
        self.records: list[Any] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.use_button = QPushButton("Use selected version")
        self.use_button.clicked.connect(self._on_use)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        self.note = QLabel("Using a version loads and warms it up first; the running model is kept if that fails.")
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
            values = (record.version, record.status, record.mode, record.parent or "—",
                      record.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                      held_out_f1(record.metrics, "decisions"), held_out_f1(record.metrics, "base_test"))
            for col, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if record.status == "active":
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setTextAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def select(self, version: str) -> None:
        for row, record in enumerate(self.records):
            if record.version == version:
                self.table.selectRow(row)

    def _on_use(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.use_requested.emit(self.records[rows[0].row()])
