"""Window sizes that fit the screen they open on."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget


def fitting_size(widget: QWidget, wanted: QSize) -> QSize:
    """``wanted``, shrunk to the screen's free area: a 1024 x 768 panel PC must see the whole window."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return wanted
    return wanted.boundedTo(screen.availableGeometry().size())
