"""A held key acts once: auto-repeat never invents decisions nor undoes one after another."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from tests.faults.helpers import wait_for_undecided
from tests.gui.test_main_window import WAIT_MS, press, rows, start_window, storage_done, wait_for_prediction

KEY_TEXT = {Qt.Key.Key_Space: " ", Qt.Key.Key_Backspace: "\b", Qt.Key.Key_1: "1"}


def auto_repeat(window, key: Qt.Key, times: int) -> None:
    """What the keyboard sends while a key is held: repeated presses flagged as auto-repeat.

    A non-spontaneous key press goes through Qt's shortcut map exactly as a real one does.
    """
    for _ in range(times):
        event = QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier, KEY_TEXT[key], True)
        QApplication.sendEvent(window, event)
    QApplication.sendEvent(window, QKeyEvent(QEvent.Type.KeyRelease, key, Qt.KeyboardModifier.NoModifier,
                                             KEY_TEXT[key], False))


def drain(qtbot, window) -> None:
    """Wait until every write queued so far is done (the storage queue runs jobs in order)."""
    storage_done(qtbot, window)
    # A write counts as pending until just after its result is sent: wait for the count, do not read it.
    qtbot.waitUntil(lambda: window.storage.pending == 0, timeout=WAIT_MS)


def test_holding_space_decides_only_the_frame_on_screen(qtbot, windows, make_settings, image_folder,
                                                         tiny_classifier) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    first = window.desk.shown
    press(qtbot, window, Qt.Key.Key_Space)
    wait_for_prediction(qtbot, window, after=first)  # the next image is on screen, never judged
    for key in (Qt.Key.Key_Space, Qt.Key.Key_1):
        auto_repeat(window, key, 20)
    drain(qtbot, window)
    [row] = rows(settings.data_dir)
    assert row.id and len(rows(settings.data_dir)) == 1
    press(qtbot, window, Qt.Key.Key_Space)  # a real new press still decides
    assert len(rows(settings.data_dir)) == 2


def test_holding_backspace_undoes_once(qtbot, windows, make_settings, image_folder, tiny_classifier) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    for _ in range(3):
        wait_for_undecided(qtbot, window)
        press(qtbot, window, Qt.Key.Key_Space)
    kept = rows(settings.data_dir)[:2]
    press(qtbot, window, Qt.Key.Key_Backspace, window.decision_removed)
    auto_repeat(window, Qt.Key.Key_Backspace, 20)
    drain(qtbot, window)
    left = rows(settings.data_dir)
    assert [r.id for r in left] == [r.id for r in kept]
    assert all((settings.data_dir / r.image_path).is_file() for r in left)
