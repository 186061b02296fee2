"""The last decisions, with thumbnails; a mistaken one can be relabelled or deleted."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from station.storage import DecisionKind, DecisionRecord
from station.storage_jobs import HistoryEntry
from station.ui.images import to_pixmap


def describe(record: DecisionRecord) -> str:
    time = record.created_at.astimezone().strftime("%H:%M:%S")
    if record.kind == DecisionKind.CONFIRMED:
        verdict = f"✔ {record.operator_label}"
    elif record.kind == DecisionKind.AUTO:  # no operator looked at it: say so, it is not a correction
        verdict = f"⚙ {record.operator_label}   (auto)"
    elif record.predicted_label is None:
        verdict = f"{record.operator_label} (imported)"
    else:
        verdict = f"✎ {record.operator_label}   (model: {record.predicted_label})"
    confidence = "" if record.confidence is None else f"  {record.confidence:.0%}"
    return f"{verdict}\n#{record.id}  {time}{confidence}"


class HistoryPanel(QWidget):
    """Newest first. Right-click (or the buttons) to relabel or delete the selected decision."""

    relabel_requested = Signal(int, str)  # decision id, new label
    delete_requested = Signal(int)

    def __init__(self, labels: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.list = QListWidget()
        self.list.setIconSize(QSize(72, 72))
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keyboard stays with the live view
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_context_menu)
        self.list.setAlternatingRowColors(True)

        self.relabel_button = QPushButton("Relabel…")
        self.delete_button = QPushButton("Delete")
        for button in (self.relabel_button, self.delete_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.relabel_button.clicked.connect(lambda: self._menu_for_selected(self.relabel_button))
        self.delete_button.clicked.connect(self._on_delete_clicked)

        buttons = QHBoxLayout()
        buttons.addWidget(self.relabel_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Last decisions")
        title.setStyleSheet("font-weight: bold; font-size: 15px;")
        layout.addWidget(title)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def show_entries(self, entries: list[HistoryEntry]) -> None:
        selected = self.selected_id()
        self.list.clear()
        for entry in entries:
            item = QListWidgetItem(QIcon(to_pixmap(entry.thumbnail)), describe(entry.record))
            item.setData(Qt.ItemDataRole.UserRole, entry.record.id)
            self.list.addItem(item)
            if entry.record.id == selected:
                item.setSelected(True)

    def ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def selected_id(self) -> int | None:
        items = self.list.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _on_context_menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is not None:
            item.setSelected(True)
            self._menu(item.data(Qt.ItemDataRole.UserRole)).exec(self.list.mapToGlobal(position))

    def _menu_for_selected(self, anchor: QWidget) -> None:
        decision_id = self.selected_id()
        if decision_id is not None:
            self._menu(decision_id).exec(anchor.mapToGlobal(QPoint(0, anchor.height())))

    def _menu(self, decision_id: int) -> QMenu:
        menu = QMenu(self)
        relabel = menu.addMenu("Relabel as")
        for name in self.labels:

            def relabel_as(n: str = name) -> None:
                self.relabel_requested.emit(decision_id, n)

            relabel.addAction(name, relabel_as)
        menu.addSeparator()
        menu.addAction("Delete decision", lambda: self.delete_requested.emit(decision_id))
        return menu

    def _on_delete_clicked(self) -> None:
        decision_id = self.selected_id()
        if decision_id is not None:
            self.delete_requested.emit(decision_id)
