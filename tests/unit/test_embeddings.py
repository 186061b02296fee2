"""Base embeddings shipped in a bundle: written by train, checked against the model they came from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.unit.test_retrain import site_photos
from training.data import load_arrays, load_split
from training.embeddings import BASE_EMBEDDINGS, embed, load_embeddings, model_sha256, save_embeddings
from training.errors import TrainingError
from training.model import load_bundle
from training.retrain import RetrainRequest, retrain


def test_train_ships_the_split_embeddings_of_its_own_model(trained_run: tuple[Path, Path, str]) -> None:
    data, run, _ = trained_run
    bundle = load_bundle(run)
    stored = load_embeddings(run / BASE_EMBEDDINGS, model_sha256(run))
    assert stored is not None
    split = load_split(run / "split.json")
    for part in ("train", "test"):
        assert stored[f"{part}_y"].tolist() == [bundle.labels.index(p.split("/")[0]) for p in split[part]]
        assert stored[f"{part}_x"].dtype == np.float32
    fresh = embed(bundle, load_arrays(data, split["test"], bundle.image_size))
    np.testing.assert_allclose(stored["test_x"], fresh, rtol=2e-3, atol=2e-3)  # stored as float16


def test_embeddings_of_another_model_or_a_broken_file_are_not_used(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, run, _ = trained_run
    good = load_embeddings(run / BASE_EMBEDDINGS, model_sha256(run))
    assert good is not None
    stale = tmp_path / "stale.npz"
    save_embeddings(stale, good, "0" * 64)
    assert load_embeddings(stale, model_sha256(run)) is None
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    assert load_embeddings(broken, model_sha256(run)) is None
    assert load_embeddings(tmp_path / "absent.npz", model_sha256(run)) is None


def test_fast_retrain_needs_no_base_data_with_shipped_embeddings(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, run, _ = trained_run
    bundle = tmp_path / "bundle"
    shutil.copytree(run, bundle)
    samples = site_photos(tmp_path / "site", 5)
    nowhere = tmp_path / "no-base-data"
    result = retrain(RetrainRequest(bundle, samples, tmp_path / "v2", tmp_path / "cache", base_data_dir=nowhere))
    assert result.counts["base_train"] == len(load_split(bundle / "split.json")["train"])

    # The same file beside a different model.keras is refused, and then the missing base data is the error.
    shutil.copy(tmp_path / "v2" / "model.keras", bundle / "model.keras")
    with pytest.raises(TrainingError, match="base data"):
        retrain(RetrainRequest(bundle, samples, tmp_path / "v3", tmp_path / "cache", base_data_dir=nowhere))


def test_embed_command_rewrites_the_file(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    bundle = tmp_path / "bundle"
    shutil.copytree(run, bundle)
    (bundle / BASE_EMBEDDINGS).unlink()
    code, out, err = run_cli(["embed", str(bundle), str(data)])
    assert code == 0, err
    assert "base-embeddings.npz" in out
    assert load_embeddings(bundle / BASE_EMBEDDINGS, model_sha256(bundle)) is not None
