"""Bad input at the station: a broken model, a locked database, an unwritable data folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from station import app
from station.storage import Storage
from tests.gui.test_main_window import WAIT_MS, rows, start_window, wait_for_prediction


@pytest.fixture
def dialogs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record critical dialogs instead of blocking on them; answer Cancel."""
    shown: list[str] = []

    def critical(parent, title, text, *args, **kwargs):
        shown.append(f"{title}: {text}")
        return QMessageBox.StandardButton.Cancel

    monkeypatch.setattr(QMessageBox, "critical", critical)
    monkeypatch.setattr(app, "can_show_dialogs", lambda: True)  # as on a screen (offscreen prints instead)
    return shown


def test_missing_model_bundle_gives_a_dialog_and_exit_code(qtbot, tmp_path: Path, dialogs: list[str]) -> None:
    missing = tmp_path / "no-such-model"
    code = app.main(["--model", str(missing), "--data-dir", str(tmp_path / "data"), "--source", str(tmp_path)])
    assert code == 1
    assert len(dialogs) == 1 and str(missing) in dialogs[0] and "not found" in dialogs[0]


def test_corrupt_model_bundle_names_the_problem(
    qtbot, tmp_path: Path, dialogs: list[str], tiny_bundle_path: Path
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle_path, broken)
    (broken / "model.keras").write_bytes(b"\0" * 64)
    code = app.main(["--model", str(broken), "--data-dir", str(tmp_path / "data"), "--source", str(tmp_path)])
    assert code == 1 and "corrupt" in dialogs[0] and str(broken) in dialogs[0]


def test_unusable_active_version_falls_back_to_the_bundle_and_records_it(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_bundle_path: Path
) -> None:
    with Storage(tmp_path / "data") as storage:
        # e.g. the bundled model an update removed: its folder is gone
        storage.add_version("old-bundled", tmp_path / "gone", "bundled", status="active")
        classifier, warning = app.load_active_model(storage, tiny_bundle_path)
        assert classifier.version == tiny_bundle_path.name
        assert storage.active_version().version == tiny_bundle_path.name  # the database agrees with what runs
        assert storage.get_version("old-bundled").status == "retired"  # kept: roll back once repaired
    assert warning is not None and "old-bundled" in warning and "not found" in warning


def test_unusable_data_folder_is_reported_before_the_window(
    qtbot, tmp_path: Path, dialogs: list[str], tiny_bundle_path: Path
) -> None:
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the data folder should be")
    code = app.main(["--model", str(tiny_bundle_path), "--data-dir", str(not_a_folder), "--source", str(tmp_path)])
    assert code == 1 and "Data folder problem" in dialogs[0] and str(not_a_folder) in dialogs[0]


def test_locked_database_retries_and_saves_once_released(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    Storage(settings.data_dir).close()
    blocker = sqlite3.connect(settings.data_dir / "station.db", timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with qtbot.waitSignal(window.storage.storage_retrying, timeout=WAIT_MS):
            qtbot.keyClick(window, Qt.Key.Key_Space)
        assert "Not saved yet" in window.video.notice_text()
        assert window.storage.pending == 1
    finally:
        with qtbot.waitSignal(window.decision_saved, timeout=WAIT_MS):
            blocker.rollback()
            blocker.close()
    [row] = rows(settings.data_dir)
    assert (settings.data_dir / row.image_path).is_file()
    qtbot.waitUntil(lambda: window.storage.pending == 0, timeout=WAIT_MS)  # counted down after the signal
    qtbot.waitUntil(lambda: window.video.notice_text() == "", timeout=WAIT_MS)


def test_the_start_up_window_shows_each_step_until_the_station_s_window(
    qtbot, tmp_path: Path, tiny_bundle_path: Path, image_folder: Path
) -> None:
    """``station`` as typed: a start-up window at once, its steps, then the live window; closing it ends main."""
    from PySide6.QtWidgets import QApplication

    from station.ui.main_window import MainWindow
    from station.ui.startup_window import StartupWindow

    seen: dict[str, object] = {}

    def watch() -> None:
        widgets = QApplication.topLevelWidgets()
        splash = next((w for w in widgets if isinstance(w, StartupWindow) and w.isVisible()), None)
        window = next((w for w in widgets if isinstance(w, MainWindow) and w.isVisible()), None)
        if splash is not None and window is None:
            seen.setdefault("splash first", True)
            seen["steps"] = splash.steps_text()
        if window is not None:
            seen.setdefault("window", window)
            if window.desk.shown is not None:  # the first prediction is on screen: done
                seen["splash closed"] = splash is None
                seen["status"] = window.status.labels["camera"].text()
                timer.stop()
                window.close()

    timer = QTimer(interval=20, timeout=watch)
    timer.start()
    code = app.main(["--model", str(tiny_bundle_path), "--data-dir", str(tmp_path / "data"),
                     "--source", str(image_folder), "--interval", "0"])
    timer.stop()
    assert code == 0
    assert seen.get("splash first") is True and seen.get("splash closed") is True
    assert f"Loading model {tiny_bundle_path.name}" in str(seen["steps"])
    assert "folder, next image after each decision" in str(seen["status"])  # not "live"


def run_station_polling(timer: QTimer, tmp_path: Path, bundle: Path, image_folder: Path) -> int:
    """``station`` on a folder camera, with ``timer`` running the whole time (it plays the operator); the exit code."""
    timer.start()
    try:
        return app.main(["--model", str(bundle), "--data-dir", str(tmp_path / "data"), "--source", str(image_folder)])
    finally:
        timer.stop()


def test_closing_the_start_up_window_ends_the_station(
    qtbot, tmp_path: Path, tiny_bundle_path: Path, image_folder: Path
) -> None:
    from PySide6.QtWidgets import QApplication

    from station.ui.main_window import MainWindow
    from station.ui.startup_window import StartupWindow

    def close_it() -> None:
        splash = next((w for w in QApplication.topLevelWidgets() if isinstance(w, StartupWindow) and w.isVisible()),
                      None)
        if splash is not None:
            timer.stop()
            splash.close()  # as the operator would, with the window's close button

    timer = QTimer(interval=10, timeout=close_it)
    assert run_station_polling(timer, tmp_path, tiny_bundle_path, image_folder) == 0
    assert not any(isinstance(w, MainWindow) and w.isVisible() for w in QApplication.topLevelWidgets())


def test_closing_the_start_up_window_before_its_event_loop_runs_ends_the_station(
    qtbot, tmp_path: Path, tiny_bundle_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed while main() still opens the data folder (under load the test above closes it there too): there is
    no event loop to end yet, and the station must not start all the same."""
    from PySide6.QtWidgets import QApplication

    from station.ui.main_window import MainWindow
    from station.ui.startup_window import StartupWindow

    real_add_step = StartupWindow.add_step

    def add_step_then_close(self: StartupWindow, text: str) -> None:
        real_add_step(self, text)
        if text.startswith("Opening the data folder"):
            self.close()  # as the operator would, with the window's close button

    monkeypatch.setattr(StartupWindow, "add_step", add_step_then_close)
    opened: list[MainWindow] = []

    def close_a_station_window() -> None:  # else a station window that wrongly opened would run for ever
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible():
                opened.append(widget)
                widget.close()

    assert run_station_polling(QTimer(interval=50, timeout=close_a_station_window), tmp_path, tiny_bundle_path,
                               image_folder) == 0
    assert opened == []
