"""The real main window, offscreen: keys -> rows and files, undo, restart, demo banner, camera loss."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt

from station import app
from station.camera import CameraError, Frame, FrameSource
from station.storage import Storage
from station.ui.main_window import fitting_size
from tests.conftest import TINY_LABELS

WAIT_MS = 30_000
MODEL_LOAD_MS = 120_000  # loading and warming up a model: seconds alone, much longer on a loaded machine


def start_window(qtbot, windows, settings, classifier, factory=None, demo_reason=None, capture=True):
    """The real window, shown and active, with its workers running (``capture=False``: no frames ever)."""
    if factory is None:
        factory, demo_reason = app.choose_source(settings)
    window = app.assemble_window(settings, classifier, factory, demo_reason)
    windows.append(window)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts need the active window
    if capture:
        app.start_workers(window)
    else:
        window.storage.start()
    return window


def wait_for_prediction(qtbot, window, after=None) -> None:
    qtbot.waitUntil(lambda: window.desk.shown is not None and window.desk.shown is not after, timeout=WAIT_MS)


def press(qtbot, window, key, signal=None) -> None:
    """Press a key and wait until the storage worker has done the write (saved by default)."""
    with qtbot.waitSignal(signal or window.decision_saved, timeout=WAIT_MS):
        qtbot.keyClick(window, key)


def storage_done(qtbot, window) -> None:
    """Wait until every storage job submitted so far is done and its result delivered to this thread: a marker
    job runs after them (one thread, in order) and its result arrives after theirs."""
    seen: list[object] = []
    window.storage.submit(lambda storage: "marker", seen.append, write=False)
    qtbot.waitUntil(lambda: seen == ["marker"], timeout=WAIT_MS)


def rows(data_dir: Path) -> list:
    with Storage(data_dir) as storage:
        return storage.all_decisions()


def assert_file_intact(data_dir: Path, record) -> None:
    path = data_dir / record.image_path
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256


def test_space_confirms_the_shown_frame(qtbot, windows, make_settings, image_folder, tiny_classifier) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    shown = window.desk.shown
    press(qtbot, window, Qt.Key.Key_Space)
    [row] = rows(settings.data_dir)
    assert row.kind == "confirmed" and row.operator_label == row.predicted_label == shown.label
    assert row.model_version == "tiny-v1" and row.station == "test-station"
    assert_file_intact(settings.data_dir, row)
    from PIL import Image

    stored = np.asarray(Image.open(settings.data_dir / row.image_path).convert("RGB"))
    np.testing.assert_array_equal(stored, shown.frame.image)  # the exact frame that was on screen
    assert "Confirmed" in window.video.flash_text()


def test_number_key_corrects_and_undo_removes_row_and_file(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    press(qtbot, window, Qt.Key.Key_2)
    [row] = rows(settings.data_dir)
    assert row.operator_label == TINY_LABELS[1]
    assert row.kind == ("confirmed" if row.predicted_label == TINY_LABELS[1] else "corrected")
    press(qtbot, window, Qt.Key.Key_Backspace, window.decision_removed)
    assert rows(settings.data_dir) == []
    assert not (settings.data_dir / row.image_path).exists()


def test_second_key_on_the_same_frame_is_ignored_with_a_hint(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_F)  # freeze: keep the decided frame on screen
    assert window.frozen
    press(qtbot, window, Qt.Key.Key_1)
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert "Already saved" in window.video.flash_text()
    assert len(rows(settings.data_dir)) == 1


def test_key_without_prediction_only_hints(qtbot, windows, make_settings, image_folder, tiny_classifier) -> None:
    window = start_window(qtbot, windows, make_settings(), tiny_classifier, capture=False)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert "No prediction" in window.video.flash_text()
    assert window.storage.pending == 0


def test_restart_on_the_same_data_folder_shows_the_history(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    first = window.desk.shown
    press(qtbot, window, Qt.Key.Key_Space)
    wait_for_prediction(qtbot, window, after=first)  # the folder steps to its next image
    press(qtbot, window, Qt.Key.Key_3)
    saved = [r.id for r in reversed(rows(settings.data_dir))]
    window.close()

    again = app.assemble_window(settings, tiny_classifier, app.choose_source(settings)[0], None)
    windows.append(again)
    qtbot.addWidget(again)
    with qtbot.waitSignal(again.storage.history_changed, timeout=WAIT_MS):
        again.storage.start()
    assert again.history.ids() == saved
    assert again.status.decisions_today == 2


def test_unopenable_camera_falls_back_to_the_demo_feed(
    qtbot, windows, make_settings, image_folder, tiny_classifier, monkeypatch
) -> None:
    from station import startup

    monkeypatch.setattr(startup, "DEMO_DIR", image_folder)
    settings = make_settings(source="99", interval=0.5)
    window = start_window(qtbot, windows, settings, tiny_classifier)
    assert window.video.banner_text().startswith("DEMO: bundled images, because ")
    wait_for_prediction(qtbot, window)
    qtbot.waitUntil(lambda: "demo, one image every 0.5 s" in window.status.labels["camera"].text(), timeout=WAIT_MS)
    assert window.status.labels["capture"].isHidden()  # a slideshow has no capture rate worth showing
    # nor an inference rate (its interval's): the time per prediction is shown alone
    qtbot.waitUntil(lambda: window.status.latency_ms > 0, timeout=WAIT_MS)
    window.status.refresh()
    assert re.fullmatch(r"inference \d+ ms \(\w+\)", window.status.labels["inference"].text())
    assert window.desk.shown.frame.name.startswith("item")


class FlakySource(FrameSource):
    """A live camera that delivers frames, goes dark while ``dark`` is set, then comes back."""

    is_live = True
    description = "flaky test camera"

    def __init__(self, dark: threading.Event) -> None:
        self.dark = dark
        self.index = 0

    def open(self) -> None:
        if self.dark.is_set():
            raise CameraError("flaky test camera is unplugged")

    def read(self) -> Frame | None:
        if self.dark.is_set():
            raise CameraError("no signal")
        time.sleep(0.03)
        self.index += 1
        image = np.full((48, 64, 3), self.index % 256, np.uint8)
        return Frame(image, self.index, time.monotonic(), self.description)

    def close(self) -> None:
        pass


def test_a_source_that_stops_is_shown_lost_and_recovers(
    qtbot, windows, make_settings, tiny_classifier
) -> None:
    dark = threading.Event()
    window = start_window(qtbot, windows, make_settings(), tiny_classifier, lambda: FlakySource(dark))
    qtbot.waitUntil(lambda: window.camera_state[0] == "live", timeout=WAIT_MS)
    dark.set()
    qtbot.waitUntil(lambda: window.camera_state[0] == "lost", timeout=WAIT_MS)
    assert "Camera lost" in window.video.banner_text()
    dark.clear()
    qtbot.waitUntil(lambda: window.camera_state[0] == "live", timeout=WAIT_MS)
    assert window.video.banner_text() == ""
    wait_for_prediction(qtbot, window)


def test_the_status_bar_shows_capture_and_inference_rates(qtbot, windows, make_settings, tiny_classifier) -> None:
    """A live camera: both rates come from the same kind of meter, so they can be compared at a glance."""
    window = start_window(qtbot, windows, make_settings(), tiny_classifier, lambda: FlakySource(threading.Event()))
    qtbot.waitUntil(lambda: window.capture.loop.fps > 0 and window.inference.fps > 0, timeout=WAIT_MS)
    labels = window.status.labels
    qtbot.waitUntil(lambda: not labels["inference"].text().startswith("inference 0.0 fps"), timeout=WAIT_MS)
    assert labels["capture"].isVisibleTo(window.status) and labels["capture"].text().endswith(" fps")
    assert labels["inference"].text().endswith(f"ms ({tiny_classifier.backend})")


def test_history_relabel_and_delete(qtbot, windows, make_settings, image_folder, tiny_classifier) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    press(qtbot, window, Qt.Key.Key_Space)
    [row] = rows(settings.data_dir)
    other = next(label for label in TINY_LABELS if label != row.operator_label)
    with qtbot.waitSignal(window.decision_relabelled, timeout=WAIT_MS):
        window.history.relabel_requested.emit(row.id, other)
    [relabelled] = rows(settings.data_dir)
    assert relabelled.operator_label == other and relabelled.kind == "corrected"
    window.history.delete_requested.emit(row.id)
    # Not waitSignal(history_changed): the relabel's own history refresh may still be on its way.
    qtbot.waitUntil(lambda: rows(settings.data_dir) == [] and window.history.ids() == [], timeout=WAIT_MS)
    assert not (settings.data_dir / row.image_path).exists()
    assert window.history.ids() == []


def test_a_model_that_fails_to_load_keeps_the_running_one(
    qtbot, windows, make_settings, image_folder, tiny_classifier, tmp_path
) -> None:
    window = start_window(qtbot, windows, make_settings(), tiny_classifier)
    broken = tmp_path / "broken-bundle"
    broken.mkdir()
    window.models.use_model(broken, "r9", activate=True)
    qtbot.waitUntil(lambda: "Model r9 not used" in window.video.flash_text(), timeout=WAIT_MS)
    assert window.inference.classifier is tiny_classifier


def test_promoting_a_candidate_by_hand_swaps_it_in_and_records_it(
    qtbot, windows, make_settings, image_folder, tiny_classifier, tiny_bundle_path
) -> None:
    """What the result dialog's Promote does when the gate declined: load, swap, mark active."""
    import shutil

    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    candidate = settings.data_dir / "models" / "r1"
    with Storage(settings.data_dir) as storage:  # as a retraining does: write with the folder open (never swept)
        shutil.copytree(tiny_bundle_path, candidate)
        storage.add_version("r1", candidate, "fast", parent="tiny-v1")  # a candidate, not promoted
    with qtbot.waitSignals([window.models.model_swapped, window.models.version_activated], timeout=MODEL_LOAD_MS):
        window.models.use_model(candidate, "r1", activate=True)
    assert window.inference.classifier.version == "r1"
    with Storage(settings.data_dir) as storage:
        assert storage.active_version().version == "r1"
    # The next prediction comes from it, no restart. Wait on that condition, not on "another prediction":
    # the new model's answer may already be on screen (a folder with interval 0 sends no further frame).
    qtbot.waitUntil(lambda: window.desk.shown is not None and window.desk.shown.model_version == "r1",
                    timeout=WAIT_MS)


def test_a_version_promoted_elsewhere_is_swapped_in_and_a_broken_one_is_refused(
    qtbot, windows, make_settings, image_folder, tiny_classifier, tiny_bundle_path
) -> None:
    """Another station or `station retrain` activates a version in the database: this window loads it by itself."""
    import shutil

    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    window.models.poll_timer.setInterval(200)
    with Storage(settings.data_dir, "elsewhere") as elsewhere:
        shutil.copytree(tiny_bundle_path, settings.data_dir / "models" / "r1")
        elsewhere.add_version("r1", settings.data_dir / "models" / "r1", "fast", status="active")
    qtbot.waitUntil(lambda: window.inference.classifier.version == "r1", timeout=MODEL_LOAD_MS)
    assert "Now using model r1" in window.video.flash_text()

    seen: list[str] = []
    window.models.promotion_seen.connect(lambda record: seen.append(record.version))
    with Storage(settings.data_dir, "elsewhere") as elsewhere:  # a bundle this station cannot load
        (settings.data_dir / "models" / "r2").mkdir()
        elsewhere.add_version("r2", settings.data_dir / "models" / "r2", "fast", status="active")
    qtbot.waitUntil(lambda: "Model r2 not used" in window.video.flash_text(), timeout=MODEL_LOAD_MS)
    assert window.inference.classifier.version == "r1"
    # The loader said it failed just before its thread ends: its "finished" (which drops it) may still be queued.
    qtbot.waitUntil(lambda: window.models.loaders == [], timeout=WAIT_MS)
    loads = len(window.models.loaders)
    qtbot.wait(1000)  # several polls: the broken version is not tried again and again
    assert len(window.models.loaders) == loads == 0
    assert seen == ["r2"]  # loading it was started once


def test_the_window_fits_a_1024_by_768_screen(qtbot, windows, make_settings, image_folder, tiny_classifier) -> None:
    """A panel PC's 1024 x 768 shows the whole window: long status fields are cut, the key help wraps."""
    window = start_window(qtbot, windows, make_settings(), tiny_classifier)
    wait_for_prediction(qtbot, window)
    window.status.labels["learning"].setText("learning: 128 decisions since the last retraining " * 2)
    window.hands_free.mode_label.setText("mode manual · events → " + "/a/long/shared/folder" * 5)
    screen = window.screen().availableGeometry().size()  # offscreen: 800 x 800
    assert fitting_size(window, QSize(5000, 600)) == QSize(screen.width(), 600)  # the first size never overflows
    minimum = window.minimumSizeHint()
    assert minimum.width() <= 1024 and minimum.height() <= 768, minimum
    window.resize(1024, 768)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=WAIT_MS)
    for name in ("camera", "dropped", "today", "inference"):  # the camera state and the counts are never cut
        label = window.status.labels[name]
        shown = re.sub(r"<[^>]+>", "", label.text())  # the camera state is coloured rich text
        assert label.contentsRect().width() >= label.fontMetrics().horizontalAdvance(shown), name
