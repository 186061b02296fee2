"""Metrics, confusion matrix, classification report and plots for a bundle on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
from numpy.typing import NDArray
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from training.data import SPLITS, load_arrays, load_split, scan_dataset
from training.errors import TrainingError
from training.model import Bundle
from training.plot_text import plot_text


def predict_probabilities(bundle: Bundle, images: NDArray[np.uint8], batch_size: int = 32) -> NDArray[np.float32]:
    """Class probabilities for prepared uint8 images of the bundle's input size."""
    if len(images) == 0:
        return np.zeros((0, len(bundle.labels)), dtype=np.float32)
    probabilities: NDArray[np.float32] = bundle.model.predict(
        images.astype(np.float32), batch_size=batch_size, verbose=0
    )
    return probabilities


def compute_metrics(y_true: NDArray[np.int64], y_pred: NDArray[np.int64], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": labels,
    }


def text_report(y_true: NDArray[np.int64], y_pred: NDArray[np.int64], labels: list[str]) -> str:
    report = classification_report(
        y_true, y_pred, labels=list(range(len(labels))), target_names=labels, digits=4, zero_division=0
    )
    return cast(str, report)  # a str unless output_dict=True


def evaluate_images(
    bundle: Bundle, root: Path, relpaths: list[str], y_true: NDArray[np.int64], out_dir: Path
) -> dict[str, Any]:
    """Predict ``relpaths`` under ``root``, write ``report.txt`` and ``confusion.png``, return metrics.

    ``y_true`` holds indices into ``bundle.labels``.
    """
    images = load_arrays(root, relpaths, bundle.image_size)
    y_pred = np.argmax(predict_probabilities(bundle, images), axis=1)
    metrics = compute_metrics(y_true, y_pred, bundle.labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.txt").write_text(text_report(y_true, y_pred, bundle.labels))
    plot_confusion(np.array(metrics["confusion"]), bundle.labels, out_dir / "confusion.png")
    return metrics


def plot_confusion(matrix: NDArray[np.int64], labels: list[str], path: Path) -> None:
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    draw_confusion(fig, matrix, labels)
    fig.savefig(path, dpi=110)


def draw_confusion(
    fig: Figure,
    matrix: NDArray[np.int64],
    labels: list[str],
    true_name: str = "true",
    predicted_name: str = "predicted",
) -> None:
    """Counts, with each row shaded by its share of the true class (recall on the diagonal).

    Draws into ``fig`` (a new axes plus colour bar): the training reports and the station's statistics share it.
    """
    ax = fig.add_subplot()
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    names = [plot_text(name) for name in labels]
    ax.set_xticks(range(len(labels)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), names)
    ax.set_xlabel(predicted_name)
    ax.set_ylabel(true_name)
    ax.set_title("Confusion matrix (shade: share of each row)")
    fig.colorbar(image, ax=ax, fraction=0.046)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy and loss, train vs validation, over every phase; phase starts marked."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    epochs = [r["epoch"] for r in rows]
    starts = [r for k, r in enumerate(rows) if k == 0 or r["phase"] != rows[k - 1]["phase"]]
    for col, metric in enumerate(("accuracy", "loss")):
        ax = fig.add_subplot(1, 2, col + 1)
        ax.plot(epochs, [r[metric] for r in rows], label=f"train {metric}")
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], label=f"validation {metric}")
        for r in starts:
            ax.axvline(r["epoch"] - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{r['phase']} {r['image_size']}px", (r["epoch"] - 0.4, 0.02),
                        xycoords=("data", "axes fraction"), fontsize=7, rotation=90, color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)


def evaluate_bundle(bundle: Bundle, data_dir: str | Path, split: str, out_dir: Path) -> dict[str, Any]:
    """Metrics of ``bundle`` on ``data_dir``: its own test split (``split.json``) or ``all`` images.

    Training calls this on the finished bundle, so ``evaluate`` on the same data
    reproduces ``metrics.json`` exactly.
    """
    root = Path(data_dir)
    if split == "test":
        manifest = load_split(bundle.path / "split.json")
        relpaths = manifest["test"]
        counts = {name: len(manifest[name]) for name in SPLITS}
    elif split == "all":
        relpaths = [path for path, _ in scan_dataset(root).items]
        counts = {"all": len(relpaths)}
    else:
        raise TrainingError(f"unknown split {split!r}: use 'test' or 'all'")
    y_true = label_indices([p.split("/", 1)[0] for p in relpaths], bundle.labels)
    metrics = evaluate_images(bundle, root, relpaths, y_true, out_dir)
    metrics.update(
        split=split,
        split_counts=counts,
        image_size=bundle.image_size,
        weights=bundle.config.weights if bundle.config else None,
    )
    return metrics


def label_indices(names: list[str], labels: list[str]) -> NDArray[np.int64]:
    """Class names to output indices; a class the model does not know is an error."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise TrainingError(f"class(es) unknown to the model: {', '.join(unknown)} (it knows {', '.join(labels)})")
    return np.array([index[n] for n in names], dtype=np.int64)
