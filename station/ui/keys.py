"""Window shortcuts that act once per key press."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QWidget


def bind_key(
    window: QWidget, sequence: QKeySequence | QKeySequence.StandardKey | str, slot: Callable[[], object]
) -> QShortcut:
    """A window-wide shortcut without auto-repeat: a held key is one press.

    Qt repeats shortcuts every ~30 ms while a key is held; for keys that store, relabel or delete
    decisions that would invent decisions the operator never saw, or undo them one after another.
    """
    shortcut = QShortcut(QKeySequence(sequence), window)
    shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
    shortcut.setAutoRepeat(False)
    shortcut.activated.connect(slot)
    return shortcut
