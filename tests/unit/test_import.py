"""``station import``: a folder of labelled images -> imported decisions (no Qt)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from station.cli import entry
from station.export import export_decisions
from station.import_folder import MAX_SIDE, downscale, import_folder
from station.storage import ACTIVE, IMPORTED, NewDecision, Storage
from tests.conftest import CLASSES, MINI_DATASET
from training.errors import TrainingError
from training.files import read_labels
from training.preprocess import load_rgb

BIG = (2000, 1500)  # width, height of the "camera photo"; the long side is above MAX_SIDE
PHOTO_TIME = datetime(2023, 7, 14, 9, 30, 5, tzinfo=timezone.utc)


@dataclass
class Source:
    """A folder to import, and what a correct import must make of it."""

    root: Path
    added: dict[str, int]  # new decisions per known class folder
    duplicate_pair: tuple[str, str]  # the same photo twice under one class
    unknown: dict[str, int]
    bad: list[str]
    big: str
    dated: str  # file whose modification time is PHOTO_TIME


def copy_photo(label: str, index: int, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MINI_DATASET / label / f"{label}{index}.jpg", dest)


@pytest.fixture
def source(tmp_path: Path) -> Source:
    root = tmp_path / "photos"
    copy_photo("glass", 1, root / "glass" / "a.jpg")
    copy_photo("glass", 1, root / "glass" / "a-again.jpg")  # byte-identical: one decision only
    copy_photo("glass", 2, root / "glass" / "b.jpg")
    copy_photo("metal", 1, root / "metal" / "nested" / "m.jpg")
    good = (MINI_DATASET / "metal" / "metal2.jpg").read_bytes()
    (root / "metal" / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated: fails to decode
    (root / "metal" / "notes.txt").write_text("not an image")
    (root / "plastic").mkdir()
    (root / "plastic" / "empty.jpg").write_bytes(b"")  # a known class with nothing usable: reported, not fatal
    copy_photo("trash", 1, root / "wood" / "w1.jpg")  # not a class of the model
    copy_photo("trash", 2, root / "wood" / "w2.jpg")
    (root / "wood" / "bad.jpg").write_bytes(b"")  # inside an unknown class: skipped with it, not listed as bad
    (root / "README.txt").write_text("stray file beside the class folders")
    (root / "paper").mkdir()
    Image.open(MINI_DATASET / "paper" / "paper1.jpg").resize(BIG).save(root / "paper" / "big.jpg")
    os.utime(root / "glass" / "b.jpg", (PHOTO_TIME.timestamp(), PHOTO_TIME.timestamp()))
    return Source(
        root=root,
        added={"glass": 2, "metal": 1, "paper": 1, "plastic": 0},
        duplicate_pair=("glass/a-again.jpg", "glass/a.jpg"),
        unknown={"wood": 2},
        bad=["metal/broken.jpg", "metal/notes.txt", "plastic/empty.jpg"],
        big="paper/big.jpg",
        dated="glass/b.jpg",
    )


@pytest.fixture
def bundle(tmp_path: Path, six_class_bundle: Path) -> Path:
    """A real bundle on the station's classes: the import loads it before making it the active version."""
    return Path(shutil.copytree(six_class_bundle, tmp_path / "bundle-v1"))



# ------------------------------------------------------------------------------------------------ import_folder


def test_import_stores_known_classes_as_imported_decisions(store: Storage, source: Source) -> None:
    result = import_folder(store, source.root, CLASSES)

    assert result.added == source.added and result.total_added == sum(source.added.values())
    assert len(result.duplicates) == 1 and result.duplicates[0] in source.duplicate_pair
    assert result.unknown == source.unknown
    assert [rel for rel, _ in result.bad_files] == source.bad
    reasons = dict(result.bad_files)
    assert reasons["metal/broken.jpg"].startswith("cannot decode")
    assert "not an image" in reasons["metal/notes.txt"] and reasons["plastic/empty.jpg"] == "empty file"
    assert result.downscaled == 1

    rows = store.all_decisions()
    assert len(rows) == result.total_added
    assert Counter(r.operator_label for r in rows) == {k: v for k, v in source.added.items() if v}
    for r in rows:
        assert r.kind == IMPORTED and r.station == "import"
        assert r.predicted_label is None and r.confidence is None and r.probabilities == {}
        assert r.embedding is None and r.model_version is None
    assert len({r.sha256 for r in rows}) == len(rows)


def test_small_images_are_stored_unchanged_and_dated_by_the_file(store: Storage, source: Source) -> None:
    import_folder(store, source.root, CLASSES)
    original = load_rgb(source.root / source.dated)
    stored = [r for r in store.all_decisions() if np.array_equal(load_rgb(store.image_file(r)), original)]
    assert len(stored) == 1
    assert stored[0].created_at == PHOTO_TIME and stored[0].created_at.tzinfo is not None


def test_large_photo_is_downscaled_to_max_side_keeping_its_shape(store: Storage, source: Source) -> None:
    import_folder(store, source.root, CLASSES)
    (paper,) = [r for r in store.all_decisions() if r.operator_label == "paper"]
    with Image.open(store.image_file(paper)) as image:
        width, height = image.size
    assert max(width, height) == MAX_SIDE < max(BIG)
    assert abs(width / height - BIG[0] / BIG[1]) < 0.01


def test_running_the_same_import_again_adds_nothing(store: Storage, source: Source) -> None:
    first = import_folder(store, source.root, CLASSES)
    second = import_folder(store, source.root, CLASSES)
    assert second.total_added == 0 and store.count() == first.total_added
    assert len(second.duplicates) == first.total_added + len(first.duplicates)
    assert second.unknown == first.unknown and second.bad_files == first.bad_files


def test_labels_decide_which_folders_are_known(store: Storage, source: Source) -> None:
    result = import_folder(store, source.root, ["glass", "wood"])
    assert result.added == {"glass": 2, "wood": 2}
    # Image files by name and size, as scanned: a truncated .jpg still counts as an image of its folder.
    assert result.unknown == {"metal": 2, "paper": 1, "plastic": 0}
    # Bad files are listed for known classes only; those of unknown classes are skipped with their folder.
    assert [rel for rel, _ in result.bad_files] == ["wood/bad.jpg"]
    assert {r.operator_label for r in store.all_decisions()} == {"glass", "wood"}


def test_an_exported_decision_imported_again_is_a_duplicate(store: Storage, tmp_path: Path) -> None:
    """PNG encoding is deterministic: an export brought back adds nothing, here or in a fresh station."""
    for seed, label in enumerate(["glass", "metal", "glass"]):
        image = np.random.default_rng(seed).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
        store.save(NewDecision(image=image, predicted_label="glass", confidence=0.7, probabilities={},
                               operator_label=label))
    export_decisions(store, tmp_path / "export")

    again = import_folder(store, tmp_path / "export", CLASSES)
    assert again.total_added == 0 and len(again.duplicates) == store.count()
    with Storage(tmp_path / "other") as other:
        moved = import_folder(other, tmp_path / "export", CLASSES)
        assert moved.total_added == store.count()
        assert ({(r.sha256, r.operator_label) for r in other.all_decisions()}
                == {(r.sha256, r.operator_label) for r in store.all_decisions()})


def test_downscale_keeps_small_images_and_bounds_the_long_side() -> None:
    small = np.zeros((MAX_SIDE, MAX_SIDE // 2, 3), dtype=np.uint8)
    assert downscale(small) is small
    for shape in [(3000, 1000, 3), (1000, 3000, 3)]:
        out = downscale(np.zeros(shape, dtype=np.uint8))
        assert max(out.shape[:2]) == MAX_SIDE and out.shape[2] == 3
        assert (out.shape[0] > out.shape[1]) == (shape[0] > shape[1])


def test_missing_folder_and_unreadable_labels_are_errors(store: Storage, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="not found"):
        import_folder(store, tmp_path / "nowhere", CLASSES)
    (tmp_path / "bundle").mkdir()
    with pytest.raises(TrainingError, match=r"missing labels\.json"):
        read_labels(tmp_path / "bundle")
    (tmp_path / "bundle" / "labels.json").write_text('{"glass": 0}')
    with pytest.raises(TrainingError, match="list of class names"):
        read_labels(tmp_path / "bundle")
    assert store.count() == 0


# ------------------------------------------------------------------------------------------------ CLI


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = entry(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_import_prints_the_summary_and_reports_skipped_files(
    data_dir: Path, source: Source, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["import", "--data-dir", str(data_dir), str(source.root), "--model", str(bundle)], capsys)
    assert code == 0, err
    total = sum(source.added.values())
    assert f"imported {total} image(s) from {source.root} (classes of model {bundle.name})" in out
    for label, n in source.added.items():
        assert any(line.split() == [label, str(n)] for line in out.splitlines())
    assert "duplicates skipped: 1" in out
    assert "unknown classes skipped: " + ", ".join(f"{k} ({v})" for k, v in source.unknown.items()) in out
    assert f"bad files skipped: {len(source.bad)}" in out
    for name, n in source.unknown.items():
        assert f"unknown class folder {name!r} ({n} image(s)) skipped" in err
    for rel in source.bad:
        assert f"bad file {rel} skipped: " in err

    code, out, _ = cli(["import", "--data-dir", str(data_dir), str(source.root), "--model", str(bundle)], capsys)
    assert code == 0 and "imported 0 image(s)" in out and f"duplicates skipped: {total + 1}" in out
    with Storage(data_dir) as s:
        assert s.count(kind=IMPORTED) == s.count() == total


def test_cli_import_uses_the_active_model_s_labels(
    data_dir: Path, source: Source, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    narrow = tmp_path / "r1"
    narrow.mkdir()
    (narrow / "labels.json").write_text(json.dumps(["glass"]))
    with Storage(data_dir) as s:
        s.add_version("r1", narrow, "fast", status=ACTIVE)
    code, out, _ = cli(["import", "--data-dir", str(data_dir), str(source.root), "--model", str(bundle)], capsys)
    assert code == 0 and "(classes of model r1)" in out
    with Storage(data_dir) as s:
        assert {r.operator_label for r in s.all_decisions()} == {"glass"}


def test_cli_import_errors_exit_2_with_a_message(
    data_dir: Path, source: Source, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = tmp_path / "nowhere"
    code, out, err = cli(["import", "--data-dir", str(data_dir), str(nowhere), "--model", str(bundle)], capsys)
    assert (code, out) == (2, "") and err.strip() == f"error: folder to import not found: {nowhere}"
    assert not data_dir.exists()  # checked before the data folder is opened (or created)

    no_labels = Path(shutil.copytree(bundle, tmp_path / "no-labels"))
    (no_labels / "labels.json").unlink()
    code, _, err = cli(["import", "--data-dir", str(data_dir), str(source.root), "--model", str(no_labels)], capsys)
    assert code == 2 and err.startswith("error: model bundle") and "labels.json" in err
    with Storage(data_dir) as s:
        assert s.count() == 0 and s.active_version() is None  # a bundle without labels is not registered

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    code, _, err = cli(["import", "--data-dir", str(not_a_folder), str(source.root), "--model", str(bundle)], capsys)
    assert code == 2 and err.startswith("error: data folder") and "not usable" in err

    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "photo.jpg").write_bytes((MINI_DATASET / "glass" / "glass1.jpg").read_bytes())
    code, _, err = cli(["import", "--data-dir", str(tmp_path / "d2"), str(flat), "--model", str(bundle)], capsys)
    assert code == 2 and "no class sub-folders" in err
