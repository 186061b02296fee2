"""Model building, local weights, fine-tuning freeze rules and the bundle loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from training.config import TrainConfig
from training.errors import TrainingError
from training.model import (
    backbone_of,
    block_of,
    build_backbone,
    build_model,
    export_model,
    load_bundle,
    unfreeze_top,
)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = build_backbone(None, 32)
    path = tmp_path / "efficientnetv2-b2_notop.weights.h5"
    source.save_weights(path)
    model = build_model(3, str(path), 32)
    for mine, theirs in zip(backbone_of(model).get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="weights file not found"):
        build_model(3, str(tmp_path / "nope.h5"), 32)


def test_fine_tuning_unfreezes_top_layers_but_never_batchnorm() -> None:
    model = build_model(3, None, 32)
    assert not model.get_layer("efficientnetv2-b2").trainable_weights
    assert unfreeze_top(model, 0.3) > 0
    backbone = backbone_of(model)
    trainable = [layer for layer in backbone.layers if layer.trainable_weights]
    assert trainable and not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert not backbone.layers[1].trainable_weights  # the bottom stays frozen


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_fine_tuning_cuts_on_a_block_boundary(fraction: float) -> None:
    model = build_model(3, None, 32)
    unfreeze_top(model, fraction)
    layers = backbone_of(model).layers
    moving = {block_of(layer.name) for layer in layers if layer.trainable}
    for layer in layers:  # every layer of a block that moves moves too, BatchNorm aside
        if block_of(layer.name) in moving and not isinstance(layer, keras.layers.BatchNormalization):
            assert layer.trainable, layer.name
    cut = next(i for i, layer in enumerate(layers) if layer.trainable)
    assert block_of(layers[cut - 1].name) != block_of(layers[cut].name)
    assert cut <= int(len(layers) * (1 - fraction))  # at least the asked share, rounded down to a block start
    assert block_of("block6c_expand_conv") == "block6c" and block_of("top_conv") == "top"


def test_exported_model_computes_the_same_outputs() -> None:
    model = build_model(4, None, None, freeze_backbone=False)
    exported = export_model(model, 32, 4)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(exported(x, training=False), model(x, training=False), atol=1e-5)
    assert exported.input_shape == (None, 32, 32, 3)


@pytest.fixture
def bundle_dir(tiny_bundle_path: Path) -> Path:
    return tiny_bundle_path


def broken_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    return copy


def test_loader_reads_a_good_bundle(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.labels == ["a", "b", "c"] and bundle.image_size == 32
    embedding, probs = bundle.feature_model()(np.zeros((1, 32, 32, 3), np.float32))
    assert embedding.shape == (1, 1408) and probs.shape == (1, 3)


def test_loader_reads_config_json_into_the_settings(bundle_dir: Path, tmp_path: Path) -> None:
    copy = broken_copy(bundle_dir, tmp_path)
    assert load_bundle(copy).config is None  # a bundle without one
    (copy / "config.json").write_text(json.dumps({"data_dir": "../data", "out": "runs/x", "image_size": 32,
                                                  "class_names": ["a", "b", "c"], "parent": "p", "mode": "fast"}))
    config = load_bundle(copy).config
    assert config == TrainConfig(data_dir="../data", out="runs/x", image_size=32)
    (copy / "config.json").write_text("[1, 2]")
    with pytest.raises(TrainingError, match=r"config\.json is not a training configuration"):
        load_bundle(copy)


def test_loader_refuses_missing_model(bundle_dir: Path, tmp_path: Path) -> None:
    copy = broken_copy(bundle_dir, tmp_path)
    (copy / "model.keras").unlink()
    with pytest.raises(TrainingError, match=f"{copy}.*missing model.keras"):
        load_bundle(copy)


def test_loader_refuses_corrupt_model(bundle_dir: Path, tmp_path: Path) -> None:
    copy = broken_copy(bundle_dir, tmp_path)
    (copy / "model.keras").write_bytes(b"garbage" * 100)
    with pytest.raises(TrainingError, match=f"{copy}.*corrupt"):
        load_bundle(copy)


def test_loader_refuses_missing_labels(bundle_dir: Path, tmp_path: Path) -> None:
    copy = broken_copy(bundle_dir, tmp_path)
    (copy / "labels.json").unlink()
    with pytest.raises(TrainingError, match=f"{copy}.*missing labels.json"):
        load_bundle(copy)


def test_loader_refuses_label_count_mismatch(bundle_dir: Path, tmp_path: Path) -> None:
    copy = broken_copy(bundle_dir, tmp_path)
    (copy / "labels.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(TrainingError, match="names 2 classes but the model has 3 outputs"):
        load_bundle(copy)


def test_loader_refuses_code_in_a_model_file(bundle_dir: Path, tmp_path: Path) -> None:
    """Safe mode: a Lambda layer (arbitrary Python) in model.keras is not deserialized."""
    copy = tmp_path / "lambda"
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3)(keras.layers.Lambda(lambda x: x * 2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    copy.mkdir()
    keras.Model(inputs, outputs).save(copy / "model.keras")
    (copy / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    with pytest.raises(TrainingError, match="corrupt or unreadable"):
        load_bundle(copy)
