"""Classify camera frames with a model bundle: Frame -> Prediction (probabilities, top-k, embedding, latency).

No Qt here. One :class:`Classifier` per loaded bundle; swapping models means building a new
Classifier and replacing the reference in one step. Preprocessing is ``training.preprocess.prepare_image``
and nothing else: the model rescales raw 0-255 RGB itself.

A frame goes through a backbone (pixels -> pooled embedding) and then the bundle's softmax head as a numpy
product. The backbone runs in LiteRT when a converted copy of it exists and agrees with Keras on a warm-up
frame (``backend="auto"``), else as a compiled Keras call. A bundle without a converted backbone is
converted once, in a child process, into the cache folder while Keras serves the frames.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from station.camera import Frame
from station.settings import INFERENCE_BACKENDS
from training.errors import TrainingError
from training.head import Head
from training.lite import (
    DEFAULT_THREADS,
    LiteBackbone,
    backbone_model,
    convert_in_child,
    find_backbone,
    litert_available,
    remove_partial_cache_files,
)
from training.model import Bundle, load_bundle
from training.preprocess import prepare_image
from training.quiet import run_quietly

log = logging.getLogger(__name__)

BACKENDS = INFERENCE_BACKENDS
AGREEMENT = 1e-4  # LiteRT vs Keras on the warm-up frame: largest probability gap, largest relative embedding gap


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


@dataclass(frozen=True)
class InferenceOptions:
    """How a Classifier runs its backbone. ``backend``: "auto" (LiteRT when it loads and agrees with Keras on a
    warm-up frame, else Keras), "litert" (LiteRT or an error; Keras while it is being converted) or "keras"."""

    backend: str = "auto"
    cache_dir: Path | None = None  # converted backbones are kept here; None: never convert
    threads: int = DEFAULT_THREADS  # LiteRT interpreter threads


class Backbone(Protocol):
    name: str

    def embed(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...


class KerasBackbone:
    """The Keras backbone as one compiled call on a fixed (1, S, S, 3) float32 input.

    ``model.predict()`` per frame rebuilds its data pipeline every call (about 2x slower here); a
    ``tf.function`` with a fixed signature is traced once (here, not on the first frame). XLA
    (``jit_compile=True``) was measured and not used, see ``JIT_COMPILE``.
    """

    name = "keras"
    # Measured on the 2-core dev machine (EfficientNetV2B2, batch 1, median of 20, training job running):
    # 128 px 46 ms plain vs 74 ms XLA, 260 px 88 ms vs 253 ms; XLA warm-up 6 s vs 2 s. Plain graph wins.
    JIT_COMPILE = False

    def __init__(self, model: keras.Model) -> None:
        features = backbone_model(model)
        size = int(model.input_shape[1])
        signature = [tf.TensorSpec((1, size, size, 3), tf.float32, name="image")]
        self._call = tf.function(lambda batch: features(batch, training=False), input_signature=signature,
                                 jit_compile=self.JIT_COMPILE, reduce_retracing=True)
        self._call(tf.zeros((1, size, size, 3), tf.float32))

    def embed(self, batch: NDArray[np.float32] | tf.Tensor) -> NDArray[np.float32]:
        return self._call(batch).numpy()


def warmup_batch(size: int) -> NDArray[np.float32]:
    """A fixed camera-like frame (gradients and noise) at the model's input size."""
    y, x = np.mgrid[0:size, 0:size] * (255.0 / max(1, size - 1))
    noise = np.random.default_rng(0).normal(0.0, 12.0, (size, size, 3))
    image = np.stack([x, y, (x + y) / 2], axis=-1) + noise
    return np.clip(image, 0, 255).astype(np.float32)[np.newaxis]


def disagreement(lite: Backbone, reference: Backbone, head: Head, size: int) -> str | None:
    """Why ``lite`` cannot stand in for ``reference`` on the warm-up frame; None when they agree."""
    batch = warmup_batch(size)
    got, want = lite.embed(batch), reference.embed(batch)
    if got.shape != want.shape:
        return f"embedding shape {got.shape} differs from Keras {want.shape}"
    relative = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    p_got, p_want = head.probabilities(got), head.probabilities(want)
    gap = float(np.abs(p_got - p_want).max())
    if relative > AGREEMENT or gap > AGREEMENT or p_got.argmax() != p_want.argmax():
        return f"differs from Keras on the warm-up frame (embedding {relative:.2g} relative, probability {gap:.2g})"
    return None


class BackboneConversion:
    """Converts a bundle's backbone into ``cache_dir`` in a spawned child process at lowered priority (a minute of
    CPU that must not hold the station's GIL), watched by a thread that calls ``done(succeeded)`` when it ends."""

    def __init__(self, bundle_dir: Path, cache_dir: Path, done: Callable[[bool], None]) -> None:
        self.cache_dir = Path(cache_dir)
        self._stop = threading.Event()
        process = multiprocessing.get_context("spawn").Process(
            target=run_quietly, args=(convert_in_child.__module__, convert_in_child.__name__, Path(bundle_dir),
                                      self.cache_dir), name="backbone-conversion", daemon=True)
        self._thread = threading.Thread(target=self._watch, args=(process, done), name="backbone-conversion")
        self._thread.start()

    def _watch(self, process: Any, done: Callable[[bool], None]) -> None:
        process.start()
        while process.is_alive():
            if self._stop.wait(0.2):
                process.terminate()
                process.join()
                remove_partial_cache_files(self.cache_dir)
                return
        process.join()
        if process.exitcode != 0:
            log.warning("converting the backbone to LiteRT failed (exit code %s); inference stays on Keras",
                        process.exitcode)
        done(process.exitcode == 0)

    def wait(self, timeout: float | None = None) -> bool:
        """True once the conversion (and the switch that follows it) has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Classifier:
    """A bundle's model as backbone (LiteRT or Keras) + numpy softmax head, on one frame at a time.

    The constructor warms everything up so the first real frame is as fast as the rest. ``classify`` is
    thread-safe; the backbone may change under it (once, Keras -> LiteRT) when a background conversion ends.
    ``close()`` stops a conversion still running.
    """

    def __init__(self, bundle: Bundle, version: str | None = None, options: InferenceOptions | None = None) -> None:
        self._options = options or InferenceOptions()
        if self._options.backend not in BACKENDS:
            raise ValueError(f"unknown inference backend {self._options.backend!r}; use one of {', '.join(BACKENDS)}")
        self._bundle = bundle
        self._labels = tuple(bundle.labels)
        self._image_size = bundle.image_size
        self._version = version if version is not None else bundle.name
        self._head = Head.of(bundle.model)
        self._keras = KerasBackbone(bundle.model)
        self._backbone: Backbone = self._keras
        self._conversion: BackboneConversion | None = None
        if self._options.backend != "keras":
            self._start_litert()

    def _start_litert(self) -> None:
        """Use a converted backbone if there is one; else convert one in the background when a cache is set."""
        if not litert_available():
            self._refuse("LiteRT is not installed (pip install ai-edge-litert)")
            return
        path = find_backbone(self._bundle.model, self._bundle.path, self._options.cache_dir)
        if path is not None:
            self._adopt(path)
        elif self._options.cache_dir is not None:
            log.info("%s: converting the backbone to LiteRT in the background; Keras until then", self._version)
            self._conversion = BackboneConversion(self._bundle.path, self._options.cache_dir, self._on_converted)
        else:
            self._refuse(f"{self._bundle.path} has no backbone.tflite (python -m training export-lite)")

    def _adopt(self, path: Path) -> bool:
        try:
            lite = LiteBackbone(path, self._options.threads)
            problem = disagreement(lite, self._keras, self._head, self._image_size)
        except TrainingError as exc:
            problem = str(exc)
        if problem is not None:
            self._refuse(f"{path}: {problem}")
            return False
        self._backbone = lite  # one reference assignment: a classify in flight keeps the backbone it took
        log.info("%s: backbone runs in LiteRT (%s)", self._version, path)
        return True

    def _refuse(self, reason: str) -> None:
        """LiteRT cannot be used: an error when it was asked for by name, else Keras it is."""
        if self._options.backend == "litert" and self._conversion is None:
            raise TrainingError(f"inference backend 'litert' cannot be used: {reason}")
        log.warning("%s: LiteRT not used, Keras runs the backbone: %s", self._version, reason)

    def _on_converted(self, succeeded: bool) -> None:
        path = find_backbone(self._bundle.model, self._bundle.path, self._options.cache_dir) if succeeded else None
        if path is not None:
            self._adopt(path)

    @classmethod
    def load(cls, path: str | Path, version: str | None = None, options: InferenceOptions | None = None) -> Classifier:
        """Load a bundle folder; raises ``training.errors.TrainingError`` if it is missing or corrupt."""
        return cls(load_bundle(path), version, options)

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

    @property
    def options(self) -> InferenceOptions:
        return self._options

    @property
    def backend(self) -> str:
        """What runs the backbone right now: "litert" or "keras"."""
        return self._backbone.name

    @property
    def backbone(self) -> Backbone:
        """The backbone in use right now (LiteRT or Keras)."""
        return self._backbone

    @property
    def keras_backbone(self) -> KerasBackbone:
        """The Keras reference (equivalence tests, benchmarks)."""
        return self._keras

    def wait_for_conversion(self, timeout: float | None = None) -> bool:
        """True when no background conversion is running (any that ran has ended and been switched to)."""
        return self._conversion is None or self._conversion.wait(timeout)

    def close(self) -> None:
        """Stop a background conversion still running (its partial file is removed); classify keeps working."""
        if self._conversion is not None:
            self._conversion.stop()

    def forward(self, batch: NDArray[np.float32] | tf.Tensor) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Backbone + head on a prepared (1, S, S, 3) float32 batch -> (embedding, probabilities)."""
        embedding = self._backbone.embed(batch)
        return embedding, self._head.probabilities(embedding)

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
