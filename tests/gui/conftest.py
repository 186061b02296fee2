"""pytest-qt fixtures: the real main window on a folder source and a tiny model (offscreen)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

from station.settings import Settings


def write_images(folder: Path, count: int) -> Path:
    """Distinct solid-colour photos, so every image is a new frame."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        color = ((40 * i) % 256, (90 + 50 * i) % 256, (200 - 30 * i) % 256)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:] = color
        image[10:30, 20:40] = 255 - np.array(color, np.uint8)
        Image.fromarray(image).save(folder / f"item{i:02d}.png")
    return folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_images(tmp_path / "photos", 6)


@pytest.fixture
def make_settings(tmp_path: Path, tiny_bundle_path: Path) -> Callable[..., Settings]:
    def make(**changes: object) -> Settings:
        values: dict[str, object] = {
            "source": str(tmp_path / "photos"), "interval": 0.0, "threshold": 0.6,
            "data_dir": tmp_path / "data", "station_name": "test-station", "model": str(tiny_bundle_path),
            "base_data": None, "auto_retrain_every": 0, "max_base_drop": 0.05,
        }
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bundle_path: Path):
    from station.inference import Classifier

    return Classifier.load(tiny_bundle_path)


@pytest.fixture
def windows(qtbot) -> Iterator[list]:
    """Windows made by a test; each is shut down after it, and no worker thread may outlive it."""
    made: list = []
    yield made
    for window in made:
        window.shutdown()
        for worker in (window.capture, window.inference, window.storage):
            assert worker.wait(10_000), f"{type(worker).__name__} still running after the test"
