"""Retrain from the window: button -> progress -> result -> hot-swap, in a real spawned child."""

from __future__ import annotations

from pathlib import Path

from station import app
from station.inference import Classifier
from station.retraining import RetrainJob
from station.storage import NewDecision, Storage
from tests.unit.test_retrain import site_photos
from training.preprocess import load_rgb

RETRAIN_MS = 180_000


def store_wrong_decisions(data_dir: Path, photos: Path, model_version: str) -> None:
    """Site photos labelled by the operator, after the running model said 'trash' for every one."""
    with Storage(data_dir, "test-station") as storage:
        for sample in site_photos(photos, 10):
            storage.save(NewDecision(load_rgb(sample.image), "trash", 0.9, {}, sample.label, model_version))


def test_retrain_button_progress_result_and_hot_swap(
    qtbot, windows, make_settings, image_folder, trained_run
) -> None:
    data, run, _ = trained_run
    settings = make_settings(model=str(run))
    store_wrong_decisions(settings.data_dir, image_folder.parent / "site", run.name)
    job = RetrainJob(settings.data_dir, run, promote="always", base_data_dir=data)
    factory, _ = app.choose_source(settings)
    window = app.assemble_window(settings, Classifier.load(run), factory, None, retrain_job=lambda mode: job)
    windows.append(window)
    qtbot.addWidget(window)
    window.show()
    app.start_workers(window)

    with qtbot.waitSignal(window.storage.history_changed, timeout=RETRAIN_MS):
        pass
    window.models.retrain_action.trigger()
    worker = window.models.retrain_worker
    assert worker is not None and window.models.retrain_dialog.isVisible()
    window.models.retrain_action.trigger()  # a second click while one runs starts nothing
    assert window.models.retrain_worker is worker and "already running" in window.video.flash_text()
    with qtbot.waitSignal(window.models.retrain_finished, timeout=RETRAIN_MS) as finished:
        pass
    result = finished.args[0]
    assert result.promoted and result.version == "r1"
    assert window.models.retrain_dialog.pages.currentIndex() == 1  # the result view
    assert result.candidate_metrics.decisions.accuracy > result.current.decisions.accuracy
    qtbot.waitUntil(lambda: window.inference.classifier.version == "r1", timeout=RETRAIN_MS)
    qtbot.waitUntil(lambda: window.desk.shown is not None and window.desk.shown.model_version == "r1",
                    timeout=RETRAIN_MS)
    with Storage(settings.data_dir) as storage:
        assert storage.active_version().version == "r1"
