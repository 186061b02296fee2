"""Retraining on a site's decisions: candidate model, side-by-side metrics, promotion gate.

A plain function over plain inputs (``retrain(request, progress, cancelled)``): the station
gathers its decisions and runs this in a child process; tests call it directly.

fast: a new softmax head on backbone embeddings (the site's stored with each decision, the
base data's computed once per model and cached), class-weighted, the site's decisions
weighted up. The backbone is untouched, so both models are scored from embeddings.
full: the top of the backbone fine-tuned on base + site images (augmented, class-weighted,
site weighted up, BatchNorm frozen), scored on images.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from training.head import Head, fit_head, sample_weights
from training.lite import add_backbone_file
from training.model import (
    Bundle,
    build_model,
    export_model,
    load_bundle,
    save_bundle_files,
    unfreeze_top,
)
from training.preprocess import load_prepared

Progress = Callable[[dict[str, Any]], None]
MAX_BASE_F1_DROP = 0.01


class RetrainCancelled(Exception):  # noqa: N818 (an outcome, not an error)
    """The operator cancelled; nothing was written."""


@dataclass(frozen=True)
class SiteSample:
    """One stored decision: the operator's label is the truth."""

    image: Path
    label: str
    embedding: NDArray[np.float32] | None
    holdout: bool  # fixed when stored; never trained on


@dataclass
class RetrainRequest:
    parent: Path  # bundle of the running model
    samples: list[SiteSample]
    out: Path  # where the candidate bundle goes (must not exist yet)
    cache_dir: Path  # base-data embeddings, one file per parent bundle
    base_data_dir: Path | None = None  # default: the parent's training data folder (its config.json)
    site_share: float = 0.5  # share of the total training weight given to the site's decisions
    l2: float = 1.0
    cache_key: str | None = None  # models sharing a backbone share base embeddings; default: the parent's name
    backbone_bundle: Path | None = None  # the bundle whose backbone the parent uses (default: the parent)
    mode: str = "fast"  # "fast": new head on embeddings; "full": fine-tune the top of the backbone on images
    epochs: int = 8  # full mode
    fine_tune_fraction: float = 0.3  # full mode: share of backbone layers unfrozen
    learning_rate: float = 1e-4  # full mode
    batch_size: int = 32  # full mode


@dataclass
class RetrainReport:
    candidate: Path
    current: dict[str, dict[str, Any]]  # part ("decisions", "base_test") -> metrics
    candidate_metrics: dict[str, dict[str, Any]]
    counts: dict[str, int]
    seconds: float
    gate_passed: bool
    gate_reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "candidate": str(self.candidate), "seconds": round(self.seconds, 2), "counts": self.counts,
            "gate_passed": self.gate_passed, "gate_reason": self.gate_reason,
            "current": self.current, "candidate_metrics": self.candidate_metrics,
        }


def gate(current: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Promote only if macro-F1 on held-out decisions rises and base-test macro-F1 drops by at most 0.01."""
    now, new = current["decisions"]["macro_f1"], candidate["decisions"]["macro_f1"]
    base_now, base_new = current["base_test"]["macro_f1"], candidate["base_test"]["macro_f1"]
    if current["decisions"]["count"] == 0:
        return False, "no held-out decisions to judge the candidate on"
    if new <= now:
        return False, f"held-out decisions macro-F1 did not rise ({now:.3f} -> {new:.3f})"
    if base_now - base_new > MAX_BASE_F1_DROP:
        return False, f"base test macro-F1 dropped by {base_now - base_new:.3f} (> {MAX_BASE_F1_DROP})"
    return True, f"held-out decisions macro-F1 {now:.3f} -> {new:.3f}, base test {base_now:.3f} -> {base_new:.3f}"


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
        report({"phase": phase, "done": done, "total": total, "elapsed": elapsed, "eta": eta})

    if request.out.exists():
        raise TrainingError(f"candidate folder already exists: {request.out}")
    if request.mode not in ("fast", "full"):
        raise TrainingError(f"unknown retraining mode {request.mode!r}: use fast or full")
    parent = load_bundle(request.parent)
    labels = parent.labels
    unknown = sorted({s.label for s in request.samples} - set(labels))
    if unknown:
        raise TrainingError(f"decisions with class(es) the model does not know: {', '.join(unknown)}")
    train_site = [i for i, s in enumerate(request.samples) if not s.holdout]
    held_site = [i for i, s in enumerate(request.samples) if s.holdout]
    if not train_site:
        raise TrainingError("no decisions to learn from yet (every stored decision so far is in the held-out 20 %)")
    y_site = label_indices([s.label for s in request.samples], labels)
    run = retrain_full if request.mode == "full" else retrain_fast
    model, current, candidate, counts = run(parent, request, train_site, held_site, y_site, step, cancelled)
    passed, reason = gate(current, candidate)
    write_candidate(parent, model, request, {"decisions": candidate, "counts": counts, "gate": reason})
    step("done", 1, 1)
    return RetrainReport(request.out, current, candidate, counts, time.monotonic() - started, passed, reason)


Step = Callable[[str, int, int], None]
Parts = dict[str, dict[str, Any]]


def retrain_fast(
    parent: Bundle, request: RetrainRequest, train_site: list[int], held_site: list[int],
    y_site: NDArray[np.int64], step: Step, cancelled: Callable[[], bool],
) -> tuple[keras.Model, Parts, Parts, dict[str, int]]:
    """A new head on embeddings; both models are scored from embeddings (the backbone is shared)."""
    labels = parent.labels
    step("base embeddings", 0, 4)
    base = base_embeddings(parent, request, lambda done, total: step("base embeddings", done, total))
    step("site embeddings", 1, 4)
    site = site_embeddings(parent, request.samples)
    x = np.vstack([base["train_x"], site[train_site]])
    y = np.concatenate([base["train_y"], y_site[train_site]])
    is_site = np.r_[np.zeros(len(base["train_y"]), bool), np.ones(len(train_site), bool)]
    step("fit head", 2, 4)
    head = fit_head(x, y, sample_weights(y, is_site, len(labels), request.site_share), len(labels), request.l2)
    step("evaluate", 3, 4)
    parts = {"decisions": (site[held_site], y_site[held_site]), "base_test": (base["test_x"], base["test_y"])}
    current = {name: part_metrics(Head.of(parent.model), *xy, labels) for name, xy in parts.items()}
    candidate = {name: part_metrics(head, *xy, labels) for name, xy in parts.items()}
    model = export_model(parent.model, parent.image_size, len(labels))
    head.install(model)
    counts = {"base_train": len(base["train_y"]), "site_train": len(train_site), "site_holdout": len(held_site)}
    return model, current, candidate, counts


def retrain_full(
    parent: Bundle, request: RetrainRequest, train_site: list[int], held_site: list[int],
    y_site: NDArray[np.int64], step: Step, cancelled: Callable[[], bool],
) -> tuple[keras.Model, Parts, Parts, dict[str, int]]:
    """Fine-tune the top of the backbone (BatchNorm frozen) on base + site images, with augmentation."""
    from training.train import train_pipeline  # the same input pipeline as a training run

    labels, size = parent.labels, parent.image_size
    data_dir = base_data_folder(parent, request)
    split = load_split(parent.path / "split.json")
    step("loading images", 0, request.epochs + 2)
    site_images = np.stack([load_prepared(s.image, size) for s in request.samples])
    x = np.concatenate([load_arrays(data_dir, split["train"], size), site_images[train_site]])
    y_base = label_indices([p.split("/", 1)[0] for p in split["train"]], labels)
    y = np.concatenate([y_base, y_site[train_site]])
    is_site = np.r_[np.zeros(len(y_base), bool), np.ones(len(train_site), bool)]
    weights = sample_weights(y, is_site, len(labels), request.site_share)
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
                   EpochProgress(step, request.epochs + 2, cancelled)],
    )
    if cancelled():
        raise RetrainCancelled("retraining cancelled")
    step("evaluate", request.epochs + 1, request.epochs + 2)
    candidate_model = export_model(model, size, len(labels))
    test_x = load_arrays(data_dir, split["test"], size)
    test_y = label_indices([p.split("/", 1)[0] for p in split["test"]], labels)
    parts = {"decisions": (site_images[held_site], y_site[held_site]), "base_test": (test_x, test_y)}
    current = {name: image_metrics(parent.model, *xy, labels) for name, xy in parts.items()}
    candidate = {name: image_metrics(candidate_model, *xy, labels) for name, xy in parts.items()}
    counts = {"base_train": len(y_base), "site_train": len(train_site), "site_holdout": len(held_site)}
    return candidate_model, current, candidate, counts


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


def image_metrics(
    model: keras.Model, images: NDArray[np.uint8], y: NDArray[np.int64], labels: list[str]
) -> dict[str, Any]:
    predicted = model.predict(images.astype(np.float32), batch_size=32, verbose=0).argmax(axis=1) if len(y) else y
    return scored(y, predicted, labels)


def part_metrics(head: Head, x: NDArray[np.float32], y: NDArray[np.int64], labels: list[str]) -> dict[str, Any]:
    return scored(y, head.probabilities(x).argmax(axis=1) if len(y) else y, labels)


def scored(y: NDArray[np.int64], predicted: NDArray[np.int64], labels: list[str]) -> dict[str, Any]:
    if len(y) == 0:
        return {"count": 0, "accuracy": 0.0, "macro_f1": 0.0, "per_class": {}, "confusion": [], "labels": labels}
    return {"count": len(y), **compute_metrics(y, predicted, labels)}


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
    data_dir = request.base_data_dir or parent.path / parent.config.get("data_dir", "")
    if not data_dir.is_dir():
        raise TrainingError(f"the base data of {parent.path} is not at {data_dir}; give its folder (--base-data)")
    return data_dir


def write_candidate(parent: Bundle, model: keras.Model, request: RetrainRequest, metrics: dict[str, Any]) -> None:
    """The candidate model with the parent's labels, written beside ``out`` and renamed into place."""
    request.out.parent.mkdir(parents=True, exist_ok=True)
    work = make_work_folder(request.out)
    try:
        save_bundle_files(model, parent.labels, work)
        add_backbone_file(model, work, parent.path, convert_new=request.mode == "full")  # fast: the parent's
        write_json(work / "metrics.json", metrics)
        write_json(work / "config.json", {**parent.config, "parent": str(parent.path), "mode": request.mode})
        if (parent.path / "split.json").is_file():
            shutil.copy(parent.path / "split.json", work / "split.json")
        replace_folder(work, request.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
