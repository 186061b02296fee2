"""The bundled model with its backbone in LiteRT: the labels and numbers of the Keras model on the demo feed and on
its whole test split. Slow: converts the bundled backbone once (about a minute). The test split needs the TrashNet
dataset: ``$TRASHNET_DIR``, else ``../shared/datasets/trashnet`` beside the repository (as the benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.common import DEFAULT_DATA
from station.inference import Classifier, InferenceOptions
from station.settings import bundled_model_dir
from tests.unit.test_bundled_model import demo_images
from tests.unit.test_lite import assert_equivalent
from training.data import load_split
from training.lite import cache_backbone
from training.preprocess import load_rgb

TRASHNET = Path(os.environ.get("TRASHNET_DIR", DEFAULT_DATA))


@pytest.fixture(scope="module")
def bundled_litert(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    cache = tmp_path_factory.mktemp("litert-cache")
    cache_backbone(bundled_model_dir(), cache)  # into a cache folder: the shipped bundle stays as it is
    return Classifier.load(bundled_model_dir(), options=InferenceOptions("litert", cache_dir=cache))


def test_bundled_model_in_litert_matches_keras_on_the_demo_images(bundled_litert: Classifier) -> None:
    assert_equivalent(bundled_litert, demo_images())


def test_bundled_model_in_litert_matches_keras_on_its_test_split(bundled_litert: Classifier) -> None:
    split = load_split(bundled_litert.bundle.path / "split.json")
    paths = [TRASHNET / p for p in split["test"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"TrashNet test split not found at {TRASHNET} ({len(missing)} of {len(paths)} images missing; "
                    "set TRASHNET_DIR)")
    assert_equivalent(bundled_litert, paths)
    # Same labels, so the same accuracy as the Keras evaluation recorded in metrics.json.
    labels = bundled_litert.labels
    truth = [p.split("/", 1)[0] for p in split["test"]]
    predicted = [labels[int(np.argmax(bundled_litert.classify_image(load_rgb(p)).probabilities))] for p in paths]
    accuracy = np.mean([a == b for a, b in zip(predicted, truth, strict=True)])
    assert accuracy == pytest.approx(bundled_litert.bundle.metrics["accuracy"], abs=1e-9)
