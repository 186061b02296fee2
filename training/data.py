"""Folder datasets: scan for classes and bad files, stratified split manifest, class weights."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.utils.class_weight import compute_class_weight

from training.errors import TrainingError
from training.preprocess import IMAGE_EXTENSIONS, load_prepared, load_rgb

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@dataclass
class FolderDataset:
    """The usable images of a class-per-folder dataset, plus the files that were left out."""

    root: Path
    class_names: list[str]
    items: list[tuple[str, int]]  # (path relative to root with "/" separators, class index)
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def counts(self) -> dict[str, int]:
        counter = Counter(label for _, label in self.items)
        return {name: counter[i] for i, name in enumerate(self.class_names)}

    def labels_of(self, relpaths: list[str]) -> NDArray[np.int64]:
        index = dict(self.items)
        missing = [p for p in relpaths if p not in index]
        if missing:
            raise TrainingError(
                f"{len(missing)} file(s) of the split are not usable images in {self.root}, "
                f"for example {missing[0]}"
            )
        return np.array([index[p] for p in relpaths], dtype=np.int64)


def class_folders(root: Path) -> list[Path]:
    """Class folders are the visible sub-folders of ``root``, sorted by name."""
    if not root.is_dir():
        raise TrainingError(f"data folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TrainingError(f"{root} has no class sub-folders (expected one folder per class)")
    return folders


def scan_dataset(root: str | Path, check_images: bool = True, allow_empty: bool = False) -> FolderDataset:
    """List every image of every class folder, decoding each so bad files are found up front.

    Stray files beside the class folders are ignored; hidden files are skipped; any other
    file that does not decode (wrong type, zero bytes, truncated) is reported and left out.
    A class folder without usable images is an error unless ``allow_empty`` (the station's
    import reports it instead of refusing the whole folder).
    """
    root = Path(root)
    folders = class_folders(root)
    items: list[tuple[str, int]] = []
    bad: list[tuple[str, str]] = []
    for label, folder in enumerate(folders):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(root).as_posix()
            reason = _unusable_reason(path, check_images)
            if reason:
                bad.append((rel, reason))
            else:
                items.append((rel, label))
    dataset = FolderDataset(root, [f.name for f in folders], items, bad)
    empty = [name for name, n in dataset.counts().items() if n == 0]
    if empty and not allow_empty:
        raise TrainingError(f"class folder(s) with no usable images in {root}: {', '.join(empty)}")
    return dataset


def _unusable_reason(path: Path, check_images: bool) -> str | None:
    if path.stat().st_size == 0:
        return "empty file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file ({path.suffix or 'no extension'})"
    if check_images:
        try:
            load_rgb(path)
        except Exception as exc:  # PIL raises several types for bad data; all mean "unusable"
            return f"cannot decode: {exc}"
    return None


def stratified_split(
    dataset: FolderDataset, seed: int, fractions: dict[str, float] | None = None
) -> dict[str, list[str]]:
    """Split every class on its own so each split keeps the class proportions.

    Each class needs at least one image in every split; the result depends only on the
    file list and the seed.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    rng = random.Random(seed)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    too_small = []
    for label, name in enumerate(dataset.class_names):
        paths = sorted(p for p, y in dataset.items if y == label)
        if len(paths) < len(SPLITS):
            too_small.append(f"{name} ({len(paths)})")
            continue
        rng.shuffle(paths)
        n_test = max(1, round(len(paths) * fractions["test"]))
        n_val = max(1, round(len(paths) * fractions["val"]))
        n_val = min(n_val, len(paths) - n_test - 1)
        split["test"] += paths[:n_test]
        split["val"] += paths[n_test : n_test + n_val]
        split["train"] += paths[n_test + n_val :]
    if too_small:
        raise TrainingError(
            "a stratified train/val/test split needs at least 3 images per class; "
            f"too few in: {', '.join(too_small)}"
        )
    return {name: sorted(paths) for name, paths in split.items()}


def save_split(split: dict[str, list[str]], path: Path) -> None:
    path.write_text(json.dumps(split, indent=1) + "\n")


def load_split(path: Path) -> dict[str, list[str]]:
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read split manifest {path}: {exc}") from exc
    if not isinstance(split, dict) or not all(isinstance(split.get(s), list) for s in SPLITS):
        raise TrainingError(f"{path} must hold lists 'train', 'val' and 'test'")
    return split


def class_weights(labels: NDArray[np.int64], num_classes: int) -> dict[int, float]:
    """Balanced weights: n_samples / (n_classes * n_class_samples), from scikit-learn."""
    classes = np.arange(num_classes)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def describe_class_weights(weights: dict[int, float], class_names: list[str], listed: int = 12) -> str:
    """One log line: every class's weight when there are few, else the rarest and commonest classes."""
    if np.allclose(list(weights.values()), 1.0, atol=5e-4):
        return f"class weights: all 1.000 ({len(class_names)} classes, equally frequent)"
    def entry(i: int) -> str:
        return f"{class_names[i]} {weights[i]:.3f}"

    if len(weights) <= listed:
        shown = [entry(i) for i in sorted(weights)]
    else:
        order = sorted(weights, key=weights.__getitem__, reverse=True)  # heaviest (rarest) first
        half = listed // 2
        shown = [*map(entry, order[:half]), f"... {len(order) - listed} more ...", *map(entry, order[-half:])]
    return "class weights (balanced): " + ", ".join(shown)


def load_arrays(root: Path, relpaths: list[str], size: int) -> NDArray[np.uint8]:
    """Decode and prepare images into one (N, size, size, 3) uint8 array."""
    images = np.empty((len(relpaths), size, size, 3), dtype=np.uint8)
    for i, rel in enumerate(relpaths):
        images[i] = load_prepared(root / rel, size)
    return images
