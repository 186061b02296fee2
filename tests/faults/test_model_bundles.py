"""Model bundles that must never run: code inside model.keras, a truncated file. The station refuses them by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import pytest

from station.inference import Classifier
from training.errors import TrainingError

MARKER = Path("/tmp") / "station-fault-suite-code-ran"


def _touch_marker(x):  # what a malicious model would run at load time
    MARKER.write_text("ran")
    return x


def test_code_in_a_model_file_never_runs(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Lambda(_touch_marker)(pooled))
    bundle = tmp_path / "evil-v1"
    bundle.mkdir()
    keras.Model(inputs, outputs).save(bundle / "model.keras")
    MARKER.unlink(missing_ok=True)  # saving traced the function once
    (bundle / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    with pytest.raises(TrainingError, match=str(bundle)):
        Classifier.load(bundle)
    assert not MARKER.exists()


def test_truncated_model_file_is_refused_by_name(tmp_path: Path, tiny_bundle_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle_path, tmp_path / "cut-v1"))
    data = (bundle / "model.keras").read_bytes()
    (bundle / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match="corrupt or unreadable"):
        Classifier.load(bundle)
