"""Two-phase transfer learning, or from scratch with progressive resizing, into a model bundle.

``train(config, progress)`` is a plain function: the CLI, the tests and the station's
retraining call it the same way; ``progress`` receives one dict per finished epoch, and what it does
is logged (``training.train``), which the CLI shows on stdout.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from training.augment import augmenter, mixup
from training.config import TrainConfig
from training.data import (
    SPLITS,
    FolderDataset,
    class_weights,
    describe_class_weights,
    load_arrays,
    save_split,
    scan_dataset,
    stratified_split,
)
from training.embeddings import write_base_embeddings
from training.evaluate import evaluate_bundle, plot_curves
from training.files import make_work_folder, replace_folder, write_json
from training.lite import BACKBONE_FILE, add_backbone_file
from training.model import (
    backbone_of,
    build_model,
    export_model,
    load_bundle,
    save_bundle_files,
    unfreeze_top,
)
from training.resume import (
    RunCheckpoint,
    RunState,
    load_best,
    restore,
    resume_folder,
    start_run,
)

log = logging.getLogger(__name__)  # the CLI shows these lines on stdout (training.cli.show_progress_lines)
Progress = Callable[[dict[str, Any]], None]


@dataclass
class Phase:
    name: str
    epochs: int
    image_size: int
    learning_rate: float
    augment: float
    mixup: float
    cosine: bool = False  # warm-up + cosine decay across all cosine phases, else plateau-reduction
    history: list[dict[str, Any]] = field(default_factory=list)


def plan_phases(config: TrainConfig) -> list[Phase]:
    """The phases a run goes through, with their sizes, rates and augmentation."""
    if not config.from_scratch:
        phases = [Phase("head", config.epochs, config.image_size, config.learning_rate, config.augment, config.mixup)]
        if config.fine_tune_epochs > 0:
            phases.append(Phase("fine-tune", config.fine_tune_epochs, config.image_size,
                                config.fine_tune_learning_rate, config.augment, config.mixup))
        return phases
    # EfficientNetV2's progressive learning: small images with weak regularisation first,
    # growing to full size with full augmentation and mixup.
    stages = max(1, min(config.stages, config.epochs))
    low = config.min_image_size or config.image_size // 2
    phases = []
    for k in range(stages):
        t = k / (stages - 1) if stages > 1 else 1.0
        size = int(round((low + t * (config.image_size - low)) / 8) * 8) if k < stages - 1 else config.image_size
        epochs = config.epochs // stages + (1 if k < config.epochs % stages else 0)
        phases.append(Phase(f"stage {k + 1}", epochs, size, config.learning_rate,
                            config.augment * (0.5 + 0.5 * t), config.mixup * t, cosine=True))
    if config.fine_tune_epochs > 0:
        phases.append(Phase("polish", config.fine_tune_epochs, config.image_size,
                            config.fine_tune_learning_rate, config.augment * 0.5, 0.0))
    return phases


def train(config: TrainConfig, progress: Progress | None = None, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate on the held-out test split, and write the bundle to ``config.out``.

    The bundle is assembled in a temporary folder beside ``out`` and renamed into place at
    the end, so ``out`` never holds a half-written run. Every epoch is checkpointed in
    ``out.resume/``; a killed run continues with ``resume=True``. Returns the test metrics.
    """
    keras.utils.set_random_seed(config.seed)
    dataset = scan_dataset(config.data_dir)
    report_dataset(dataset)
    split = stratified_split(
        dataset,
        config.seed,
        {
            "train": 1 - config.val_fraction - config.test_fraction,
            "val": config.val_fraction,
            "test": config.test_fraction,
        },
    )
    log.info("split: " + ", ".join(f"{name} {len(split[name])}" for name in SPLITS))
    y_train = dataset.labels_of(split["train"])
    y_val = dataset.labels_of(split["val"])
    weights = class_weights(y_train, len(dataset.class_names))
    log.info(describe_class_weights(weights, dataset.class_names))

    out = Path(config.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    run_folder = resume_folder(out)
    state = start_run(run_folder, asdict(config), resume)
    if state.rows:
        log.info(f"resuming {run_folder}: {len(state.rows)} epoch(s) done")
    model, rows = fit_phases(config, dataset, split, y_train, y_val, weights, run_folder, state, progress)
    work = make_work_folder(out)
    try:
        exported = export_model(model, config.image_size, len(dataset.class_names))
        save_bundle_files(exported, dataset.class_names, work)
        save_split(split, work / "split.json")
        write_json(work / "config.json", {**asdict(config), "class_names": dataset.class_names})
        write_history(rows, work / "history.csv")
        plot_curves(rows, work / "curves.png")
        bundle = load_bundle(work)
        metrics = evaluate_bundle(bundle, dataset.root, "test", work)
        write_json(work / "metrics.json", metrics)
        log.info(f"converting the backbone to LiteRT ({BACKBONE_FILE}) for fast inference")
        add_backbone_file(bundle.model, work)
        if config.base_embeddings:
            log.info("embedding the train and test splits for fast retraining")
            write_base_embeddings(bundle, dataset.root)
        replace_folder(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(run_folder, ignore_errors=True)
    log.info(f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}; bundle written to {out}")
    return metrics


def report_dataset(dataset: FolderDataset) -> None:
    log.info(f"{len(dataset.items)} images in {len(dataset.class_names)} classes: " + ", ".join(
        f"{name} {n}" for name, n in dataset.counts().items()))
    if dataset.bad_files:
        log.info(f"left out {len(dataset.bad_files)} unusable file(s):")
        for rel, reason in dataset.bad_files:
            log.info(f"  {rel}: {reason}")


def fit_phases(
    config: TrainConfig,
    dataset: FolderDataset,
    split: dict[str, list[str]],
    y_train: NDArray[np.int64],
    y_val: NDArray[np.int64],
    weights: dict[int, float],
    run_folder: Path,
    state: RunState,
    progress: Progress | None,
) -> tuple[keras.Model, list[dict[str, Any]]]:
    """Run every phase (from where ``state`` stands); keep the weights with the best validation loss."""
    num_classes = len(dataset.class_names)
    weights_arg = None if config.weights == "none" else config.weights
    model = build_model(num_classes, weights_arg, None, config.dropout, freeze_backbone=not config.from_scratch)
    if config.init_from and not state.epoch_files:
        start_from_bundle(model, config.init_from)
    phases = plan_phases(config)
    cosine_epochs = sum(p.epochs for p in phases if p.cosine)
    sample_weights = np.array([weights[int(y)] for y in y_train], dtype=np.float32)
    arrays: dict[int, tuple[NDArray[np.uint8], NDArray[np.uint8]]] = {}
    rows = [r for r in state.rows if r["phase"] in {p.name for p in phases[: state.phase]}]
    for index, phase in enumerate(phases):
        if phase.epochs <= 0 or index < state.phase:
            continue
        initial_epoch = state.phase_epoch if index == state.phase else 0
        phase.history = state.rows_of(phase.name) if initial_epoch else []
        if phase.name == "fine-tune":
            unfrozen = unfreeze_top(model, config.fine_tune_fraction)
            log.info(f"unfroze {unfrozen} backbone layers (BatchNorm stays frozen)")
        if phase.image_size not in arrays:
            log.info(f"loading images at {phase.image_size} px")
            arrays = {phase.image_size: (load_arrays(dataset.root, split["train"], phase.image_size),
                                         load_arrays(dataset.root, split["val"], phase.image_size))}
        x_train, x_val = arrays[phase.image_size]
        model.compile(
            optimizer=keras.optimizers.AdamW(phase.learning_rate, weight_decay=config.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        restore(model, run_folder, state, continue_phase=initial_epoch > 0)
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        ]
        first_epoch = len(rows)
        if phase.cosine:
            schedule = cosine_schedule(config.learning_rate, config.warmup_epochs, cosine_epochs, offset=first_epoch)
            callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
        else:
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.3, patience=max(1, config.patience // 3), min_lr=1e-7))
        callbacks.append(EpochReporter(phase, first_epoch, progress))
        callbacks.append(RunCheckpoint(run_folder, state, index, phase.name, rows, phase.history))
        rate = f"cosine learning rate (peak {phase.learning_rate:g})" if phase.cosine else (
            f"learning rate {phase.learning_rate:g}")
        log.info(f"== {phase.name}: {phase.epochs} epoch(s) at {phase.image_size} px, {rate}, "
              f"augmentation {phase.augment:.2f}, mixup {phase.mixup:.2f}")
        model.fit(
            train_pipeline(x_train, y_train, sample_weights, num_classes, config.batch_size,
                           phase.augment, phase.mixup, config.seed + first_epoch),
            validation_data=(x_val.astype(np.float32), keras.utils.to_categorical(y_val, num_classes)),
            epochs=phase.epochs,
            initial_epoch=initial_epoch,
            shuffle=False,  # the pipeline shuffles (and says so to Keras)
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
        rows = rows + phase.history
    load_best(model, run_folder)
    return model, rows


def start_from_bundle(model: keras.Model, folder: str) -> None:
    """Copy a bundle's weights into ``model``: all of them when it has the same classes, else its backbone
    only (the head starts fresh), so a TrashNet bundle can go back to pretraining on a broad set."""
    source = load_bundle(folder).model
    if source.output_shape == model.output_shape:
        model.set_weights(source.get_weights())
        return
    backbone_of(model).set_weights(backbone_of(source).get_weights())
    log.info(f"{folder} has {source.output_shape[-1]} classes, this run {model.output_shape[-1]}: "
             "starting from its backbone, with a new head")


def train_pipeline(
    x: NDArray[np.uint8],
    y: NDArray[np.int64],
    sample_weights: NDArray[np.float32],
    num_classes: int,
    batch_size: int,
    augment: float,
    mixup_alpha: float,
    seed: int,
) -> tf.data.Dataset:
    """Shuffled, augmented (and optionally mixed-up) batches of (image, one-hot, weight)."""
    labels = keras.utils.to_categorical(y, num_classes).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, labels, sample_weights))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    # Named functions, not lambdas: AutoGraph cannot tell several lambdas apart in one source region.
    layers = augmenter(augment, seed) if augment > 0 else None

    def to_float(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> tuple[tf.Tensor, ...]:
        images = tf.cast(images, tf.float32)
        if layers is not None:
            images = tf.clip_by_value(layers(images, training=True), 0.0, 255.0)
        return images, labels, weights

    def mix(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return mixup(images, labels, weights, mixup_alpha)

    data = data.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if mixup_alpha > 0:
        data = data.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def cosine_schedule(base: float, warmup: int, total: int, offset: int) -> Callable[[int, float], float]:
    """Linear warm-up, then cosine decay to 1 % of ``base``; epochs count across phases."""
    def rate(epoch: int, _current: float) -> float:
        step = epoch + offset
        if step < warmup:
            return base * (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, total - warmup)
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    return rate


class EpochReporter(keras.callbacks.Callback):
    """Records one history row per epoch and forwards it to the progress callback."""

    def __init__(self, phase: Phase, first_epoch: int, progress: Progress | None) -> None:
        super().__init__()
        self.phase, self.first_epoch, self.progress = phase, first_epoch, progress

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        row = {
            "phase": self.phase.name,
            "epoch": self.first_epoch + epoch + 1,
            "image_size": self.phase.image_size,
            "loss": float(logs.get("loss", math.nan)),
            "accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        }
        self.phase.history.append(row)
        if self.progress:
            self.progress({**row, "phase_epochs": self.phase.epochs, "phase_epoch": epoch + 1})


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)
