"""Classifier on a tiny real bundle: same numbers as model.predict, through the one preprocessing path."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from station.camera import Frame
from station.inference import Classifier, Prediction
from training.errors import TrainingError
from training.preprocess import prepare_image

B2_EMBEDDING_WIDTH = 1408
TINY_LABELS = ["a", "b", "c"]  # as built by the tiny_bundle_path fixture (tests/unit/conftest.py)
TINY_SIZE = 32


@pytest.fixture(scope="module")
def classifier(tiny_bundle_path: Path) -> Classifier:
    return Classifier.load(tiny_bundle_path)


def camera_frame(height: int = 48, width: int = 64, seed: int = 0) -> Frame:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Frame(image, 7, time.monotonic(), "camera 0")


def test_classifier_properties(classifier: Classifier) -> None:
    assert classifier.labels == tuple(TINY_LABELS)
    assert classifier.image_size == TINY_SIZE
    assert classifier.version == "tiny-v1"  # the bundle folder's name


def test_prediction_matches_model_predict(classifier: Classifier) -> None:
    frame = camera_frame()
    prediction = classifier.classify(frame)
    assert isinstance(prediction, Prediction)
    assert prediction.frame is frame
    assert prediction.probabilities.dtype == np.float32
    assert prediction.probabilities.shape == (len(TINY_LABELS),)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    prepared = prepare_image(frame.image, TINY_SIZE)[np.newaxis].astype(np.float32)
    expected = classifier.bundle.model.predict(prepared, verbose=0)[0]
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-4, atol=1e-6)
    assert prediction.embedding.dtype == np.float32
    assert prediction.embedding.shape == (B2_EMBEDDING_WIDTH,)
    assert prediction.latency_ms > 0
    assert prediction.model_version == "tiny-v1"
    assert prediction.labels == tuple(TINY_LABELS)


def test_prediction_accessors() -> None:
    probabilities = np.array([0.2, 0.5, 0.3], np.float32)
    prediction = Prediction(camera_frame(), probabilities, ("a", "b", "c"), np.zeros(4, np.float32), 1.0, "v")
    assert prediction.label == "b"
    assert prediction.confidence == pytest.approx(0.5)
    assert prediction.top(3) == [("b", pytest.approx(0.5)), ("c", pytest.approx(0.3)), ("a", pytest.approx(0.2))]
    assert [name for name, _ in prediction.top(1)] == ["b"]
    assert prediction.probabilities_dict() == pytest.approx({"a": 0.2, "b": 0.5, "c": 0.3})


def test_top_is_sorted_on_real_output(classifier: Classifier) -> None:
    top = classifier.classify(camera_frame(seed=1)).top(3)
    scores = [score for _, score in top]
    assert scores == sorted(scores, reverse=True)
    assert {name for name, _ in top} == set(TINY_LABELS)


def test_any_frame_size_is_prepared(classifier: Classifier) -> None:
    tall = classifier.classify(camera_frame(height=97, width=31, seed=2))
    wide = classifier.classify_image(camera_frame(height=480, width=640, seed=3).image)
    for prediction in (tall, wide):
        assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert wide.frame.name == "image"


def test_explicit_version(classifier: Classifier) -> None:
    relabelled = Classifier(classifier.bundle, version="v7")  # same loaded bundle: no second load
    assert relabelled.version == "v7"
    assert relabelled.classify(camera_frame()).model_version == "v7"


def test_missing_or_corrupt_bundle_raises(tiny_bundle_path: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="not found"):
        Classifier.load(tmp_path / "missing")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_bundle_path, corrupt)
    (corrupt / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(TrainingError, match="corrupt"):
        Classifier.load(corrupt)
