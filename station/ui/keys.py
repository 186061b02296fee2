"""Window shortcuts that act once per key press, and the keys that label an item."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

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


CONFIRM_KEYS = (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter)
CLASS_KEYS = 9  # 1–9


def bind_label_keys(
    window: QWidget, classes: int, confirm: Callable[[], object], choose: Callable[[int], object]
) -> None:
    """The live view's labelling keys, the same in the review queue: Space/Enter agree with the model, the number
    keys choose class 1–9 (``choose`` gets its index)."""
    for key in CONFIRM_KEYS:
        bind_key(window, QKeySequence(key), confirm)
    for index in range(min(classes, CLASS_KEYS)):
        bind_key(window, str(index + 1), partial(choose, index))
