"""Retraining on a site's decisions: candidate model, side-by-side metrics, promotion gate.

A plain function over plain inputs (``retrain(request, progress, cancelled)``): the station
gathers its decisions and runs this in a child process; tests call it directly.

fast: a new softmax head on backbone embeddings (the site's stored with each decision, the
base data's computed once per model and cached), class-weighted, the site's decisions
weighted up. The backbone is untouched, so both models are scored from embeddings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.data import load_arrays, load_split
from training.errors import TrainingError
from training.evaluate import compute_metrics, label_indices
from training.files import write_json
from training.head import Head, fit_head, sample_weights
from training.model import Bundle, export_model, load_bundle, replace_folder, save_bundle_files
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
    parent = load_bundle(request.parent)
    labels = parent.labels
    unknown = sorted({s.label for s in request.samples} - set(labels))
    if unknown:
        raise TrainingError(f"decisions with class(es) the model does not know: {', '.join(unknown)}")
    step("base embeddings", 0, 4)
    base = base_embeddings(parent, request, lambda done, total: step("base embeddings", done, total))
    step("site embeddings", 1, 4)
    site = site_embeddings(parent, request.samples)
    train_site = [i for i, s in enumerate(request.samples) if not s.holdout]
    held_site = [i for i, s in enumerate(request.samples) if s.holdout]
    if not train_site:
        raise TrainingError("no decisions to learn from yet (every stored decision so far is in the held-out 20 %)")

    y_site = label_indices([s.label for s in request.samples], labels)
    x = np.vstack([base["train_x"], site[train_site]])
    y = np.concatenate([base["train_y"], y_site[train_site]])
    is_site = np.r_[np.zeros(len(base["train_y"]), bool), np.ones(len(train_site), bool)]
    step("fit head", 2, 4)
    head = fit_head(x, y, sample_weights(y, is_site, len(labels), request.site_share), len(labels), request.l2)

    step("evaluate", 3, 4)
    parts = {"decisions": (site[held_site], y_site[held_site]), "base_test": (base["test_x"], base["test_y"])}
    current = {name: part_metrics(Head.of(parent.model), *xy, labels) for name, xy in parts.items()}
    candidate = {name: part_metrics(head, *xy, labels) for name, xy in parts.items()}
    passed, reason = gate(current, candidate)
    counts = {"base_train": len(base["train_y"]), "site_train": len(train_site), "site_holdout": len(held_site)}
    write_candidate(parent, head, request, {"decisions": candidate, "counts": counts, "gate": reason})
    step("done", 4, 4)
    return RetrainReport(request.out, current, candidate, counts, time.monotonic() - started, passed, reason)


def part_metrics(head: Head, x: NDArray[np.float32], y: NDArray[np.int64], labels: list[str]) -> dict[str, Any]:
    if len(y) == 0:
        return {"count": 0, "accuracy": 0.0, "macro_f1": 0.0, "per_class": {}, "confusion": []}
    metrics = compute_metrics(y, head.probabilities(x).argmax(axis=1), labels)
    return {"count": len(y), **metrics}


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


def embed(bundle: Bundle, images: NDArray[np.uint8], batch_size: int = 32) -> NDArray[np.float32]:
    embeddings, _ = bundle.feature_model().predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return embeddings.astype(np.float32)


def base_embeddings(
    parent: Bundle, request: RetrainRequest, progress: Callable[[int, int], None]
) -> dict[str, NDArray[Any]]:
    """Embeddings of the parent's base train and test splits, computed once per parent and cached."""
    cache = request.cache_dir / f"{request.cache_key or parent.name}-base-embeddings.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {key: stored[key] for key in stored.files}
    data_dir = request.base_data_dir or Path(parent.config.get("data_dir", ""))
    if not data_dir.is_dir():
        raise TrainingError(f"the base data of {parent.path} is not at {data_dir}; give its folder (--base-data)")
    split = load_split(parent.path / "split.json")
    result: dict[str, NDArray[Any]] = {}
    for k, part in enumerate(("train", "test")):
        paths = split[part]
        result[f"{part}_x"] = embed(parent, load_arrays(data_dir, paths, parent.image_size))
        result[f"{part}_y"] = label_indices([p.split("/", 1)[0] for p in paths], parent.labels)
        progress(k + 1, 2)
    request.cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=request.cache_dir, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **result)
    Path(tmp).replace(cache)
    return result


def write_candidate(parent: Bundle, head: Head, request: RetrainRequest, metrics: dict[str, Any]) -> None:
    """Parent's backbone + the new head, written beside ``out`` and renamed into place."""
    model = export_model(parent.model, parent.image_size, len(parent.labels))
    head.install(model)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=request.out.parent, prefix=f".{request.out.name}.partial-"))
    try:
        save_bundle_files(model, parent.labels, work)
        write_json(work / "metrics.json", metrics)
        write_json(work / "config.json", {**parent.config, "parent": str(parent.path), "mode": "fast"})
        if (parent.path / "split.json").is_file():
            shutil.copy(parent.path / "split.json", work / "split.json")
        replace_folder(work, request.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
