"""The shipped model bundle and demo feed: consistent with the bundle's own test metrics."""

from __future__ import annotations

import json
import math

import numpy as np

from station.settings import DEMO_DIR, bundled_model_dir
from training.model import load_bundle
from training.predict import predict_files


def demo_images() -> list:
    return sorted(p for p in DEMO_DIR.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def test_demo_images_come_from_the_test_split_only_with_every_class() -> None:
    bundle_dir = bundled_model_dir()
    split = json.loads((bundle_dir / "split.json").read_text())
    labels = json.loads((bundle_dir / "labels.json").read_text())
    images = demo_images()
    assert len(images) >= 24
    seen = set()
    for image in images:
        _, label, original = image.name.split("-", 2)
        relative = f"{label}/{original}"
        assert relative in split["test"], relative
        assert relative not in split["train"] and relative not in split["val"]
        seen.add(label)
    assert seen == set(labels)


def test_bundled_model_labels_the_demo_images_as_well_as_its_metrics_say() -> None:
    bundle = load_bundle(bundled_model_dir())
    images = demo_images()
    results = predict_files(bundle, images)
    truth = [image.name.split("-", 2)[1] for image in images]
    accuracy = float(np.mean([r["label"] == t for r, t in zip(results, truth, strict=True)]))
    expected = bundle.metrics["accuracy"]
    # The demo images are a sample of the test split: allow three binomial standard errors below it.
    floor = expected - 3 * math.sqrt(expected * (1 - expected) / len(images))
    assert accuracy >= floor, f"demo accuracy {accuracy:.3f} < {floor:.3f} (test accuracy {expected:.3f})"
    assert bundle.metrics["split_counts"]["test"] == len(json.loads((bundle.path / "split.json").read_text())["test"])
