"""One color per class, the same in the overlay, the buttons and the history."""

from __future__ import annotations

from PySide6.QtGui import QColor

# Chosen to be told apart at a glance (and by most color-blind operators): the usual bin colors
# where there is one (paper blue, glass green, plastic yellow, metal grey), distinct hues otherwise.
KNOWN = {
    "cardboard": "#b5651d",
    "glass": "#2e9e44",
    "metal": "#7f8c8d",
    "paper": "#2f6fd6",
    "plastic": "#e0b000",
    "trash": "#222222",
}
FALLBACK = ["#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50", "#27ae60", "#f39c12"]


def class_color(name: str, index: int) -> QColor:
    return QColor(KNOWN.get(name, FALLBACK[index % len(FALLBACK)]))


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luminance = 0.299 * background.red() + 0.587 * background.green() + 0.114 * background.blue()
    return QColor("black") if luminance > 150 else QColor("white")


# What a decision toast says at a glance: the model was right (green), or the operator corrected it.
CONFIRMED_GREEN = QColor("#27ae60")
CORRECTED_PURPLE = QColor("#8e44ad")

# What a message on the video says by its colour.
OK_GREEN = CONFIRMED_GREEN
HINT_GREY = QColor("#555555")
WARN_ORANGE = QColor("#e67e22")
DEMO_YELLOW = QColor("#f1c40f")
ERROR_RED = QColor("#c0392b")
