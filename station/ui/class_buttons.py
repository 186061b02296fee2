"""One large button per class, with its key."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QPushButton, QSizePolicy, QWidget

from station.ui.colors import class_color, text_color_on
from station.ui.plain_text import button_text, tooltip


class ClassButtons(QWidget):
    """Buttons ``1``..``N`` in ``labels.json`` order; clicking one is the same as pressing its key."""

    label_chosen = Signal(int)  # class index

    def __init__(self, labels: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.buttons: list[QPushButton] = []
        columns = 3 if len(labels) > 4 else len(labels)
        for index, name in enumerate(labels):
            color = class_color(name, index)
            button = QPushButton(button_text(f"{index + 1}   {name}"))
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the window's shortcuts, never a button
            button.setMinimumHeight(56)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            button.setToolTip(tooltip(f"Label as {name} (key {index + 1})"))
            button.setStyleSheet(
                f"QPushButton {{ background: {color.name()}; color: {text_color_on(color).name()};"
                " font-size: 20px; font-weight: bold; border-radius: 8px; border: 3px solid transparent; }"
                "QPushButton:hover { border-color: white; }"
                f"QPushButton:pressed {{ background: {color.darker(130).name()}; }}"
                'QPushButton[predicted="true"] { border-color: #f1c40f; }'
            )
            button.clicked.connect(lambda _=False, i=index: self.label_chosen.emit(i))
            layout.addWidget(button, index // columns, index % columns)
            self.buttons.append(button)

    def mark_predicted(self, index: int | None) -> None:
        """Outline the button of the predicted class (what Space would confirm)."""
        for i, button in enumerate(self.buttons):
            predicted = "true" if i == index else "false"
            if button.property("predicted") != predicted:
                button.setProperty("predicted", predicted)
                button.style().unpolish(button)
                button.style().polish(button)
