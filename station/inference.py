"""Classify camera frames with a model bundle: Frame -> Prediction (probabilities, top-k, embedding, latency).

No Qt here. One :class:`Classifier` per loaded bundle; swapping models means building a new
Classifier and replacing the reference in one step. Preprocessing is ``training.preprocess.prepare_image``
and nothing else: the model rescales raw 0-255 RGB itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from station.camera import Frame
from training.model import Bundle, load_bundle
from training.preprocess import prepare_image


# eq=False: identity semantics, like Frame (array fields make value equality meaningless)
@dataclass(frozen=True, eq=False)
class Prediction:
    """What the model said about one frame, with the class names it said it in."""

    frame: Frame
    probabilities: NDArray[np.float32]  # one per label, sums to 1
    labels: tuple[str, ...]
    embedding: NDArray[np.float32]  # pooled backbone features (similarity search, drift checks)
    latency_ms: float  # preprocessing + forward pass
    model_version: str

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.labels[self.best_index]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.best_index])

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely labels, most likely first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    def probabilities_dict(self) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.labels, self.probabilities, strict=True)}


class Classifier:
    """A bundle's model as one compiled call on a fixed (1, S, S, 3) float32 input.

    ``model.predict()`` per frame rebuilds its data pipeline every call (about 2x slower here);
    a ``tf.function`` with a fixed signature is traced once. XLA (``jit_compile=True``) was
    measured and not used, see ``JIT_COMPILE``. The constructor warms the call up so the first
    real frame is as fast as the rest. Thread-safe: ``classify`` holds no mutable state.
    """

    # Measured on the 2-core dev machine (EfficientNetV2B2, batch 1, median of 20, training job running):
    # 128 px 46 ms plain vs 74 ms XLA, 260 px 88 ms vs 253 ms; XLA warm-up 6 s vs 2 s. Plain graph wins.
    JIT_COMPILE = False

    def __init__(self, bundle: Bundle, version: str | None = None) -> None:
        self._bundle = bundle
        self._labels = tuple(bundle.labels)
        self._image_size = bundle.image_size
        self._version = version if version is not None else bundle.name
        feature_model = bundle.feature_model()  # outputs [embedding, probabilities]
        size = self._image_size
        signature = [tf.TensorSpec((1, size, size, 3), tf.float32, name="image")]

        def forward(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            embedding, probabilities = feature_model(batch, training=False)
            return embedding, probabilities

        self._forward = tf.function(
            forward, input_signature=signature, jit_compile=self.JIT_COMPILE, reduce_retracing=True
        )
        self.forward(np.zeros((1, size, size, 3), np.float32))  # trace + first run now, not on frame 1

    @classmethod
    def load(cls, path: str | Path, version: str | None = None) -> Classifier:
        """Load a bundle folder; raises ``training.errors.TrainingError`` if it is missing or corrupt."""
        return cls(load_bundle(path), version)

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def version(self) -> str:
        return self._version

    def forward(self, batch: NDArray[np.float32] | tf.Tensor) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The bare compiled pass on a prepared (1, S, S, 3) float32 batch -> (embedding, probabilities)."""
        embedding, probabilities = self._forward(batch)
        return embedding.numpy(), probabilities.numpy()

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """RGB frame -> the model's (1, S, S, 3) float32 input (raw 0-255: the model rescales)."""
        return prepare_image(rgb, self._image_size)[np.newaxis].astype(np.float32)

    def classify(self, frame: Frame) -> Prediction:
        start = time.perf_counter()
        embedding, probabilities = self.forward(self.prepare(frame.image))
        latency_ms = (time.perf_counter() - start) * 1000.0
        return Prediction(
            frame=frame,
            probabilities=probabilities[0],
            labels=self._labels,
            embedding=embedding[0],
            latency_ms=latency_ms,
            model_version=self._version,
        )

    def classify_image(self, rgb: NDArray[np.uint8], name: str = "image") -> Prediction:
        """Classify a bare RGB array (a stored image, a test); wraps it in a one-off Frame."""
        return self.classify(Frame(rgb, 0, time.monotonic(), name))
