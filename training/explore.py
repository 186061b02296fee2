"""Look at a dataset before training: class balance, sample images, sizes, modes, bad files."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from PIL import Image

from training.data import scan_dataset
from training.files import write_json
from training.plot_text import plot_text
from training.preprocess import load_rgb


def explore(data_dir: str | Path, out: str | Path, samples_per_class: int = 6, seed: int = 0) -> dict[str, Any]:
    """Print a summary, write ``class_counts.png``, ``samples.png`` and ``explore.json``."""
    dataset = scan_dataset(data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = dataset.counts()
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for rel, _ in dataset.items:
        with Image.open(dataset.root / rel) as image:  # header only: size and mode
            sizes[f"{image.width}x{image.height}"] += 1
            modes[image.mode] += 1
    summary = {
        "data_dir": str(dataset.root),
        "images": len(dataset.items),
        "counts": counts,
        "imbalance_ratio": max(counts.values()) / min(counts.values()),
        "sizes": dict(sizes.most_common()),
        "modes": dict(modes.most_common()),
        "bad_files": [{"path": rel, "reason": reason} for rel, reason in dataset.bad_files],
    }
    print_summary(summary)
    plot_counts(counts, out / "class_counts.png")
    plot_samples(dataset.root, dataset.class_names, dataset.items, samples_per_class, seed, out / "samples.png")
    write_json(out / "explore.json", summary)
    print(f"wrote class_counts.png, samples.png and explore.json to {out}")
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    counts: dict[str, int] = summary["counts"]
    total = summary["images"]
    width = max(len(name) for name in counts)
    print(f"{'class':<{width}}  {'images':>6}  {'share':>6}")
    for name, n in counts.items():
        print(f"{name:<{width}}  {n:>6}  {n / total:>6.1%}")
    print(f"{'total':<{width}}  {total:>6}")
    print(f"imbalance ratio (largest / smallest class): {summary['imbalance_ratio']:.2f}")
    print("image sizes: " + ", ".join(f"{k} ({v})" for k, v in summary["sizes"].items()))
    print("color modes: " + ", ".join(f"{k} ({v})" for k, v in summary["modes"].items()))
    bad = summary["bad_files"]
    print(f"unreadable or non-image files: {len(bad)}")
    for entry in bad:
        print(f"  {entry['path']}: {entry['reason']}")


def plot_counts(counts: dict[str, int], path: Path) -> None:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar([plot_text(name) for name in counts], list(counts.values()), color="tab:blue")
    ax.bar_label(bars)
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    fig.savefig(path, dpi=110)


def plot_samples(
    root: Path, class_names: list[str], items: list[tuple[str, int]], per_class: int, seed: int, path: Path
) -> None:
    rng = random.Random(seed)
    fig = Figure(figsize=(1.6 * per_class, 1.5 * len(class_names)), layout="constrained")
    axes = fig.subplots(len(class_names), per_class, squeeze=False)
    for label, name in enumerate(class_names):
        paths = [p for p, y in items if y == label]
        chosen = rng.sample(paths, min(per_class, len(paths)))
        for col in range(per_class):
            ax = axes[label][col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(load_rgb(root / chosen[col]))
        axes[label][0].set_title(plot_text(name), loc="left", fontsize=10)
    fig.savefig(path, dpi=90)
