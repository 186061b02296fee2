"""``station``: start the sorting station (``python -m station``)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from station.settings import Settings, SettingsError, load_settings, model_folder
from station.startup import Started, choose_source, feed_note, load_active_model, start_station
from training.quiet import quiet_libraries

if TYPE_CHECKING:  # Qt, OpenCV and TensorFlow load only once the arguments are known to be good
    from PySide6.QtWidgets import QApplication

    from station.arrival import ArrivalDetector, PhotoArrivals
    from station.camera import FrameSource
    from station.inference import Classifier
    from station.retraining import RetrainJob
    from station.storage import Storage
    from station.ui.main_window import MainWindow
    from station.ui.startup_window import StartupWindow
    from training.messages import Mode

__all__ = ["assemble_window", "choose_source", "load_active_model", "main", "start_workers"]

log = logging.getLogger("station")


def main(argv: Sequence[str] | None = None) -> int:
    """The window: a start-up window at once, the live view once the model is loaded and the source open."""
    from station.cli import build_parser, gui_overrides

    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from PySide6.QtWidgets import QApplication, QMessageBox

    from station.ui.startup_window import StartupWindow

    # instance() is typed QCoreApplication; the station only ever creates a QApplication
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setApplicationName("Sorting station")
    app.setQuitOnLastWindowClosed(False)  # the start-up window closes before the main window opens
    splash = StartupWindow()
    splash.show()
    app.processEvents()
    log.info("start-up window shown")

    def fail(title: str, message: str) -> int:
        log.error("%s: %s", title, message)
        if can_show_dialogs():
            QMessageBox.critical(None, title, message)
        else:
            print(f"{title}: {message}", file=sys.stderr)
        splash.finish()
        return 1

    try:
        settings = load_settings(gui_overrides(args))
        model_dir = model_folder(settings)
    except SettingsError as exc:
        return fail("Settings problem", str(exc))
    splash.add_step(f"Opening the data folder {settings.data_dir}…")
    log.info("opening the data folder %s", settings.data_dir)
    storage = open_storage(settings)
    if storage is None:
        splash.finish()
        return 1
    storage.close()
    return run_startup(app, splash, settings, model_dir, fail)


def run_startup(
    app: QApplication, splash: StartupWindow, settings: Settings, model_dir: Path, fail: Callable[[str, str], int]
) -> int:
    """Load the model and open the source off the GUI thread, then swap the start-up window for the station's."""
    from PySide6.QtWidgets import QMessageBox

    from station.storage import StorageError
    from station.ui.startup_window import StartupWorker
    from training.errors import TrainingError

    windows: list[MainWindow] = []  # keeps the window alive while the event loop runs
    # Closed while starting: the operator changed their mind. Before the event loop runs app.exit() has no loop to
    # end (and would leave Qt's quit flag set for the next loop), so a close before now only stops the start here.
    if splash.given_up:
        return 0
    splash.cancelled.connect(lambda: app.exit(0))

    def on_ready(started: Started) -> None:
        if splash.given_up:  # the loaded model arrived too late: no window, and its background conversion is stopped
            started.classifier.close()
            return
        window = build_window(settings, model_dir, started)
        windows.append(window)
        window.show()
        splash.finish()
        app.setQuitOnLastWindowClosed(True)
        for warning in started.warnings:
            QMessageBox.warning(window, "Model version problem", warning)

    def on_failed(message: str) -> None:
        fail("Model problem", message)
        app.exit(1)

    worker = StartupWorker(lambda report: start_station(settings, model_dir, report),
                           (TrainingError, StorageError, SettingsError))
    worker.step.connect(splash.add_step)
    worker.ready.connect(on_ready)
    worker.failed.connect(on_failed)
    worker.start()
    with stop_on_signals(app, windows):
        code = app.exec()
    worker.wait()
    app.processEvents()  # a result the worker sent as the loop ended: on_ready discards it now, not in a later loop
    return code


@contextmanager
def stop_on_signals(app: QApplication, windows: list[MainWindow]) -> Iterator[None]:
    """SIGTERM (a service manager, ``kill``, a facility's shutdown) and Ctrl-C stop the station the way closing
    its window does, without asking: the decisions on their way are saved first (the storage worker drains its
    queue), instead of the process ending mid-write."""
    from PySide6.QtCore import QTimer

    def stop(signum: int, _frame: object) -> None:
        log.info("%s: stopping the station, saving the decisions on their way", signal.Signals(signum).name)
        for window in windows:
            window.shutdown()
        app.exit(0)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Python runs a signal handler only between bytecodes: while Qt's loop waits in C++, a timer lets it in.
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        yield
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def can_show_dialogs() -> bool:
    """False without a screen (``QT_QPA_PLATFORM=offscreen``/``minimal``): a modal dialog there waits for ever."""
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() not in ("offscreen", "minimal")


def build_window(settings: Settings, model_dir: Path, started: Started) -> MainWindow:
    """The station window on a loaded model and source, its workers running."""
    from station.retraining import RetrainJob

    window = assemble_window(settings, started.classifier, started.factory, started.demo_reason,
                             retrain_job=lambda mode: RetrainJob(settings.data_dir, model_dir, mode=mode,
                                                                 base_data_dir=settings.base_data,
                                                                 max_base_drop=settings.max_base_drop,
                                                                 learn_from_auto=settings.learn_from_auto,
                                                                 database_url=settings.database_url))
    window.inference.prediction_ready.connect(log_first_prediction(window))
    start_workers(window)
    log.info("station %s: model %s, source %s, data in %s", settings.station_name, started.classifier.version,
             "demo" if started.demo_reason else settings.source, settings.data_dir)
    return window


def log_first_prediction(window: MainWindow) -> Callable[[Any], None]:
    """A slot that logs the first prediction only (what start-up waited for), then disconnects itself."""

    def on_prediction(prediction: Any) -> None:
        window.inference.prediction_ready.disconnect(on_prediction)
        log.info("first prediction: %s %.0f%% (model %s)", prediction.label, prediction.confidence * 100,
                 prediction.model_version)

    return on_prediction


def open_storage(settings: Settings) -> Storage | None:
    """Open the data folder once before the window, so schema and folder problems are reported up front."""
    from PySide6.QtWidgets import QMessageBox

    from station.storage import Storage, StorageError

    while True:
        try:
            return Storage(settings.data_dir, settings.station_name, database_url=settings.database_url)
        except StorageError as exc:
            if not can_show_dialogs():
                print(f"Data folder problem: {exc}", file=sys.stderr)
                return None
            answer = QMessageBox.critical(
                None, "Data folder problem", f"{exc}\n\nFix the folder (or pass --data-dir) and retry.",
                QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Retry:
                log.error("data folder unusable: %s", exc)
                return None


def assemble_window(
    settings: Settings,
    classifier: Classifier,
    factory: Callable[[], FrameSource],
    demo_reason: str | None,
    retrain_job: Callable[[Mode], RetrainJob] | None = None,
) -> MainWindow:
    """Workers, decision desk and window, wired but not started."""
    from station.bins import Bins
    from station.camera import LatestFrameSlot
    from station.decisions import DecisionDesk
    from station.events import open_publisher
    from station.handsfree import HandsFree
    from station.ui.main_window import MainWindow
    from station.workers import CaptureWorker, InferenceWorker, StorageWorker

    slot = LatestFrameSlot()
    capture = CaptureWorker(factory, slot, arrival_detector(settings, demo_reason))
    inference = InferenceWorker(classifier, slot)
    storage = StorageWorker(settings.data_dir, settings.station_name, database_url=settings.database_url)
    desk = DecisionDesk(classifier.labels, settings.station_name, settings.threshold)
    hands = HandsFree(settings.mode, settings.auto_threshold, settings.auto_delay,
                      trust_checks=settings.auto_trust_checks, trust_precision=settings.auto_trust_precision)
    publisher = open_publisher(settings.mqtt_url, settings.events_file, settings.station_name, settings.data_dir,
                               shared=bool(settings.database_url))
    window = MainWindow(desk, capture, inference, storage, demo_reason, retrain_job,
                        feed_note=feed_note(settings, demo_reason), auto_retrain_every=settings.auto_retrain_every,
                        hands=hands, bins=Bins(settings.bins, classifier.labels), publisher=publisher)
    window.models.learning.learn_from_auto = settings.learn_from_auto
    return window


def arrival_detector(settings: Settings, demo_reason: str | None) -> ArrivalDetector | PhotoArrivals:
    """Image folders (and the demo images): every image is an item; cameras and videos: the arrival detector."""
    from dataclasses import replace

    from station.arrival import ArrivalDetector, ArrivalSettings, PhotoArrivals

    if feed_note(settings, demo_reason) is not None:
        return PhotoArrivals()
    arrival = ArrivalSettings(min_area=settings.arrival_min_area, settle_s=settings.arrival_settle_s,
                              diff_threshold=settings.arrival_threshold)
    return ArrivalDetector(arrival if settings.arrival_crop else replace(arrival, crop_margin=None))


def start_workers(window: MainWindow) -> None:
    for worker in (window.storage, window.inference, window.capture):
        worker.start()
