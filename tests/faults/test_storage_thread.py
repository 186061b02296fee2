"""The storage thread: a failure is visible at once, no key press is taken as saved meanwhile, and it recovers."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from station import storage_jobs as jobs
from station.storage import DB_NAME, Storage
from tests.faults.helpers import assert_data_folder_intact, corrupt_pages, fill, sha256_of, wait_for_undecided
from tests.gui.test_main_window import WAIT_MS, press, rows, start_window, wait_for_prediction


def test_corrupt_database_stops_storage_visibly_and_a_restart_recovers(
    qtbot, windows, make_settings, image_folder, tiny_classifier, tmp_path: Path
) -> None:
    settings = make_settings()
    fill(settings.data_dir, 30)
    good = tmp_path / "good.db"
    shutil.copy(settings.data_dir / DB_NAME, good)
    corrupt_pages(settings.data_dir / DB_NAME)
    damaged = sha256_of(settings.data_dir / DB_NAME)

    window = start_window(qtbot, windows, settings, tiny_classifier)
    qtbot.waitUntil(lambda: window.storage.isFinished(), timeout=WAIT_MS)
    # The worker's error reaches the window through the event loop, possibly after its thread has ended.
    qtbot.waitUntil(lambda: "NOT being saved" in window.video.notice_text(), timeout=WAIT_MS)
    assert "corrupt" in window.video.notice_text()
    wait_for_prediction(qtbot, window)
    window.storage_guard.dialog.button(QMessageBox.StandardButton.Close).click()  # the operator closes the dialog
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert "NOT saved" in window.video.flash_text()
    qtbot.waitUntil(window.storage_guard.dialog.isVisible)  # and is offered the restart again
    assert window.storage.pending == 0 and not window.desk.shown_is_decided  # nothing taken as saved
    assert sha256_of(settings.data_dir / DB_NAME) == damaged  # never written over

    shutil.copy(good, settings.data_dir / DB_NAME)  # the operator restores the backup
    with _restarted(qtbot, window):
        window.storage_guard.dialog.button(QMessageBox.StandardButton.Retry).click()
    assert window.video.notice_text() == ""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    press(qtbot, window, Qt.Key.Key_Space)
    assert len(rows(settings.data_dir)) == 31
    assert_data_folder_intact(settings.data_dir)


class _restarted:  # noqa: N801 (a context manager used like a function)
    """Wait for the history of a storage worker that the block starts (the window's worker is replaced)."""

    def __init__(self, qtbot, window) -> None:
        self.qtbot, self.window = qtbot, window

    def __enter__(self) -> None:
        self.old = self.window.storage

    def __exit__(self, *exc: object) -> None:
        assert self.window.storage is not self.old
        self.qtbot.waitUntil(lambda: self.window.history.ids() != [], timeout=WAIT_MS)


def test_an_unexpected_error_in_a_job_does_not_end_the_thread(
    qtbot, windows, make_settings, image_folder, tiny_classifier, monkeypatch
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    real = Storage.recent
    calls = {"n": 0}

    def recent_fails_once(self, *args, **kwargs):  # whatever the worker asks for, passed on
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("history read exploded")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Storage, "recent", recent_fails_once)
    messages: list[str] = []
    window.storage.storage_failed.connect(messages.append)
    with qtbot.waitSignals([window.decision_saved, window.storage.storage_failed], timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    assert any("history read exploded" in m for m in messages)
    assert len(rows(settings.data_dir)) == 1
    wait_for_undecided(qtbot, window)
    press(qtbot, window, Qt.Key.Key_Space)
    assert window.storage.isRunning()
    assert len(rows(settings.data_dir)) == 2  # the first save was done once, not retried into a duplicate


def test_quitting_with_writes_a_stopped_storage_will_never_run_asks_instead_of_waiting(
    qtbot, windows, make_settings, image_folder, tiny_classifier, monkeypatch
) -> None:
    import numpy as np

    from station.storage import NewDecision

    settings = make_settings()
    fill(settings.data_dir, 3)
    corrupt_pages(settings.data_dir / DB_NAME)
    window = start_window(qtbot, windows, settings, tiny_classifier)
    qtbot.waitUntil(lambda: window.storage.isFinished() and window.storage_guard.dialog is not None, timeout=WAIT_MS)
    window.storage_guard.dialog.button(QMessageBox.StandardButton.Close).click()
    decision = NewDecision(np.zeros((8, 8, 3), np.uint8), "a", 0.9, {}, "a")
    window.storage.submit(jobs.save(decision, window.storage.thumbnails), window.decision_saved.emit,
                          refresh=True)  # queued as it stopped
    assert window.storage.pending == 1
    asked: list[str] = []

    def answer(parent, title, text, *rest):
        asked.append(text)
        return QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", answer)
    assert window.close()  # at once: the operator chose to quit without them
    assert len(asked) == 1 and "NOT saved" in asked[0] and "storage stopped" in asked[0]


def test_quitting_right_after_a_key_press_saves_it_without_asking(
    qtbot, windows, make_settings, image_folder, tiny_classifier, monkeypatch
) -> None:
    """The write of the last key press is on its way when the window closes: it is waited for, not asked about
    (a modal question nobody answers would hang the quit); reads on their way are not counted at all."""
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *rest: asked.append(text)
                        or QMessageBox.StandardButton.Discard)
    window.storage.submit(jobs.review(10), lambda entries: None, write=False)
    window.storage.submit(jobs.list_versions, lambda records: None, write=False)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.storage.pending <= 1  # the save at most (it may be done already): reads are not pending writes
    assert window.close()
    assert asked == []
    assert window.storage.isFinished() and window.storage.pending == 0
    assert len(rows(settings.data_dir)) == 1


def test_activating_or_discarding_a_version_lists_what_that_change_left(qtbot, tmp_path: Path) -> None:
    from station.workers import StorageWorker

    with Storage(tmp_path) as storage:
        storage.add_version("base", tmp_path / "base", "bundled", status="active")
        for name in ("r1", "r2"):
            storage.add_version(name, tmp_path / "models" / name, "fast", parent="base")
    worker = StorageWorker(tmp_path, "st")
    activated: list[str] = []
    listed: list[dict[str, str]] = []
    failed: list[str] = []

    def on_activated(change: jobs.VersionChange) -> None:
        activated.append(change.changed.version)
        on_changed(change)

    def on_changed(change: jobs.VersionChange) -> None:
        listed.append({v.version: v.status for v in change.versions})

    worker.storage_failed.connect(failed.append)
    worker.start()
    try:
        worker.submit(jobs.activate("r1"), on_activated)
        worker.submit(jobs.discard("r2"), on_changed)
        worker.submit(jobs.activate("zz"), on_activated)
        qtbot.waitUntil(lambda: len(listed) == 2 and len(failed) == 1, timeout=WAIT_MS)
    finally:
        assert worker.stop()
    assert activated == ["r1"]
    assert listed == [
        {"base": "retired", "r1": "active", "r2": "candidate"},
        {"base": "retired", "r1": "active", "r2": "discarded"},
    ]
    assert failed == [f"no model version named 'zz' in {tmp_path / DB_NAME}"]  # and nothing listed for it
