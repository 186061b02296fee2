"""The backbone in LiteRT + the head in numpy against the Keras model: same labels, same numbers; conversion,
caching and refusal of a converted backbone that does not belong to the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from station.inference import Classifier, InferenceOptions
from station.settings import DEMO_DIR
from tests.conftest import MINI_DATASET, run_cli
from tests.unit.test_retrain import site_photos
from training import embeddings as embeddings_module
from training.embeddings import embed
from training.errors import TrainingError
from training.lite import (
    BACKBONE_FILE,
    BACKBONE_INFO,
    add_backbone_file,
    backbone_sha256,
    bundle_backbone_sha256,
    cache_path,
)
from training.model import OUTPUT_LAYER, load_bundle
from training.preprocess import IMAGE_EXTENSIONS, load_prepared
from training.quiet import TENSORFLOW_NOISE
from training.retrain import RetrainRequest, retrain

TOLERANCE = 1e-4


def image_files() -> list[Path]:
    """The demo feed and the mini dataset: real photos of every class."""
    return sorted(p for p in [*DEMO_DIR.iterdir(), *MINI_DATASET.rglob("*")] if p.suffix.lower() in IMAGE_EXTENSIONS)


def assert_equivalent(classifier: Classifier, paths: list[Path]) -> None:
    """LiteRT + numpy head vs the Keras model itself: top-1, probabilities within 1e-4, embeddings 1e-4 relative."""
    assert classifier.backend == "litert"
    images = np.stack([load_prepared(p, classifier.image_size) for p in paths]).astype(np.float32)
    want_embeddings, want = classifier.bundle.feature_model().predict(images, batch_size=32, verbose=0)
    for i, path in enumerate(paths):
        embedding, probabilities = classifier.forward(images[i : i + 1])
        relative = np.abs(embedding[0] - want_embeddings[i]).max() / np.abs(want_embeddings[i]).max()
        assert relative <= TOLERANCE, f"{path.name}: embedding differs by {relative:.2g} relative"
        np.testing.assert_allclose(probabilities[0], want[i], rtol=0, atol=TOLERANCE, err_msg=path.name)
        assert probabilities[0].argmax() == want[i].argmax(), path.name


def without_backbone(run: Path, folder: Path) -> Path:
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns(BACKBONE_FILE, BACKBONE_INFO))
    return folder


def test_train_writes_the_converted_backbone_of_its_own_model(trained_run: tuple[Path, Path, str]) -> None:
    _, run, out = trained_run
    assert (run / BACKBONE_FILE).stat().st_size > 1_000_000
    assert bundle_backbone_sha256(run) == backbone_sha256(load_bundle(run).model)
    assert "LiteRT" in out
    assert "Saved artifact" not in out and "TensorSpec" not in out  # the converter's signature dump stays out


def test_litert_and_keras_agree_on_every_image(trained_run: tuple[Path, Path, str]) -> None:
    paths = image_files()
    assert len(paths) >= 50
    assert_equivalent(Classifier.load(trained_run[1]), paths)


def test_keras_backend_never_uses_litert(trained_run: tuple[Path, Path, str]) -> None:
    classifier = Classifier.load(trained_run[1], options=InferenceOptions("keras"))
    assert classifier.backend == "keras"
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    prediction = classifier.classify_image(frame)
    lite = Classifier.load(trained_run[1]).classify_image(frame)
    np.testing.assert_allclose(prediction.probabilities, lite.probabilities, atol=TOLERANCE)
    np.testing.assert_allclose(prediction.embedding, lite.embedding, rtol=0,
                               atol=TOLERANCE * np.abs(prediction.embedding).max())


def test_unknown_backend_is_refused(trained_run: tuple[Path, Path, str]) -> None:
    with pytest.raises(ValueError, match="unknown inference backend 'tpu'"):
        Classifier.load(trained_run[1], options=InferenceOptions("tpu"))


def test_base_embeddings_are_computed_in_litert(
    trained_run: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = trained_run[1]
    bundle = load_bundle(run)
    paths = image_files()[:40]
    images = np.stack([load_prepared(p, bundle.image_size) for p in paths])
    calls: list[int] = []
    lite_embed = embeddings_module.LiteBackbone.embed
    monkeypatch.setattr(embeddings_module.LiteBackbone, "embed",
                        lambda self, batch: calls.append(len(batch)) or lite_embed(self, batch))
    got = embed(bundle, images, batch_size=16)
    assert calls == [16, 16, 8]
    want, _ = bundle.feature_model().predict(images.astype(np.float32), verbose=0)
    relative = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)
    assert relative.max() <= TOLERANCE


def test_a_converted_backbone_of_another_model_is_refused_and_export_lite_replaces_it(
    trained_run: tuple[Path, Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = trained_run[1]
    folder = tmp_path / "changed"
    shutil.copytree(run, folder)
    # model.keras gets another backbone (its first kernel scaled); backbone.json is made to claim the new hash,
    # so only the warm-up comparison with Keras can tell that backbone.tflite is the old one.
    bundle = load_bundle(folder)
    layer = next(layer for layer in bundle.model.get_layer("efficientnetv2-b2").layers if layer.get_weights())
    weights = layer.get_weights()
    weights[0] = weights[0] * 1.1
    layer.set_weights(weights)
    bundle.model.save(folder / "model.keras")
    info = json.loads((folder / BACKBONE_INFO).read_text())
    (folder / BACKBONE_INFO).write_text(json.dumps({**info, "backbone_sha256": backbone_sha256(bundle.model)}))

    assert Classifier.load(folder).backend == "keras"
    assert "differs from Keras on the warm-up frame" in caplog.text
    with pytest.raises(TrainingError, match=r"'litert' cannot be used: .*differs from Keras"):
        Classifier.load(folder, options=InferenceOptions("litert"))

    code, out, err = run_cli(["export-lite", str(folder)])
    assert code == 0, err
    assert f"wrote {folder / BACKBONE_FILE}" in out
    assert "TensorSpec" not in out
    assert_equivalent(Classifier.load(folder, options=InferenceOptions("litert")), image_files()[:12])


def test_a_stale_or_broken_converted_backbone_is_not_used(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    run = trained_run[1]
    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    (stale / BACKBONE_INFO).write_text(json.dumps({"backbone_sha256": "0" * 64}))
    assert Classifier.load(stale).backend == "keras"
    with pytest.raises(TrainingError, match=r"has no backbone\.tflite"):
        Classifier.load(stale, options=InferenceOptions("litert"))

    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / BACKBONE_FILE).write_bytes(b"TFL3 not really")
    assert Classifier.load(broken).backend == "keras"
    with pytest.raises(TrainingError, match="not a usable LiteRT model"):
        Classifier.load(broken, options=InferenceOptions("litert"))

    unreadable = tmp_path / "unreadable"
    shutil.copytree(run, unreadable)
    (unreadable / BACKBONE_INFO).write_text("{not json")
    assert bundle_backbone_sha256(unreadable) is None
    assert Classifier.load(unreadable).backend == "keras"


def test_export_lite_reports_a_missing_bundle(tmp_path: Path) -> None:
    code, _, err = run_cli(["export-lite", str(tmp_path / "nowhere")])
    assert code == 2
    assert "model bundle not found" in err


def test_a_new_head_keeps_the_parent_backbone_file_without_conversion(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    run = trained_run[1]
    model = load_bundle(run).model
    head = model.get_layer(OUTPUT_LAYER)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 2.0, bias + 1.0])  # what a fast retrain changes
    fast = tmp_path / "fast"
    fast.mkdir()
    assert add_backbone_file(model, fast, parent_dir=run, convert_new=False) == fast / BACKBONE_FILE
    assert (fast / BACKBONE_FILE).read_bytes() == (run / BACKBONE_FILE).read_bytes()
    assert bundle_backbone_sha256(fast) == backbone_sha256(model)

    layer = next(layer for layer in model.get_layer("efficientnetv2-b2").layers if layer.get_weights())
    layer.set_weights([w + 1.0 for w in layer.get_weights()])  # what a full retrain changes
    other = tmp_path / "full-not-converted"
    other.mkdir()
    assert add_backbone_file(model, other, parent_dir=run, convert_new=False) is None
    assert list(other.iterdir()) == []


def test_a_fast_retrain_swaps_in_with_the_parent_backbone_file_and_no_conversion(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    request = RetrainRequest(run, site_photos(tmp_path / "site", 5), tmp_path / "r2", tmp_path / "cache",
                             base_data_dir=data)
    candidate = Path(retrain(request).candidate)
    assert (candidate / BACKBONE_FILE).read_bytes() == (run / BACKBONE_FILE).read_bytes()
    classifier = Classifier.load(candidate, options=InferenceOptions("auto", cache_dir=tmp_path / "cache"))
    assert classifier.backend == "litert" and classifier.wait_for_conversion(timeout=0)
    assert_equivalent(classifier, image_files()[:12])


def test_litert_by_name_needs_a_converted_backbone_or_a_cache(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    bare = without_backbone(trained_run[1], tmp_path / "bare")
    assert Classifier.load(bare).backend == "keras"  # auto without a cache folder: Keras, no conversion
    with pytest.raises(TrainingError, match=r"has no backbone.tflite \(python -m training export-lite\)"):
        Classifier.load(bare, options=InferenceOptions("litert"))


def test_a_bundle_without_backbone_is_converted_in_the_background_and_cached(
    trained_run: tuple[Path, Path, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bare = without_backbone(trained_run[1], tmp_path / "bare")
    cache = tmp_path / "cache"
    classifier = Classifier.load(bare, options=InferenceOptions("auto", cache_dir=cache))
    try:
        assert classifier.backend == "keras"  # serves frames right away
        classifier.classify_image(np.zeros((48, 64, 3), np.uint8))
        assert classifier.wait_for_conversion(timeout=900)
    finally:
        classifier.close()
    assert classifier.backend == "litert"
    printed = capfd.readouterr()
    assert "Saved artifact" not in printed.out  # the child's converter keeps Keras's print to itself
    assert not [note for note in TENSORFLOW_NOISE if note in printed.err]  # and TensorFlow's import notes
    cached = cache_path(cache, backbone_sha256(classifier.bundle.model))
    assert sorted(p.name for p in cache.iterdir()) == [cached.name]
    assert not (bare / BACKBONE_FILE).exists()  # the bundle folder is left as it was
    assert_equivalent(classifier, image_files()[:12])

    again = Classifier.load(bare, options=InferenceOptions("litert", cache_dir=cache))
    assert again.backend == "litert" and again.wait_for_conversion(timeout=0)  # found in the cache


def test_closing_stops_a_conversion_and_leaves_no_partial_file(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    bare = without_backbone(trained_run[1], tmp_path / "bare")
    cache = tmp_path / "cache"
    classifier = Classifier.load(bare, options=InferenceOptions("auto", cache_dir=cache))
    assert not classifier.wait_for_conversion(timeout=0)  # running
    classifier.close()
    assert classifier.wait_for_conversion(timeout=0)
    assert classifier.backend == "keras"
    assert not cache.exists() or list(cache.iterdir()) == []
    classifier.close()  # twice is fine
