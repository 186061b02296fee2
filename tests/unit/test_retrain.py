"""Fast retraining end to end on a tiny model: site decisions that the model gets wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASSES, MINI_DATASET
from training.embeddings import BASE_EMBEDDINGS
from training.errors import TrainingError
from training.gate import SITE_CHECKS
from training.lite import backbone_sha256, bundle_backbone_sha256
from training.messages import RetrainReport
from training.model import load_bundle
from training.retrain import RetrainCancelled, RetrainRequest, SiteSample, folds_of, replay_sample, retrain


def site_photos(folder: Path, per_class: int, running_label: str | None = "cardboard") -> list[SiteSample]:
    """Another site's photos: each class its own flat colour with noise; the running model called them all
    ``running_label`` when the operator judged them (None: another model did)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for k, name in enumerate(CLASSES):
        colour = np.array([(60 * k) % 256, (140 + 70 * k) % 256, (230 - 40 * k) % 256])
        for i in range(per_class):
            image = np.clip(colour + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{name}{i}.png"
            Image.fromarray(image).save(path)
            samples.append(SiteSample(path, name, None, running_label=running_label))
    return samples


def test_fast_retrain_learns_the_site_and_writes_a_candidate(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    samples = site_photos(tmp_path / "site", 10)
    events: list[dict] = []
    request = RetrainRequest(run, samples, tmp_path / "models" / "v2", tmp_path / "cache", base_data_dir=data)
    result = retrain(request, events.append)
    # every decision trains the candidate; all 60 were judged live, so all 60 are scored, cross-validated
    assert result.counts == {"base_train": 12, "site_train": 60, "site_judged": 60}
    assert result.candidate_metrics.decisions.count == 60
    assert result.current.decisions.accuracy == pytest.approx(10 / 60)  # "cardboard" for everything
    assert result.candidate_metrics.decisions.accuracy >= 0.5  # 3x chance; tiny-model features vary by run
    assert result.paired is not None and result.paired.p_better < 0.05
    assert result.gate_rule in ("site-better", "base-drop")  # the 1-epoch test model's base score is noise
    assert sum(e.phase == "cross-validation" for e in events) == 5
    assert [e.phase for e in events][-1] == "done"
    candidate = load_bundle(result.candidate)
    assert candidate.labels == CLASSES
    assert_site_checks_match_the_gate(candidate.metrics, result)
    assert not (tmp_path / "cache").exists()  # the bundle's own base-embeddings.npz served; nothing computed
    assert not list((tmp_path / "models").glob(".*partial*"))


def assert_site_checks_match_the_gate(metrics: dict, result: RetrainReport) -> None:
    """The bundle keeps one check per decision the gate judged the candidate on, as many right as it counted."""
    checks = metrics[SITE_CHECKS]
    assert len(checks) == result.candidate_metrics.decisions.count
    assert sum(c["right"] for c in checks) == round(result.candidate_metrics.decisions.accuracy * len(checks))
    assert {c["predicted"] for c in checks} <= set(CLASSES)
    assert all(1 / len(CLASSES) <= c["confidence"] <= 1 for c in checks)  # the top class's probability


def test_cancel_leaves_nothing_behind(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    request = RetrainRequest(run, site_photos(tmp_path / "site", 5), tmp_path / "models" / "v2",
                             tmp_path / "cache", base_data_dir=data)
    with pytest.raises(RetrainCancelled):
        retrain(request, cancelled=lambda: True)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_unknown_class_in_decisions_is_refused(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    sample = SiteSample(data / "glass" / "glass1.jpg", "wood", None)
    with pytest.raises(TrainingError, match="wood"):
        retrain(RetrainRequest(run, [sample], tmp_path / "v2", tmp_path / "cache", base_data_dir=data))


def test_decisions_judged_by_another_model_teach_but_are_not_scored(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    samples = site_photos(tmp_path / "site", 3, running_label=None)
    result = retrain(RetrainRequest(run, samples, tmp_path / "v2", tmp_path / "cache", base_data_dir=data))
    assert result.counts == {"base_train": 12, "site_train": 18, "site_judged": 0}
    assert (result.gate_passed, result.gate_rule) == (False, "no-site-decisions")
    assert load_bundle(result.candidate).labels == CLASSES


def test_folds_are_stratified_and_seeded() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 2)
    folds = folds_of(y, 5)
    for c, n in ((0, 10), (1, 5), (2, 2)):
        assert sorted(np.bincount(folds[y == c], minlength=5)) == sorted([n // 5 + (i < n % 5) for i in range(5)])
    assert np.array_equal(folds, folds_of(y, 5)) and not np.array_equal(folds, folds_of(y, 5, seed=1))


def test_replay_takes_at_most_n_per_class() -> None:
    paths = [f"a/{i}.jpg" for i in range(10)] + [f"b/{i}.jpg" for i in range(3)]
    picked = replay_sample(paths, 4)
    assert sum(p.startswith("a/") for p in picked) == 4 and sum(p.startswith("b/") for p in picked) == 3
    assert set(picked) <= set(paths) and picked == replay_sample(paths, 4)


def test_full_retrain_fine_tunes_the_backbone_top_and_scores_on_images(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    events: list[dict] = []
    request = RetrainRequest(run, site_photos(tmp_path / "site", 5), tmp_path / "models" / "f1", tmp_path / "cache",
                             base_data_dir=data, mode="full", epochs=2, learning_rate=1e-3)
    result = retrain(request, events.append)
    assert any(e.phase.startswith("fine-tune epoch") for e in events)
    # a fifth of the judged decisions (one of 5 per class) is kept out of this run to judge it
    assert result.counts == {"base_train": 12, "site_train": 24, "site_judged": 6}
    assert result.candidate_metrics.decisions.count == 6
    assert result.candidate_metrics.base_test.count == 6
    parent, candidate = load_bundle(run), load_bundle(result.candidate)
    changed = [not np.allclose(a, b) for a, b in zip(parent.model.get_weights(), candidate.model.get_weights(),
                                                       strict=True)]
    assert any(changed) and not all(changed)  # the top moved, the frozen bottom did not
    assert json.loads((Path(result.candidate) / "config.json").read_text())["mode"] == "full"
    assert_site_checks_match_the_gate(candidate.metrics, result)
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


def test_a_candidate_of_a_bundle_without_training_settings_loads(retrainable_bundle: Path, tmp_path: Path) -> None:
    """A parent with no config.json (not made by training.train) gives a candidate a station can load: it once
    got a config.json holding only parent and mode, which load_bundle refuses as no training configuration."""
    samples = site_photos(tmp_path / "site", 2)
    result = retrain(RetrainRequest(retrainable_bundle, samples, tmp_path / "models" / "r1", tmp_path / "cache",
                                    base_data_dir=MINI_DATASET))
    candidate = load_bundle(result.candidate)
    assert candidate.labels == CLASSES and candidate.config is None
