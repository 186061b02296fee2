"""``station``: start the sorting station (``python -m station``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from station.camera import CameraError, FolderSource, FrameSource, LatestFrameSlot, open_source
from station.settings import DEMO_DIR, Settings, SettingsError, bundled_model_dir, load_settings

if TYPE_CHECKING:  # Qt and TensorFlow load only once the arguments are known to be good
    from station.inference import Classifier, InferenceOptions
    from station.retraining import RetrainJob
    from station.storage import Storage
    from station.ui.main_window import MainWindow

log = logging.getLogger("station")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="station",
        description="Sorting station: live classification, keyboard confirm/correct, decisions in SQLite.",
        epilog="Settings come from resources/station.toml, then your station.toml, then these options.",
    )
    parser.add_argument("--source", help="camera index (0), video file, stream URL or a folder of images")
    parser.add_argument("--interval", type=float,
                        help="folder source: seconds per image; 0 = next image only after a decision")
    parser.add_argument("--threshold", type=float, help="confidence below which a prediction is 'uncertain'")
    parser.add_argument("--data-dir", dest="data_dir", help="folder for station.db and images/")
    parser.add_argument("--station-name", dest="station_name", help="name stored with each decision")
    parser.add_argument("--model", help="model bundle folder (default: the bundled model)")
    parser.add_argument("--base-data", dest="base_data",
                        help="the model's training dataset, for full retraining (default: where its bundle says)")
    return parser


def choose_source(settings: Settings) -> tuple[Callable[[], FrameSource], str | None]:
    """The configured source, or the demo images when it cannot be opened at start.

    Returns a factory (the capture loop reopens sources after a loss) and the demo reason.
    """
    try:
        probe = open_source(settings.source, settings.interval)
        probe.open()
        probe.close()
    except CameraError as exc:
        reason = str(exc)
        log.warning("source %s unavailable, using the demo feed: %s", settings.source, exc)
        interval = settings.interval or 2.0
        return (lambda: FolderSource(DEMO_DIR, interval)), reason
    return (lambda: open_source(settings.source, settings.interval)), None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}

    from PySide6.QtWidgets import QApplication, QMessageBox

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Sorting station")

    def fail(title: str, message: str) -> int:
        log.error("%s: %s", title, message)
        QMessageBox.critical(None, title, message)
        return 1

    try:
        settings = load_settings(overrides)
        model_dir = Path(settings.model) if settings.model else bundled_model_dir()
    except SettingsError as exc:
        return fail("Settings problem", str(exc))

    window = build_window(settings, model_dir, fail)
    if window is None:
        return 1
    window.show()
    code = app.exec()
    return code


def build_window(settings: Settings, model_dir: Path, fail: Callable[[str, str], int]) -> MainWindow | None:
    """Check the data folder, load the active model, start the workers and return the window (None on failure)."""
    from station.retraining import RetrainJob

    storage = open_storage(settings)
    if storage is None:
        return None
    try:
        classifier = load_active_model(storage, model_dir, fail, inference_options(settings))
    finally:
        storage.close()
    if classifier is None:
        return None
    factory, demo_reason = choose_source(settings)
    window = assemble_window(settings, classifier, factory, demo_reason,
                             retrain_job=lambda mode: RetrainJob(settings.data_dir, model_dir, mode=mode,
                                                                 base_data_dir=settings.base_data))
    start_workers(window)
    log.info("station %s: model %s, source %s, data in %s", settings.station_name, classifier.version,
             "demo" if demo_reason else settings.source, settings.data_dir)
    return window


def open_storage(settings: Settings) -> Storage | None:
    """Open the data folder once before the window, so schema and folder problems are reported up front."""
    from PySide6.QtWidgets import QMessageBox

    from station.storage import Storage, StorageError

    while True:
        try:
            return Storage(settings.data_dir, settings.station_name)
        except StorageError as exc:
            answer = QMessageBox.critical(
                None, "Data folder problem", f"{exc}\n\nFix the folder (or pass --data-dir) and retry.",
                QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Retry:
                log.error("data folder unusable: %s", exc)
                return None


def inference_options(settings: Settings) -> InferenceOptions:
    """The configured backend; converted backbones are cached in the data folder."""
    from station.inference import InferenceOptions
    from station.retraining import CACHE_DIR

    return InferenceOptions(settings.inference_backend, cache_dir=settings.data_dir / CACHE_DIR)


def load_active_model(
    storage: Storage, model_dir: Path, fail: Callable[[str, str], int], options: InferenceOptions | None = None
) -> Classifier | None:
    """The data folder's active model version; the configured bundle when none is active (or it is broken)."""
    from PySide6.QtWidgets import QMessageBox

    from station.inference import Classifier
    from station.retraining import activate_bundle
    from station.storage import StorageError
    from training.errors import TrainingError

    active = storage.active_version()
    if active is not None:
        try:
            return Classifier.load(storage.version_path(active), active.version, options)
        except TrainingError as exc:
            log.error("active model version %s unusable: %s", active.version, exc)
            QMessageBox.warning(None, "Model version problem",
                                f"Model version {active.version} cannot be used:\n{exc}\n\n"
                                f"Starting with {model_dir} instead; it becomes the active version "
                                "(Model versions… rolls back once the other one is repaired).")
    try:
        classifier = Classifier.load(model_dir, options=options)
    except TrainingError as exc:
        fail("Model problem", f"The model at {model_dir} cannot be used:\n{exc}")
        return None
    try:  # the database says which model runs: the first time, or after an update replaced the bundled model
        activate_bundle(storage, model_dir)
    except StorageError as exc:  # e.g. locked by another station: the model runs; its row can wait
        log.warning("could not record %s as the active model version: %s", model_dir.name, exc)
    return classifier


def assemble_window(
    settings: Settings,
    classifier: Classifier,
    factory: Callable[[], FrameSource],
    demo_reason: str | None,
    retrain_job: Callable[[str], RetrainJob] | None = None,
) -> MainWindow:
    """Workers, decision desk and window, wired but not started."""
    from station.decisions import DecisionDesk
    from station.ui.main_window import MainWindow
    from station.workers import CaptureWorker, InferenceWorker, StorageWorker

    slot = LatestFrameSlot()
    capture = CaptureWorker(factory, slot)
    inference = InferenceWorker(classifier, slot)
    storage = StorageWorker(settings.data_dir, settings.station_name)
    desk = DecisionDesk(classifier.labels, settings.station_name, settings.threshold)
    return MainWindow(desk, capture, inference, storage, demo_reason, retrain_job)


def start_workers(window: MainWindow) -> None:
    for worker in (window.storage, window.inference, window.capture):
        worker.start()
