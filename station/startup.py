"""What the station does between launch and the live view, as plain functions (no Qt).

``start_station`` runs off the GUI thread while the start-up window shows each step it reports: loading
the model (TensorFlow takes seconds to import), then opening the source, falling back to the demo
images with the reason when it cannot be opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from station.settings import DEMO_DIR, Settings, SettingsError

if TYPE_CHECKING:  # both import TensorFlow / OpenCV: only when the steps run
    from station.camera import FrameSource
    from station.inference import Classifier, InferenceOptions
    from station.storage import Storage

log = logging.getLogger("station")

DEMO_INTERVAL = 2.0  # seconds per demo image when the settings' interval is 0

Report = Callable[[str], None]


@dataclass
class Started:
    """Everything the window needs, ready: a warmed-up model and a source factory."""

    classifier: Classifier
    factory: Callable[[], FrameSource]
    demo_reason: str | None  # why the demo images are shown instead of the configured source
    warnings: list[str] = field(default_factory=list)  # for the operator, once the window is up


def describe_source(source: str) -> str:
    return f"camera {source}" if source.isdigit() else source


def start_station(settings: Settings, model_dir: Path, report: Report) -> Started:
    """Load the data folder's active model (or ``model_dir``), then open the source; ``report`` each step."""
    from station.storage import Storage
    from training.quiet import import_tensorflow

    report("Starting TensorFlow (it takes several seconds)…")
    import_tensorflow()
    with Storage(settings.data_dir, settings.station_name, database_url=settings.database_url) as storage:
        classifier, warning = load_active_model(storage, model_dir, report, inference_options(settings))
    check_sorting_settings(settings, classifier.labels)
    report(f"Opening {describe_source(settings.source)}…")
    factory, demo_reason = choose_source(settings)
    if demo_reason:
        report(f"{describe_source(settings.source)} cannot be opened ({demo_reason}): "
               "showing the bundled demo images instead")
    return Started(classifier, factory, demo_reason, [warning] if warning else [])


def check_sorting_settings(settings: Settings, labels: tuple[str, ...]) -> None:
    """Settings that need the model's classes or name a broker: wrong ones stop the start with a message."""
    from station.bins import Bins
    from station.events import check_station_for_topic, parse_mqtt_url

    problems = []
    for check in (lambda: Bins(settings.bins, labels), lambda: settings.mqtt_url and parse_mqtt_url(settings.mqtt_url),
                  lambda: settings.mqtt_url and check_station_for_topic(settings.station_name)):
        try:
            check()
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError(problems)


def inference_options(settings: Settings) -> InferenceOptions:
    """The configured backend; converted backbones are cached in the data folder."""
    from station.inference import InferenceOptions
    from station.retraining import CACHE_DIR

    return InferenceOptions(settings.inference_backend, cache_dir=settings.data_dir / CACHE_DIR)


def load_active_model(
    storage: Storage, model_dir: Path, report: Report = log.info, options: InferenceOptions | None = None
) -> tuple[Classifier, str | None]:
    """The data folder's active model version; the configured bundle when none is active (or it is broken).

    Returns the classifier and, when the active version could not be used, a warning for the operator.
    Raises ``TrainingError`` when ``model_dir`` cannot be used either.
    """
    from station.inference import Classifier
    from station.retraining import activate_bundle
    from station.storage import StorageError
    from training.errors import TrainingError

    warning = None
    active = storage.active_version()
    if active is not None:
        report(f"Loading model {active.version}…")
        try:
            return Classifier.load(storage.version_path(active), active.version, options), None
        except TrainingError as exc:
            log.error("active model version %s unusable: %s", active.version, exc)
            warning = (f"Model version {active.version} cannot be used:\n{exc}\n\n"
                       f"Starting with {model_dir} instead; it becomes the active version "
                       "(Model versions… rolls back once the other one is repaired).")
    report(f"Loading model {model_dir.name}…")
    try:
        classifier = Classifier.load(model_dir, options=options)
    except TrainingError as exc:
        raise TrainingError(f"The model at {model_dir} cannot be used:\n{exc}") from exc
    try:  # the database says which model runs: the first time, or after an update replaced the bundled model
        activate_bundle(storage, model_dir)
    except StorageError as exc:  # e.g. locked by another station: the model runs; its row can wait
        log.warning("could not record %s as the active model version: %s", model_dir.name, exc)
    return classifier, warning


def choose_source(settings: Settings) -> tuple[Callable[[], FrameSource], str | None]:
    """The configured source, or the demo images when it cannot be opened at start.

    Returns a factory (the capture loop reopens sources after a loss) and the demo reason.
    """
    from station.camera import CameraError, FolderSource, open_source

    try:
        probe = open_source(settings.source, settings.interval)
        probe.open()
        probe.close()
    except CameraError as exc:  # start_station reports it; the window's banner shows it
        reason = str(exc)
        demo = FolderSource(DEMO_DIR, demo_interval(settings))
        return (lambda: demo), reason
    if isinstance(probe, FolderSource):  # one instance: a reopen resumes where it was, never at the first image
        return (lambda: probe), None
    return (lambda: open_source(settings.source, settings.interval)), None


def demo_interval(settings: Settings) -> float:
    return settings.interval or DEMO_INTERVAL


def feed_note(settings: Settings, demo_reason: str | None) -> str | None:
    """What the status bar says instead of "live" for image folders (None: a camera, stream or video)."""
    if demo_reason is not None:
        return f"demo, one image every {demo_interval(settings):g} s"
    if not Path(settings.source).expanduser().is_dir():
        return None
    if settings.interval == 0:
        return "folder, next image after each decision"
    return f"folder, one image every {settings.interval:g} s"
