"""Retraining on a site's decisions: candidate model, side-by-side metrics, promotion gate.

A plain function over plain inputs (``retrain(request, progress, cancelled)``): the station
gathers its decisions and runs this in a child process; tests call it directly.

Every decision teaches: none is set aside for ever. The gate compares the running model and the
candidate on the decisions the running model judged live (its prediction then is an honest one),
the candidate's predictions coming from models that did not train on them (``training.gate``).

fast: a new softmax head on backbone embeddings (the site's stored with each decision, the base
data's shipped with the bundle or computed once and cached), fitted on standardised features,
class-weighted, the site's share of the weight growing with its number of decisions, and anchored to
the running head (the L2 penalty pulls towards it, not towards zero), so a few corrections move it
only as far as they are evidence for. The backbone is
untouched, so both models are scored from embeddings; the candidate's site score is cross-validated.
full: the top of the backbone fine-tuned on base + site images (augmented, class-weighted, site
weighted as in fast mode, BatchNorm frozen), scored on images; a fifth of the judged decisions is
kept out of this run to judge it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from numpy.typing import NDArray

from training.data import load_arrays, load_split
from training.embeddings import (
    BASE_EMBEDDINGS,
    Embeddings,
    compute_base_embeddings,
    embed,
    load_embeddings,
    model_sha256,
    save_embeddings,
)
from training.errors import TrainingError
from training.evaluate import compute_metrics, label_indices
from training.files import make_work_folder, replace_folder, write_json
from training.gate import DEFAULT_MAX_BASE_DROP, SITE_CHECKS, PairedOutcome, decide, site_checks
from training.head import Head, Standardizer, fit_head, sample_weights, site_share
from training.lite import add_backbone_file
from training.messages import FINAL_PHASE, Mode, PartScores, Progress, RetrainProgress, RetrainReport, Scores
from training.model import (
    Bundle,
    build_model,
    export_model,
    load_bundle,
    save_bundle_files,
    unfreeze_top,
)
from training.preprocess import load_prepared

SITE_PSEUDO_COUNT = 60.0  # site decisions at which the site weighs as much as the base data (measured)
MIN_SITE_SHARE = 0.5  # the share never goes below this when stepped down to keep the base test accuracy
CV_FOLDS = 5


class RetrainCancelled(Exception):  # noqa: N818 (an outcome, not an error)
    """The operator cancelled; nothing was written."""


@dataclass(frozen=True)
class SiteSample:
    """One stored decision: the operator's label is the truth."""

    image: Path
    label: str
    embedding: NDArray[np.float32] | None
    running_label: str | None = None  # what the running model said live; None if another model judged it


@dataclass
class RetrainRequest:
    parent: Path  # bundle of the running model
    samples: list[SiteSample]
    out: Path  # where the candidate bundle goes (must not exist yet)
    cache_dir: Path  # base-data embeddings, one file per parent bundle
    base_data_dir: Path | None = None  # default: the parent's training data folder (its config.json)
    site_share: float | None = None  # the site's share of the training weight; None: n / (n + SITE_PSEUDO_COUNT)
    max_base_drop: float = DEFAULT_MAX_BASE_DROP  # the gate's allowed fall of base test accuracy
    # What that fall counts from: the shipped model's base test accuracy, so that retraining after
    # retraining cannot drift down 0.05 at a time; None: the running model's.
    base_reference: float | None = None
    l2: float = 1.0
    cache_key: str | None = None  # models sharing a backbone share base embeddings; default: the parent's name
    backbone_bundle: Path | None = None  # the bundle whose backbone the parent uses (default: the parent)
    mode: Mode = Mode.FAST
    epochs: int = 8  # full mode
    fine_tune_fraction: float = 0.3  # full mode: share of backbone layers unfrozen
    learning_rate: float = 1e-4  # full mode
    batch_size: int = 32  # full mode
    replay_per_class: int = 60  # full mode: base training photos of each class replayed beside the site's


def base_reference(request: RetrainRequest, running_accuracy: float) -> float:
    return running_accuracy if request.base_reference is None else request.base_reference


def retrain(
    request: RetrainRequest, progress: Progress | None = None, cancelled: Callable[[], bool] = lambda: False
) -> RetrainReport:
    started = time.monotonic()
    report = progress or (lambda _: None)

    def step(phase: str, done: int, total: int) -> None:
        if cancelled():
            raise RetrainCancelled("retraining cancelled")
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else None
        report(RetrainProgress(phase, done, total, elapsed, eta))

    if request.out.exists() and any(request.out.iterdir()):  # an empty one is the caller's reservation of the name
        raise TrainingError(f"candidate folder already exists: {request.out}")
    if request.mode not in tuple(Mode):
        raise TrainingError(f"unknown retraining mode {request.mode!r}: use fast or full")
    parent = load_bundle(request.parent)
    labels = parent.labels
    unknown = sorted({s.label for s in request.samples} - set(labels))
    if unknown:
        raise TrainingError(f"decisions with class(es) the model does not know: {', '.join(unknown)}")
    if not request.samples:
        raise TrainingError("no decisions to learn from yet")
    y_site = label_indices([s.label for s in request.samples], labels)
    judged = [i for i, s in enumerate(request.samples) if s.running_label in labels]
    run = retrain_full if request.mode == Mode.FULL else retrain_fast
    fitted = run(parent, request, y_site, judged, step, cancelled)
    paired = PairedOutcome.of(fitted.judged_y, fitted.running, fitted.candidate)
    current = PartScores(scored(fitted.judged_y, fitted.running, labels), fitted.base_current)
    candidate = PartScores(scored(fitted.judged_y, fitted.candidate, labels), fitted.base_candidate)
    reference = base_reference(request, current.base_test.accuracy)
    verdict = decide(paired, reference, candidate.base_test.accuracy, request.max_base_drop)
    checks = site_checks(labels, fitted.judged_y, fitted.candidate_probabilities)
    write_candidate(parent, fitted.model, request, {"decisions": asdict(candidate), "counts": fitted.counts,
                                                    "gate": verdict.reason, "gate_rule": verdict.rule,
                                                    SITE_CHECKS: checks})
    step(FINAL_PHASE, 1, 1)
    return RetrainReport(
        candidate=str(request.out), current=current, candidate_metrics=candidate, counts=fitted.counts,
        seconds=time.monotonic() - started, gate_passed=verdict.promote, gate_reason=verdict.reason,
        gate_rule=verdict.rule, paired=paired, site_share=fitted.site_share,
    )


Step = Callable[[str, int, int], None]
Parts = dict[str, dict[str, Any]]


@dataclass
class Fitted:
    """A mode's candidate with what the gate needs: paired predictions on judged decisions, base test scores."""

    model: keras.Model
    judged_y: NDArray[np.int64]  # the operator's labels of the decisions the gate compares on
    running: NDArray[np.int64]  # the running model's live predictions of them
    candidate_probabilities: NDArray[np.float32]  # the candidate's, from models that did not train on them
    base_current: Scores
    base_candidate: Scores
    counts: dict[str, int]
    site_share: float | None = None  # the share of the training weight the site's decisions got

    @property
    def candidate(self) -> NDArray[np.int64]:
        predicted: NDArray[np.int64] = self.candidate_probabilities.argmax(axis=1)
        return predicted


def folds_of(y: NDArray[np.int64], k: int, seed: int = 0) -> NDArray[np.int64]:
    """A fold number per item, each class dealt round the folds in a seeded random order (stratified)."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        folds[members] = np.arange(len(members)) % k
    return folds


def retrain_fast(
    parent: Bundle, request: RetrainRequest, y_site: NDArray[np.int64], judged: list[int],
    step: Step, cancelled: Callable[[], bool],
) -> Fitted:
    """A new head on every decision; its site score cross-validated on the judged ones."""
    labels = parent.labels
    folds = min(CV_FOLDS, len(judged))
    total = 3 + folds
    step("base embeddings", 0, total)
    base = base_embeddings(parent, request, lambda done, all_: step("base embeddings", done, all_))
    step("site embeddings", 1, total)
    site = site_embeddings(parent, request.samples)
    standardizer = Standardizer.of(base["train_x"])
    running_head = Head.of(parent.model)

    def fit(keep: NDArray[np.bool_], share: float) -> Head:
        x = np.vstack([base["train_x"], site[keep]])
        y = np.concatenate([base["train_y"], y_site[keep]])
        is_site = np.r_[np.zeros(len(base["train_y"]), bool), np.ones(int(keep.sum()), bool)]
        weights = sample_weights(y, is_site, len(labels), share)
        return fit_head(x, y, weights, len(labels), request.l2, standardizer, prior=running_head)

    step("fit head", 2, total)
    everything = np.ones(len(y_site), bool)
    test = (base["test_x"], base["test_y"])
    running_base = part_metrics(running_head, *test, labels)
    base_now = base_reference(request, running_base.accuracy)
    share = request.site_share if request.site_share is not None else site_share(len(y_site), SITE_PSEUDO_COUNT)
    head = fit(everything, share)
    # The site as much as the gate's base limit allows: a head that would fail it is refitted with the
    # site's share stepped halfway down towards an even split (at most twice).
    for _ in range(2):
        drop = base_now - part_metrics(head, *test, labels).accuracy
        if request.site_share is not None or drop <= request.max_base_drop or share <= MIN_SITE_SHARE:
            break
        share = MIN_SITE_SHARE + (share - MIN_SITE_SHARE) / 2
        head = fit(everything, share)
    judged_idx = np.array(judged, dtype=np.int64)
    candidate = np.empty((len(judged_idx), len(labels)), dtype=np.float32)
    fold_of = folds_of(y_site[judged_idx], folds) if folds else np.array([], dtype=np.int64)
    for k in range(folds):
        step("cross-validation", 3 + k, total)
        held = judged_idx[fold_of == k]
        keep = np.ones(len(y_site), bool)
        keep[held] = False
        candidate[fold_of == k] = fit(keep, share).probabilities(site[held])
    running = label_indices([request.samples[i].running_label or "" for i in judged], labels)
    model = export_model(parent.model, parent.image_size, len(labels))
    head.install(model)
    return Fitted(
        model, y_site[judged_idx], running, candidate, running_base, part_metrics(head, *test, labels),
        {"base_train": len(base["train_y"]), "site_train": len(y_site), "site_judged": len(judged)},
        site_share=share,
    )


def retrain_full(
    parent: Bundle, request: RetrainRequest, y_site: NDArray[np.int64], judged: list[int],
    step: Step, cancelled: Callable[[], bool],
) -> Fitted:
    """Fine-tune the top of the backbone (BatchNorm frozen) on site images and a replayed sample of the base
    training split, with augmentation; a fifth of the judged decisions is kept out to judge the result."""
    from training.train import train_pipeline  # the same input pipeline as a training run

    labels, size = parent.labels, parent.image_size
    data_dir = base_data_folder(parent, request)
    split = load_split(parent.path / "split.json")
    total = request.epochs + 2
    step("loading images", 0, total)
    judged_idx = np.array(judged, dtype=np.int64)
    held = judged_idx[folds_of(y_site[judged_idx], CV_FOLDS) == 0] if len(judged) >= 2 else judged_idx[:0]
    train_site = np.setdiff1d(np.arange(len(y_site)), held)
    site_images = np.stack([load_prepared(s.image, size) for s in request.samples])
    replay = replay_sample(split["train"], request.replay_per_class)
    y_base = label_indices([p.split("/", 1)[0] for p in replay], labels)
    x = np.concatenate([load_arrays(data_dir, replay, size), site_images[train_site]])
    y = np.concatenate([y_base, y_site[train_site]])
    is_site = np.r_[np.zeros(len(y_base), bool), np.ones(len(train_site), bool)]
    share = request.site_share if request.site_share is not None else site_share(len(train_site), SITE_PSEUDO_COUNT)
    weights = sample_weights(y, is_site, len(labels), share)
    x_val = load_arrays(data_dir, split["val"], size).astype(np.float32)
    y_val = keras.utils.to_categorical(label_indices([p.split("/", 1)[0] for p in split["val"]], labels), len(labels))

    model = build_model(len(labels), None, size, parent.model.get_layer("head_dropout").rate, freeze_backbone=True)
    model.set_weights(parent.model.get_weights())
    unfreeze_top(model, request.fine_tune_fraction)
    model.compile(optimizer=keras.optimizers.AdamW(request.learning_rate, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    model.fit(
        train_pipeline(x, y, weights, len(labels), request.batch_size, augment=0.8, mixup_alpha=0.0, seed=0),
        validation_data=(x_val, y_val), epochs=request.epochs, verbose=0, shuffle=False,  # the pipeline shuffles
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
                   EpochProgress(step, total, cancelled)],
    )
    if cancelled():
        raise RetrainCancelled("retraining cancelled")
    step("evaluate", request.epochs + 1, total)
    candidate_model = export_model(model, size, len(labels))
    test_x = load_arrays(data_dir, split["test"], size)
    test_y = label_indices([p.split("/", 1)[0] for p in split["test"]], labels)
    running = label_indices([request.samples[i].running_label or "" for i in held], labels)
    return Fitted(
        candidate_model, y_site[held], running, predict_probabilities(candidate_model, site_images[held]),
        scored(test_y, predict_images(parent.model, test_x), labels),
        scored(test_y, predict_images(candidate_model, test_x), labels),
        {"base_train": len(y_base), "site_train": len(train_site), "site_judged": len(held)},
        site_share=share,
    )


def replay_sample(paths: list[str], per_class: int, seed: int = 0) -> list[str]:
    """Up to ``per_class`` base training photos of each class: enough to keep the base classes in mind."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for path in paths:
        by_class.setdefault(path.split("/", 1)[0], []).append(path)
    picked = [p for members in by_class.values() for p in rng.permutation(members)[:per_class]]
    return sorted(str(p) for p in picked)


class EpochProgress(keras.callbacks.Callback):
    """One progress event per epoch; a cancel request stops the fit after the current batch."""

    def __init__(self, step: Step, total: int, cancelled: Callable[[], bool]) -> None:
        super().__init__()
        self.step, self.total, self.cancelled = step, total, cancelled

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.cancelled():
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.cancelled():
            self.step(f"fine-tune epoch {epoch + 1}", epoch + 1, self.total)


def predict_probabilities(model: keras.Model, images: NDArray[np.uint8]) -> NDArray[np.float32]:
    if not len(images):
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    probabilities: NDArray[np.float32] = model.predict(images.astype(np.float32), batch_size=32, verbose=0)
    return probabilities


def predict_images(model: keras.Model, images: NDArray[np.uint8]) -> NDArray[np.int64]:
    predicted: NDArray[np.int64] = predict_probabilities(model, images).argmax(axis=1)
    return predicted


def part_metrics(head: Head, x: NDArray[np.float32], y: NDArray[np.int64], labels: list[str]) -> Scores:
    return scored(y, head.probabilities(x).argmax(axis=1) if len(y) else y, labels)


def scored(y: NDArray[np.int64], predicted: NDArray[np.int64], labels: list[str]) -> Scores:
    if len(y) == 0:
        return Scores(count=0, accuracy=0.0, macro_f1=0.0, labels=labels)
    return Scores.from_json({"count": len(y), **compute_metrics(y, predicted, labels)})


def site_embeddings(parent: Bundle, samples: list[SiteSample]) -> NDArray[np.float32]:
    """Stored embeddings where they came from this backbone; others are computed from the image."""
    width = int(parent.model.get_layer("embedding").output.shape[-1])
    out = np.empty((len(samples), width), dtype=np.float32)
    missing = []
    for i, sample in enumerate(samples):
        if sample.embedding is not None and sample.embedding.shape == (width,):
            out[i] = sample.embedding
        else:
            missing.append(i)
    if missing:
        images = np.stack([load_prepared(samples[i].image, parent.image_size) for i in missing])
        out[missing] = embed(parent, images)
    return out


def base_embeddings(
    parent: Bundle, request: RetrainRequest, progress: Callable[[int, int], None]
) -> Embeddings:
    """The base train and test splits' embeddings from the parent's backbone.

    First the station's cache, then the file shipped in the bundle the backbone comes from, and only
    then computed from the base data (and cached). Each is checked against that bundle's model.keras.
    """
    source = request.backbone_bundle or parent.path
    model_hash = model_sha256(source)
    cache = request.cache_dir / f"{request.cache_key or parent.name}-base-embeddings.npz"
    for path in (cache, source / BASE_EMBEDDINGS):
        found = load_embeddings(path, model_hash)
        if found is not None:
            return found
    result = compute_base_embeddings(parent, base_data_folder(parent, request), progress)
    save_embeddings(cache, result, model_hash)
    return result


def base_data_folder(parent: Bundle, request: RetrainRequest) -> Path:
    """The request's base data, else the parent's training folder (a relative one counts from the bundle)."""
    data_dir = request.base_data_dir or parent.path / (parent.config.data_dir if parent.config else "")
    if not data_dir.is_dir():
        raise TrainingError(
            f"the base data of {parent.path} is not at {data_dir.resolve()}; give its folder (--base-data)")
    return data_dir


def write_candidate(parent: Bundle, model: keras.Model, request: RetrainRequest, metrics: dict[str, Any]) -> None:
    """The candidate model with the parent's labels, written beside ``out`` and renamed into place."""
    request.out.parent.mkdir(parents=True, exist_ok=True)
    work = make_work_folder(request.out)
    try:
        save_bundle_files(model, parent.labels, work)
        add_backbone_file(model, work, parent.path, convert_new=request.mode == Mode.FULL)  # fast: the parent's
        write_json(work / "metrics.json", metrics)
        # The parent's run settings and where the candidate came from. A parent without them (a bundle not made by
        # training.train) gives no config.json: one without data_dir/out would make the candidate unloadable, and
        # the version registry keeps its parent and mode anyway.
        if parent.config is not None:
            lineage = {"parent": str(parent.path), "mode": request.mode}
            write_json(work / "config.json", {**asdict(parent.config), **lineage})
        if (parent.path / "split.json").is_file():
            shutil.copy(parent.path / "split.json", work / "split.json")
        replace_folder(work, request.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
