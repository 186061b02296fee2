"""Retraining from the station's side: decisions -> candidate bundle -> model version -> promotion. No Qt.

``run_retrain(job, progress, cancelled)`` is a plain function (CLI, tests); ``child_main`` runs it in a
spawned child process for the GUI and reports through a queue. The database is written only once the
candidate bundle is complete: on any failure or cancel, the candidate folder and its partial leftovers are
removed and no version row is added.

Embedding reuse: a fast candidate keeps its parent's backbone, so an embedding stored with a decision is
valid for the new head only if the decision's model shares the parent's backbone, i.e. both walk back
through "fast" parents to the same bundled/full version. Any other decision is re-embedded from its image.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from station.storage import (
    ACTIVE,
    AUTO,
    CANDIDATE,
    DB_NAME,
    DecisionRecord,
    Storage,
    StorageError,
    VersionRecord,
    queries,
)
from training.errors import TrainingError
from training.files import read_json, read_labels
from training.messages import (
    Mode,
    Progress,
    Promote,
    RetrainFailed,
    RetrainOutcome,
    RetrainProgress,
    RetrainStopped,
    SkippedImage,
)
from training.preprocess import load_rgb
from training.quiet import import_tensorflow

if TYPE_CHECKING:  # TensorFlow loads only when a retraining actually runs
    from training.retrain import SiteSample

log = logging.getLogger(__name__)

MODES = tuple(m.value for m in Mode)
PROMOTE_POLICIES = tuple(p.value for p in Promote)
CACHE_DIR = "cache"
PARTIAL_GLOB = ".*.partial-*"  # what training.retrain.write_candidate leaves when its process dies


@dataclass(frozen=True)
class RetrainJob:
    """Everything a retraining needs; plain and picklable (sent to a spawned child process)."""

    data_dir: Path
    default_model: Path  # the bundled model, used while no version is active yet
    mode: Mode = Mode.FAST
    promote: Promote = Promote.AUTO
    base_data_dir: Path | None = None  # default: the parent bundle's training data folder (its config.json)
    site_share: float | None = None  # None: grows with the number of decisions (training.head.site_share)
    max_base_drop: float = 0.05  # the gate's allowed fall of base test accuracy
    learn_from_auto: bool = False  # also learn from kind "auto" decisions (the model's own unchecked guesses)
    database_url: str = ""  # the stations' shared database; "" = station.db in data_dir


@dataclass
class LearningTrigger:
    """When the station learns without a click: after every ``every`` new decisions (0 = never), one
    retraining at a time. Decisions saved while a retraining runs count towards the next one."""

    every: int
    pending: int = 0
    learn_from_auto: bool = False

    def decision_saved(self, kind: str | None = None) -> None:
        if kind != AUTO or self.learn_from_auto:  # an auto decision teaches nothing new unless asked to
            self.pending += 1

    def due(self, running: bool) -> bool:
        return self.every > 0 and not running and self.pending >= self.every

    def started(self) -> None:
        self.pending = 0


def outcome_line(outcome: RetrainOutcome) -> str:
    """One line for the status bar: what the last retraining did and which rule of the gate decided."""
    verdict = "now running" if outcome.promoted else "kept as a candidate"
    site = outcome.paired
    score = ""
    if site is not None and site.count:
        score = f", site {site.running_accuracy:.0%} → {site.candidate_accuracy:.0%} of {site.count}"
    return f"{outcome.version} {verdict} ({outcome.gate_rule}{score})"


def check_job(job: RetrainJob) -> None:
    """Raise ``TrainingError`` for options this station cannot run."""
    if job.mode not in MODES:
        raise TrainingError(f"unknown retraining mode {job.mode!r}; use --mode fast or --mode full")
    if job.promote not in PROMOTE_POLICIES:
        raise TrainingError(f"unknown promotion policy {job.promote!r}; use one of {', '.join(PROMOTE_POLICIES)}")
    if job.site_share is not None and not 0.0 < job.site_share <= 1.0:
        raise TrainingError(f"site_share must be in (0, 1], got {job.site_share!r}")
    if not 0.0 <= job.max_base_drop <= 1.0:
        raise TrainingError(f"max_base_drop must be in [0, 1], got {job.max_base_drop!r}")


# ----------------------------------------------------------------------------------------------- versions


def _peek_current(storage: Storage, default_model: Path) -> tuple[str, Path]:
    active = storage.active_version()
    if active is not None:
        return active.version, storage.version_path(active)
    default = Path(default_model).expanduser()
    return default.name, default


def current_model(storage: Storage, default_model: Path) -> tuple[str, Path]:
    """(name, bundle folder) of the active version; the first time, registers the bundled model as active."""
    active = storage.active_version()
    if active is None:
        bundle = Path(default_model).expanduser()
        with storage.write(f"register model version {bundle.name!r}") as s:
            # asked again under the write lock: another process may have registered one meanwhile
            active = queries.active_version(s) or _activate_bundle(s, storage, bundle)
    return active.version, storage.version_path(active)


def activate_bundle(storage: Storage, bundle: Path) -> VersionRecord:
    """Make ``bundle`` the active version: registered as "bundled" the first time, re-activated afterwards."""
    bundle = Path(bundle).expanduser()
    with storage.write(f"activate model version {bundle.name!r}") as s:
        return _activate_bundle(s, storage, bundle)


def _activate_bundle(s: Session, storage: Storage, bundle: Path) -> VersionRecord:
    return queries.activate_or_add(s, bundle.name, storage.stored_path(bundle), "bundled")


def backbone_root(name: str | None, lineage: dict[str, tuple[str, str | None]]) -> str | None:
    """The version whose backbone ``name`` uses: follow "fast" parents; None when the chain is unknown."""
    seen: set[str] = set()
    while name is not None and name in lineage and name not in seen:
        seen.add(name)
        mode, parent = lineage[name]
        if mode != Mode.FAST:
            return name
        name = parent
    return None


# ----------------------------------------------------------------------------------------------- retraining


def _samples(
    storage: Storage, records: list[DecisionRecord], parent_name: str, needs_images: bool = False
) -> tuple[list[SiteSample], int, list[SkippedImage], str]:
    """Site samples, reusing embeddings from the parent's backbone (``needs_images``: full mode decodes them all).

    A decision the parent itself judged live keeps its prediction (``running_label``): the gate's honest
    score of the running model. Decisions whose image is needed but missing are counted and skipped;
    unreadable ones are skipped and listed (decision id, path, reason). Also returns the name of the
    version whose backbone the parent uses (the base-embedding cache key).
    """
    from training.retrain import SiteSample

    lineage = {v.version: (v.mode, v.parent) for v in storage.versions()}
    lineage.setdefault(parent_name, ("bundled", None))  # the bundled model before it is registered
    root = backbone_root(parent_name, lineage)
    roots: dict[str | None, str | None] = {}
    samples: list[SiteSample] = []
    skipped, unreadable = 0, []
    for rec in records:
        if rec.model_version not in roots:
            roots[rec.model_version] = backbone_root(rec.model_version, lineage)
        same_backbone = root is not None and roots[rec.model_version] == root
        embedding = rec.embedding if same_backbone else None
        image = storage.image_file(rec)
        if embedding is None or needs_images:  # the core will decode this image
            if not image.is_file():
                log.warning("decision %d: image %s is missing; left out of the retraining", rec.id, image)
                skipped += 1
                continue
            problem = _unreadable(image)
            if problem is not None:
                log.warning("decision %d: image %s is unreadable (%s); left out of the retraining", rec.id, image,
                            problem)
                unreadable.append(SkippedImage(rec.id, str(image), problem))
                continue
        # An auto decision's label is the running model's own answer: it may teach (learn_from_auto), never judge.
        running = rec.predicted_label if rec.model_version == parent_name and rec.kind != AUTO else None
        samples.append(SiteSample(image=image, label=rec.operator_label, embedding=embedding, running_label=running))
    return samples, skipped, unreadable, root or parent_name


def learnable(records: list[DecisionRecord], learn_from_auto: bool) -> list[DecisionRecord]:
    """The decisions retraining may learn from: not the station's own auto-confirmed guesses, unless asked to."""
    return records if learn_from_auto else [r for r in records if r.kind != AUTO]


def _unreadable(image: Path) -> str | None:
    """Why a stored image cannot be decoded (truncated, corrupt), or None: one bad file must not stop a retraining."""
    try:
        load_rgb(image)
    except Exception as exc:  # Pillow raises many types for bad data
        return f"{type(exc).__name__}: {exc}"
    return None


def shipped_accuracy(bundle: Path) -> float | None:
    """The shipped model's base test accuracy (its metrics.json): what the gate's base limit counts from."""
    path = Path(bundle).expanduser() / "metrics.json"
    if not path.is_file():
        return None
    accuracy = read_json(path, "metrics").get("accuracy")
    return float(accuracy) if isinstance(accuracy, int | float) else None


def _bundle_of(storage: Storage, version: str, parent_name: str, parent_path: Path) -> Path:
    """The bundle folder of ``version`` (the parent's own when it is the parent or unknown)."""
    record = storage.get_version(version) if version != parent_name else None
    return parent_path if record is None else storage.version_path(record)


def _remove_candidate(models_dir: Path, name: str) -> None:
    for folder in [models_dir / name, *models_dir.glob(f".{name}.partial-*")]:
        shutil.rmtree(folder, ignore_errors=True)


def clean_partials(data_dir: Path | str, database_url: str = "") -> list[Path]:
    """Remove what a crashed retraining left under ``models/``: work folders (``.*.partial-*``) and a complete
    candidate it had no time to register; returns what was removed.

    Call it only when no retraining runs on this data folder (it would remove that run's work folder).
    """
    models_dir = Path(data_dir).expanduser() / "models"
    if not database_url and not (Path(data_dir).expanduser() / DB_NAME).is_file():  # no registry: only work folders
        removed = [p for p in models_dir.glob(PARTIAL_GLOB) if p.is_dir()] if models_dir.is_dir() else []
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return removed
    with Storage(data_dir, database_url=database_url) as storage:  # sweeps too when no one else has the folder open
        return storage.swept.removed + [path for path, _ in storage.remove_model_leftovers()]


def run_retrain(
    job: RetrainJob, progress: Progress | None = None, cancelled: Callable[[], bool] = lambda: False
) -> RetrainOutcome:
    """Retrain on every stored decision, register the candidate, promote it by ``job.promote``."""
    check_job(job)
    started = time.monotonic()
    with Storage(job.data_dir, database_url=job.database_url) as storage:
        stored = storage.all_decisions()
        records = learnable(stored, job.learn_from_auto)
        if not records:
            left_out = f" ({len(stored)} auto-confirmed ones left out: learn_from_auto = false)" if stored else ""
            raise TrainingError(
                f"no decisions stored yet in {storage.data_dir}{left_out}; confirm or correct some items first"
            )
        parent_name, parent_path = _peek_current(storage, job.default_model)
        if not parent_path.is_dir():
            raise TrainingError(f"model bundle not found: {parent_path} (version {parent_name})")
        labels = read_labels(parent_path)
        report = progress or (lambda _: None)
        report(RetrainProgress("preparing", 0, 4))

        from training import retrain as core  # TensorFlow: only now

        if cancelled():
            raise core.RetrainCancelled("retraining cancelled")
        samples, skipped, unreadable, backbone = _samples(storage, records, parent_name, job.mode == Mode.FULL)
        for bad in unreadable:
            report(RetrainProgress(f"skipped decision {bad.id}: unreadable image {bad.path}", 0, 4,
                                   time.monotonic() - started, skipped=bad))
        if not samples:
            raise TrainingError(f"none of the {len(records)} decisions in {storage.data_dir} has its image file")

        name = storage.reserve_version_name()  # its empty folder is ours: removed with the candidate on failure
        out = storage.models_dir / name
        try:
            request = core.RetrainRequest(
                parent=parent_path, samples=samples, out=out, cache_dir=storage.data_dir / CACHE_DIR,
                base_data_dir=job.base_data_dir, site_share=job.site_share, max_base_drop=job.max_base_drop,
                base_reference=shipped_accuracy(job.default_model),
                cache_key=backbone, mode=job.mode,
                backbone_bundle=_bundle_of(storage, backbone, parent_name, parent_path),
            )
            result = core.retrain(request, report, cancelled)
            if cancelled():
                raise core.RetrainCancelled("retraining cancelled")
            promote = job.promote == Promote.ALWAYS or (job.promote == Promote.AUTO and result.gate_passed)
            current_model(storage, job.default_model)  # the bundled parent gets its row (rollback target)
            record = storage.add_version(
                name, out, job.mode, parent=parent_name, counts=result.counts, metrics=result.to_json(),
                status=ACTIVE if promote else CANDIDATE,
            )
        except BaseException:
            _remove_candidate(storage.models_dir, name)
            raise

    seen = {s.label for s in samples}
    return RetrainOutcome.of(
        replace(result, candidate=str(out), seconds=round(time.monotonic() - started, 2)),
        version=record.version, parent=parent_name, mode=Mode(job.mode), status=record.status, promoted=promote,
        decisions=len(samples), skipped_missing_images=skipped, skipped_unreadable_images=unreadable,
        classes_without_decisions=[label for label in labels if label not in seen],
    )


# ----------------------------------------------------------------------------------------------- child process


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...


class _Event(Protocol):
    def is_set(self) -> bool: ...


CHILD_NICENESS = 10
CHILD_THREADS = max(1, (os.cpu_count() or 2) - 1)  # one core stays with the live view


def yield_to_the_station() -> None:
    """Make this (child) process the polite one: lower priority and a bounded thread count, so the camera
    loop and the live predictions keep their pace while a retraining runs beside them."""
    try:
        os.nice(CHILD_NICENESS)
    except (AttributeError, OSError):  # Windows has no nice(); priority then stays as it is
        log.debug("could not lower the retraining process's priority")
    from threadpoolctl import threadpool_limits  # BLAS/OpenMP pools of numpy and scikit-learn

    threadpool_limits(CHILD_THREADS)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(CHILD_THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def child_main(job: RetrainJob, events: _Queue, cancel: _Event) -> None:
    """Entry point of the spawned retraining process: progress events, then one result/cancelled/error event."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if multiprocessing.parent_process() is not None:  # a real child: its log goes to its stderr
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        import_tensorflow()  # first, without its start-up notes in the operator's terminal
        yield_to_the_station()
    try:
        outcome = run_retrain(job, events.put, cancel.is_set)
    except Exception as exc:
        events.put(failure_event(exc))
    else:
        events.put(outcome)


def failure_event(exc: Exception) -> RetrainFailed | RetrainStopped:
    core = sys.modules.get("training.retrain")  # imported by now unless the import itself failed
    if core is not None and isinstance(exc, core.RetrainCancelled):
        log.info("retraining cancelled")
        return RetrainStopped()
    if isinstance(exc, TrainingError | StorageError):
        log.error("retraining failed: %s", exc)
        return RetrainFailed(str(exc))
    log.exception("retraining failed")
    return RetrainFailed(f"{type(exc).__name__}: {exc}")
