"""EfficientNetV2B2 classifier: build, unfreeze for fine-tuning, and the model bundle on disk.

A bundle is a folder holding ``model.keras`` (raw RGB 0-255 in, class probabilities out,
no optimizer state), ``labels.json`` (class names in output order) and ``metrics.json``.
A model never travels without its labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from training.config import TrainConfig
from training.errors import TrainingError
from training.files import read_json, read_labels, write_json

EMBEDDING_LAYER = "embedding"
OUTPUT_LAYER = "predictions"
BACKBONE_NAME = "efficientnetv2-b2"

WEIGHTS_HELP = (
    "ImageNet weights for EfficientNetV2B2 could not be downloaded (no internet?). "
    "Use --weights PATH with a local no-top weights file (efficientnetv2-b2_notop.h5), "
    "or --weights none to train from scratch."
)


def build_backbone(weights: str | None, image_size: int | None = None) -> keras.Model:
    """EfficientNetV2B2 without its top; ``weights`` is 'imagenet', None or a local file path.

    ``image_size=None`` accepts any square size (progressive resizing).
    """
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise TrainingError(f"weights file not found: {weights}")
    try:
        return keras.applications.EfficientNetV2B2(
            include_top=False,
            weights=weights,
            input_shape=(image_size, image_size, 3),
            include_preprocessing=True,  # rescaling lives in the model: feed raw 0-255 pixels
        )
    except Exception as exc:
        if weights == "imagenet":
            raise TrainingError(WEIGHTS_HELP) from exc
        if weights is not None:
            raise TrainingError(f"cannot load weights from {weights}: {exc}") from exc
        raise


def build_model(
    num_classes: int,
    weights: str | None,
    image_size: int | None = None,
    dropout: float = 0.2,
    freeze_backbone: bool = True,
) -> keras.Model:
    """Backbone + global average pooling (the embedding) + dropout + softmax head.

    With ``freeze_backbone`` the backbone is not trainable and runs in inference mode,
    so its BatchNorm statistics stay as loaded even after it is unfrozen for fine-tuning.
    From scratch (``freeze_backbone=False``) BatchNorm learns like every other layer.
    """
    backbone = build_backbone(weights, image_size)
    backbone.trainable = not freeze_backbone
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(inputs, training=False) if freeze_backbone else backbone(inputs)
    embedding = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(embedding)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="garbage_classifier")


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_NAME)


def block_of(layer_name: str) -> str:
    """EfficientNetV2's unit a layer belongs to: ``block6c`` for ``block6c_expand_conv``, else its first word
    (``stem``, ``top``)."""
    match = re.match(r"(block\d+[a-z]+)_", layer_name)
    return match.group(1) if match else layer_name.split("_", 1)[0]


def unfreeze_top(model: keras.Model, fraction: float = 0.3) -> int:
    """Make the top ``fraction`` of backbone layers trainable, cut on a block boundary (a block is never half
    trained: its squeeze-excite and residual parts move together), keeping BatchNorm frozen.

    Returns how many layers became trainable. Recompile the model afterwards.
    """
    backbone = backbone_of(model)
    backbone.trainable = True
    layers = backbone.layers
    start = min(int(len(layers) * (1.0 - fraction)), len(layers) - 1)
    while start > 0 and block_of(layers[start - 1].name) == block_of(layers[start].name):
        start -= 1
    unfrozen = 0
    for i, layer in enumerate(layers):
        trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += trainable
    return unfrozen


def export_model(model: keras.Model, image_size: int, num_classes: int) -> keras.Model:
    """A fresh, uncompiled copy with a fixed input size (so no optimizer state is saved)."""
    dropout = model.get_layer("head_dropout").rate
    fixed = build_model(num_classes, None, image_size, dropout, freeze_backbone=False)
    fixed.set_weights(model.get_weights())
    return fixed


@dataclass
class Bundle:
    """A loaded model bundle: the model, its class names and the metadata saved beside it."""

    path: Path
    model: keras.Model
    labels: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig | None = None  # the run's settings (config.json); None when the bundle has none
    _features: keras.Model | None = field(default=None, repr=False, compare=False)

    @property
    def image_size(self) -> int:
        return int(self.model.input_shape[1])

    @property
    def name(self) -> str:
        return self.path.name

    def feature_model(self) -> keras.Model:
        """Same weights, two outputs: (embedding, probabilities). Built once: each new model retraces."""
        if self._features is None:
            embedding = self.model.get_layer(EMBEDDING_LAYER).output
            self._features = keras.Model(self.model.input, [embedding, self.model.output])
        return self._features


def save_bundle_files(model: keras.Model, labels: list[str], folder: Path) -> None:
    """Write ``model.keras`` and ``labels.json`` into ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    write_json(folder / "labels.json", labels)


def load_bundle(folder: str | Path) -> Bundle:
    """Load a bundle with Keras safe mode; refuse missing, corrupt or mismatched parts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingError(f"model bundle not found: {folder}")
    model_path = folder / "model.keras"
    if not model_path.is_file():
        raise TrainingError(f"model bundle {folder}: missing model.keras")
    labels = read_labels(folder)
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:
        raise TrainingError(f"model bundle {folder}: model.keras is corrupt or unreadable ({exc})") from exc
    outputs = int(model.outputs[0].shape[-1])
    if outputs != len(labels):
        raise TrainingError(
            f"model bundle {folder}: labels.json names {len(labels)} classes "
            f"but the model has {outputs} outputs"
        )
    metrics = read_json(folder / "metrics.json", "metrics") if (folder / "metrics.json").exists() else {}
    config = read_config(folder / "config.json") if (folder / "config.json").exists() else None
    return Bundle(folder, model, labels, metrics, config)


def read_config(path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_json(read_json(path, "config"))
    except (TypeError, AttributeError) as exc:  # not an object, or without data_dir / out
        raise TrainingError(f"{path} is not a training configuration ({exc})") from exc


