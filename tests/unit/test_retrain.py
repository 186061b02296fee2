"""Fast retraining end to end on a tiny model: site decisions that the model gets wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASSES
from training.embeddings import BASE_EMBEDDINGS
from training.errors import TrainingError
from training.lite import backbone_sha256, bundle_backbone_sha256
from training.model import load_bundle
from training.retrain import RetrainCancelled, RetrainRequest, SiteSample, gate, retrain


def site_photos(folder: Path, per_class: int) -> list[SiteSample]:
    """Another site's photos: each class its own flat colour with noise; every fifth is held out."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for k, name in enumerate(CLASSES):
        colour = np.array([(60 * k) % 256, (140 + 70 * k) % 256, (230 - 40 * k) % 256])
        for i in range(per_class):
            image = np.clip(colour + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{name}{i}.png"
            Image.fromarray(image).save(path)
            samples.append(SiteSample(path, name, None, holdout=i % 5 == 0))
    return samples


def test_fast_retrain_learns_the_site_and_writes_a_candidate(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    samples = site_photos(tmp_path / "site", 10)
    events: list[dict] = []
    request = RetrainRequest(run, samples, tmp_path / "models" / "v2", tmp_path / "cache", base_data_dir=data)
    result = retrain(request, events.append)
    assert result.candidate_metrics["decisions"]["count"] == 12
    assert result.candidate_metrics["decisions"]["accuracy"] > result.current["decisions"]["accuracy"]
    assert result.candidate_metrics["decisions"]["accuracy"] >= 0.5  # 3x chance; tiny-model features vary by run
    assert [e["phase"] for e in events][-1] == "done"
    candidate = load_bundle(result.candidate)
    assert candidate.labels == CLASSES
    assert not (tmp_path / "cache").exists()  # the bundle's own base-embeddings.npz served; nothing computed
    assert not list((tmp_path / "models").glob(".*partial*"))


def test_cancel_leaves_nothing_behind(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    request = RetrainRequest(run, site_photos(tmp_path / "site", 5), tmp_path / "models" / "v2",
                             tmp_path / "cache", base_data_dir=data)
    with pytest.raises(RetrainCancelled):
        retrain(request, cancelled=lambda: True)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_unknown_class_in_decisions_is_refused(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    sample = SiteSample(data / "glass" / "glass1.jpg", "wood", None, holdout=False)
    with pytest.raises(TrainingError, match="wood"):
        retrain(RetrainRequest(run, [sample], tmp_path / "v2", tmp_path / "cache", base_data_dir=data))


def metrics(f1_decisions: float, f1_base: float, count: int = 10) -> dict:
    return {"decisions": {"macro_f1": f1_decisions, "count": count}, "base_test": {"macro_f1": f1_base}}


def test_gate_rules() -> None:
    assert gate(metrics(0.5, 0.80), metrics(0.6, 0.795))[0]
    assert not gate(metrics(0.5, 0.80), metrics(0.5, 0.80))[0]  # no rise on the site
    assert not gate(metrics(0.5, 0.80), metrics(0.9, 0.78))[0]  # base dropped by 0.02
    assert not gate(metrics(0.5, 0.80, count=0), metrics(0.9, 0.80, count=0))[0]


def test_full_retrain_fine_tunes_the_backbone_top_and_scores_on_images(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    events: list[dict] = []
    request = RetrainRequest(run, site_photos(tmp_path / "site", 5), tmp_path / "models" / "f1", tmp_path / "cache",
                             base_data_dir=data, mode="full", epochs=2, learning_rate=1e-3)
    result = retrain(request, events.append)
    assert any(e["phase"].startswith("fine-tune epoch") for e in events)
    assert result.counts == {"base_train": 12, "site_train": 24, "site_holdout": 6}
    assert result.candidate_metrics["decisions"]["count"] == 6
    assert result.candidate_metrics["base_test"]["count"] == 6
    parent, candidate = load_bundle(run), load_bundle(result.candidate)
    changed = [not np.allclose(a, b) for a, b in zip(parent.model.get_weights(), candidate.model.get_weights(),
                                                       strict=True)]
    assert any(changed) and not all(changed)  # the top moved, the frozen bottom did not
    assert json.loads((result.candidate / "config.json").read_text())["mode"] == "full"
    # Its new backbone is converted once, here in the retraining process, for the station's LiteRT backend.
    assert bundle_backbone_sha256(result.candidate) == backbone_sha256(candidate.model) != backbone_sha256(parent.model)


def test_base_data_recorded_relative_to_the_bundle_is_found(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    import shutil

    data, run, _ = trained_run
    bundle = tmp_path / "bundles" / "moved"
    shutil.copytree(run, bundle)
    shutil.copytree(data, tmp_path / "data")
    (bundle / BASE_EMBEDDINGS).unlink()  # an older bundle: the base data must be read
    config = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps({**config, "data_dir": "../../data"}))
    samples = site_photos(tmp_path / "site", 5)
    result = retrain(RetrainRequest(bundle, samples, tmp_path / "v2", tmp_path / "cache"))
    assert result.counts["base_train"] == 12
    assert (tmp_path / "cache" / "moved-base-embeddings.npz").is_file()

    shutil.rmtree(tmp_path / "data")  # computed once: the next retraining reads the cache
    again = retrain(RetrainRequest(bundle, samples, tmp_path / "v3", tmp_path / "cache"))
    assert again.counts == result.counts
