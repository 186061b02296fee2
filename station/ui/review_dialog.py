"""Review queue: stored decisions, least confident first, relabelled with the live view's keys."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from station.storage import DecisionRecord
from station.storage_jobs import HistoryEntry
from station.ui.images import to_pixmap
from station.ui.keys import bind_key, bind_label_keys
from station.ui.screen_fit import fitting_size

UNCERTAIN_BACKGROUND = QColor("#fde3c8")
REVIEWED_BACKGROUND = QColor("#d5f5e3")
ID_ROLE = Qt.ItemDataRole.UserRole
ICON_SIDE = 128
CAPTION_LINES = 3


def grid_size(metrics: QFontMetrics, labels: tuple[str, ...]) -> QSize:
    """A cell wide enough for the longest caption line of any class, tall enough for the icon and 3 lines."""
    longest = max(labels, key=metrics.horizontalAdvance, default="")
    widest = max(metrics.horizontalAdvance(line) for line in (
        f"operator: {longest}", f"model: {longest}", "#000000 · 100% ⚠", f"✔ {longest}"))
    return QSize(max(ICON_SIDE, widest) + 24, ICON_SIDE + CAPTION_LINES * metrics.lineSpacing() + 24)


def cell_icon(thumbnail: NDArray[np.uint8], width: int) -> QIcon:
    """The thumbnail centred on a transparent strip as wide as the caption: Qt wraps an icon-mode caption to its
    icon's width, so a portrait photo's 96 px cut "operator: cardboard" to "operator: ..."."""
    photo = to_pixmap(thumbnail).scaled(QSize(ICON_SIDE, ICON_SIDE), Qt.AspectRatioMode.KeepAspectRatio,
                                        Qt.TransformationMode.SmoothTransformation)
    canvas = QPixmap(max(width, photo.width()), ICON_SIDE)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    painter.drawPixmap((canvas.width() - photo.width()) // 2, (ICON_SIDE - photo.height()) // 2, photo)
    painter.end()
    return QIcon(canvas)


def caption(record: DecisionRecord, uncertain: bool, reviewed: bool) -> str:
    flag = " ⚠" if uncertain else ""
    confidence = "" if record.confidence is None else f"{record.confidence:.0%}"
    verdict = f"✔ {record.operator_label}" if reviewed else f"operator: {record.operator_label}"
    return f"#{record.id} · {confidence}{flag}\nmodel: {record.predicted_label}\n{verdict}"


class ReviewDialog(QDialog):
    """Grid of thumbnails. Space/Enter: the model was right; 1–n: set the class; the next item is selected."""

    relabel_requested = Signal(int, str)  # decision id, operator label
    reload_requested = Signal()

    def __init__(self, labels: tuple[str, ...], threshold: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels
        self.threshold = threshold
        self.records: dict[int, DecisionRecord] = {}
        self.reviewed: set[int] = set()
        self.setWindowTitle("Review queue")
        self.resize(fitting_size(self, QSize(1100, 760)))

        keys = " · ".join(f"{i + 1} {name}" for i, name in enumerate(labels[:9]))
        self.help = QLabel(
            f"Least confident first; ⚠ = below {threshold:.0%} confidence. Space/Enter: the model was right · {keys} "
            "· arrows move · F5 reload")
        self.help.setWordWrap(True)
        self.status = QLabel()
        for label in (self.help, self.status):  # they show class names: never as rich text
            label.setTextFormat(Qt.TextFormat.PlainText)
        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        cell = grid_size(QFontMetrics(self.grid.font()), labels)
        self.icon_width = cell.width() - 24
        self.grid.setIconSize(QSize(self.icon_width, ICON_SIDE))
        self.grid.setGridSize(cell)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setWordWrap(True)
        self.grid.setUniformItemSizes(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.help)
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.status)

        bind_label_keys(self, len(labels), self.confirm_selected, lambda i: self.relabel_selected(self.labels[i]))
        bind_key(self, QKeySequence(Qt.Key.Key_F5), self.reload_requested.emit)

    def show_entries(self, entries: list[HistoryEntry]) -> None:
        self.grid.clear()
        self.records = {e.record.id: e.record for e in entries}
        for entry in entries:
            item = QListWidgetItem(cell_icon(entry.thumbnail, self.icon_width), "")
            item.setData(ID_ROLE, entry.record.id)
            self.grid.addItem(item)
            self._paint(item, entry.record)
        if entries:
            self.grid.setCurrentRow(0)
        self._update_status()

    def is_uncertain(self, record: DecisionRecord) -> bool:
        return record.confidence is not None and record.confidence < self.threshold

    def _paint(self, item: QListWidgetItem, record: DecisionRecord) -> None:
        reviewed = record.id in self.reviewed
        item.setText(caption(record, self.is_uncertain(record), reviewed))
        item.setToolTip(f"decision #{record.id}, {record.created_at.astimezone():%Y-%m-%d %H:%M:%S}")
        color = REVIEWED_BACKGROUND if reviewed else UNCERTAIN_BACKGROUND if self.is_uncertain(record) else None
        item.setBackground(QBrush(color) if color is not None else QBrush())

    def selected_record(self) -> DecisionRecord | None:
        item = self.grid.currentItem()
        return None if item is None else self.records.get(item.data(ID_ROLE))

    def confirm_selected(self) -> None:
        record = self.selected_record()
        if record is not None and record.predicted_label is not None:
            self.relabel_selected(record.predicted_label)

    def relabel_selected(self, label: str) -> None:
        """Ask storage to save the label; the item turns green when ``show_relabelled`` confirms it."""
        record = self.selected_record()
        if record is None:
            return
        self.relabel_requested.emit(record.id, label)
        self.status.setText(f"Saving #{record.id} as {label}…")
        row = self.grid.currentRow()
        if row + 1 < self.grid.count():
            self.grid.setCurrentRow(row + 1)

    def show_relabelled(self, record: DecisionRecord) -> None:
        """A decision was relabelled (here or elsewhere): update its tile if it is in the queue."""
        if record.id not in self.records:
            return
        self.records[record.id] = record
        self.reviewed.add(record.id)
        for row in range(self.grid.count()):
            item = self.grid.item(row)
            if item.data(ID_ROLE) == record.id:
                self._paint(item, record)
        self.status.setText(f"#{record.id} saved as {record.operator_label}")
        self._update_status(keep_message=True)

    def remove(self, record: DecisionRecord) -> None:
        """A decision was deleted (undo or history panel): drop its tile."""
        if self.records.pop(record.id, None) is None:
            return
        for row in range(self.grid.count()):
            if self.grid.item(row).data(ID_ROLE) == record.id:
                self.grid.takeItem(row)
                break
        self.reviewed.discard(record.id)
        self._update_status()

    def _update_status(self, keep_message: bool = False) -> None:
        uncertain = sum(self.is_uncertain(r) for r in self.records.values())
        counts = f"{len(self.records)} decisions, {uncertain} uncertain, {len(self.reviewed)} reviewed"
        message = self.status.text().split("  ·  ")[0] if keep_message else ""
        self.status.setText(f"{message}  ·  {counts}" if message else counts)
