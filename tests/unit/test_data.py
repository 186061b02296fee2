from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSES, MINI_DATASET
from training.data import class_weights, describe_class_weights, scan_dataset, stratified_split
from training.errors import TrainingError


def test_scan_lists_bad_files_and_ignores_stray_ones(dirty_dataset: Path) -> None:
    dataset = scan_dataset(dirty_dataset)
    assert dataset.class_names == CLASSES
    bad = dict(dataset.bad_files)
    assert set(bad) == {"metal/truncated.jpg", "paper/empty.jpg", "glass/notes.txt"}
    assert "truncated" in bad["metal/truncated.jpg"]
    assert bad["paper/empty.jpg"] == "empty file"
    assert all(not p.startswith("README") for p, _ in dataset.items)
    assert dataset.counts() == {name: 4 for name in CLASSES}


def test_split_is_stratified_disjoint_complete_and_seeded(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for k, name in enumerate(["a", "b", "c"]):
        (root / name).mkdir(parents=True)
        for i in range(20 * (k + 1)):
            shutil.copy(MINI_DATASET / "glass" / "glass1.jpg", root / name / f"{i}.jpg")
    dataset = scan_dataset(root, check_images=False)
    split = stratified_split(dataset, seed=1)
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == sorted(p for p, _ in dataset.items)
    assert len(set(everything)) == len(everything)
    for name, n in [("a", 20), ("b", 40), ("c", 60)]:
        assert sum(p.startswith(f"{name}/") for p in split["test"]) == round(0.15 * n)
        assert sum(p.startswith(f"{name}/") for p in split["val"]) == round(0.15 * n)
    assert stratified_split(dataset, seed=1) == split
    assert stratified_split(dataset, seed=2) != split


def test_too_small_class_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(MINI_DATASET, root, ignore=shutil.ignore_patterns("LICENSE"))
    for extra in ["trash2.jpg", "trash3.jpg"]:
        (root / "trash" / extra).unlink()
    with pytest.raises(TrainingError, match=r"too few in: trash \(2\)"):
        stratified_split(scan_dataset(root), seed=0)


def test_empty_class_folder_and_missing_folder_are_errors(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(MINI_DATASET, root, ignore=shutil.ignore_patterns("LICENSE"))
    (root / "wood").mkdir()
    with pytest.raises(TrainingError, match=r"no usable images.*wood"):
        scan_dataset(root)
    with pytest.raises(TrainingError, match="not found"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.jpg").write_bytes(b"1")
    with pytest.raises(TrainingError, match="no class sub-folders"):
        scan_dataset(tmp_path / "flat")


def test_balanced_class_weights_favour_the_rare_class() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    weights = class_weights(labels, 3)
    assert weights == pytest.approx({0: 100 / 180, 1: 100 / 90, 2: 100 / 30})


def test_class_weights_line_lists_few_classes_and_summarises_many() -> None:
    few = describe_class_weights(class_weights(np.array([0] * 60 + [1] * 30 + [2] * 10), 3), ["a", "b", "c"])
    assert few == "class weights (balanced): a 0.556, b 1.111, c 3.333"
    equal = describe_class_weights(class_weights(np.repeat(np.arange(202), 5), 202), [f"n{i}" for i in range(202)])
    assert equal == "class weights: all 1.000 (202 classes, equally frequent)"
    labels = np.concatenate([np.repeat(np.arange(40), 10), [39] * 30])  # class 39 is the commonest
    many = describe_class_weights(class_weights(labels, 40), [f"n{i}" for i in range(40)])
    assert many.count(",") == 12 and "... 28 more ..." in many
    assert many.startswith("class weights (balanced): n0 1.075") and many.endswith("n39 0.269")
