"""The settings of a training run, apart from the training code: the CLI builds its options (and --help)
from these defaults without importing TensorFlow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` so the run can be repeated."""

    data_dir: str
    out: str
    weights: str = "imagenet"  # "imagenet", "none" (from scratch) or a local weights file
    image_size: int = 128
    epochs: int = 15  # head phase; from scratch: the progressive-resizing epochs
    fine_tune_epochs: int = 15  # unfrozen top blocks; from scratch: a final low-rate phase at full size
    batch_size: int = 32
    seed: int = 42
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    fine_tune_fraction: float = 0.3  # share of backbone layers unfrozen in phase 2
    weight_decay: float = 1e-4
    dropout: float = 0.2
    label_smoothing: float = 0.1
    augment: float = 1.0  # augmentation strength, 0..1
    mixup: float = 0.0  # mixup alpha; 0 turns it off
    patience: int = 8  # early stopping, epochs without a better validation loss
    stages: int = 4  # from scratch: progressive-resizing stages
    min_image_size: int = 0  # from scratch: first stage size; 0 means half of image_size
    warmup_epochs: int = 3  # from scratch: linear learning-rate warm-up
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    init_from: str = ""  # optional bundle whose weights start the run (continue training)
    base_embeddings: bool = True  # store the split's embeddings in the bundle (fast retraining)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A bundle's ``config.json``; the keys a bundle adds beside the settings (``class_names``, and
        ``parent``/``mode`` of a retrained one) are not settings and are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def from_scratch(self) -> bool:
        return self.weights == "none"
