"""The backbone (raw RGB pixels -> pooled embedding) as a LiteRT model: convert, store, find, run.

On a CPU the LiteRT interpreter (XNNPACK) runs the same float32 graph on one frame 2-3x faster than a
compiled Keras call (``bench/inference.py``). Only the backbone is converted: the softmax head stays a
numpy product with the bundle's Dense weights (``training.head.Head``), so a fast retrain, which changes
only the head, needs no conversion at all.

A converted backbone is identified by the sha256 of the backbone's weights (``backbone_sha256``), not of
``model.keras``: a fast-retrained bundle differs from its parent only in the head and reuses its file.
In a bundle the file is ``backbone.tflite`` with ``backbone.json`` (that hash) beside it; in a cache
folder it is ``backbone-<hash>.tflite``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
from numpy.typing import NDArray

from training.errors import TrainingError
from training.files import atomic_file, write_json
from training.model import EMBEDDING_LAYER, load_bundle
from training.quiet import tensorflow_notes_kept_quiet

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.tflite"
BACKBONE_INFO = "backbone.json"
# Both cores by default; under a competing CPU-bound process one thread can be faster (bench/inference.py).
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def backbone_model(model: keras.Model) -> keras.Model:
    """The classifier cut at its embedding: raw RGB 0-255 in, pooled features out (same weights)."""
    return keras.Model(model.input, model.get_layer(EMBEDDING_LAYER).output, name="backbone")


def backbone_sha256(model: keras.Model) -> str:
    """A fingerprint of everything that decides the embedding: input size and every backbone weight."""
    digest = hashlib.sha256(repr(tuple(model.input_shape)).encode())
    for weight in backbone_model(model).get_weights():
        digest.update(repr(weight.shape).encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def convert(model: keras.Model) -> bytes:
    """The backbone as a float32 TFLite flatbuffer (built-in ops only, so plain LiteRT runs it)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(backbone_model(model))
    # Keras prints the exported model's signature to stdout: a page of noise in a training log or a terminal.
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            flatbuffer: bytes = converter.convert()
    except Exception as exc:  # the converter raises its own ConverterError and plain exceptions
        raise TrainingError(f"cannot convert the backbone to LiteRT: {exc}") from exc
    log.debug("the converter printed: %s", printed.getvalue().strip())
    return flatbuffer


def write_backbone(model: keras.Model, folder: Path) -> Path:
    """Convert and store ``backbone.tflite`` + ``backbone.json`` in a bundle folder (each file atomically)."""
    path = Path(folder) / BACKBONE_FILE
    data = convert(model)
    try:
        with atomic_file(path, "wb") as f:
            f.write(data)
        write_json(Path(folder) / BACKBONE_INFO, {
            "backbone_sha256": backbone_sha256(model),
            "image_size": int(model.input_shape[1]),
            "embedding_width": int(model.get_layer(EMBEDDING_LAYER).output.shape[-1]),
        })
    except OSError as exc:
        raise TrainingError(f"cannot write {path}: {exc}") from exc
    return path


def cache_path(cache_dir: Path, sha256: str) -> Path:
    return Path(cache_dir) / f"backbone-{sha256[:16]}.tflite"


def cache_backbone(bundle_dir: Path, cache_dir: Path) -> Path:
    """Load a bundle and store its converted backbone in ``cache_dir`` (the station's conversion, in a child)."""
    model = load_bundle(bundle_dir).model
    path = cache_path(cache_dir, backbone_sha256(model))
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    data = convert(model)
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


def convert_in_child(bundle_dir: Path, cache_dir: Path) -> None:
    """Entry point of the station's conversion process: background work, so it yields the CPU to inference."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if hasattr(os, "nice"):
        os.nice(10)
    path = cache_backbone(bundle_dir, cache_dir)
    log.info("converted backbone written to %s", path)


def litert_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def remove_partial_cache_files(cache_dir: Path) -> None:
    """Temporary files a conversion child left when it was stopped (``atomic_file`` names them ``.NAME.*``)."""
    for leftover in Path(cache_dir).glob(".backbone-*.tflite.*"):
        leftover.unlink(missing_ok=True)


def bundle_backbone_sha256(bundle_dir: Path) -> str | None:
    """The backbone hash recorded beside a bundle's ``backbone.tflite``; None when absent or unreadable."""
    info, tflite = Path(bundle_dir) / BACKBONE_INFO, Path(bundle_dir) / BACKBONE_FILE
    if not (info.is_file() and tflite.is_file()):
        return None
    try:
        value = json.loads(info.read_text()).get("backbone_sha256")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s is unreadable (%s); %s not used", info, exc, tflite)
        return None
    return value if isinstance(value, str) else None


def find_backbone(model: keras.Model, bundle_dir: Path, cache_dir: Path | None = None) -> Path | None:
    """A converted backbone made from exactly this model's backbone: the bundle's own, else the cache's."""
    sha256 = backbone_sha256(model)
    if bundle_backbone_sha256(bundle_dir) == sha256:
        return Path(bundle_dir) / BACKBONE_FILE
    if (Path(bundle_dir) / BACKBONE_FILE).is_file():
        log.warning("%s was made from another backbone; not used", Path(bundle_dir) / BACKBONE_FILE)
    if cache_dir is not None and cache_path(cache_dir, sha256).is_file():
        return cache_path(cache_dir, sha256)
    return None


def add_backbone_file(
    model: keras.Model, folder: Path, parent_dir: Path | None = None, convert_new: bool = True
) -> Path | None:
    """Give a new bundle in ``folder`` its ``backbone.tflite``: the parent's copied when the backbone is the same
    (a fast retrain: no conversion), else a new conversion when ``convert_new``. Never fails the bundle: a failed
    conversion is logged and the bundle goes without (the station converts it later, or runs Keras)."""
    if parent_dir is not None and bundle_backbone_sha256(parent_dir) == backbone_sha256(model):
        for name in (BACKBONE_FILE, BACKBONE_INFO):
            shutil.copyfile(Path(parent_dir) / name, Path(folder) / name)
        return Path(folder) / BACKBONE_FILE
    if not convert_new:
        return None
    try:
        return write_backbone(model, folder)
    except TrainingError as exc:
        log.warning("the bundle in %s goes without %s: %s", folder, BACKBONE_FILE, exc)
        return None


class LiteBackbone:
    """A converted backbone in the LiteRT interpreter: (N, S, S, 3) float32 0-255 -> (N, D) float32.

    One interpreter is not thread-safe, so calls are serialised; the batch size follows the input.
    """

    name = "litert"

    def __init__(self, path: Path, threads: int = DEFAULT_THREADS) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise TrainingError("LiteRT is not installed (pip install ai-edge-litert)") from exc
        self.path = Path(path)
        try:
            with tensorflow_notes_kept_quiet():
                self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(f"{path} is not a usable LiteRT model ({exc})") from exc
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shapes = (tuple(inputs[0]["shape"]), tuple(outputs[0]["shape"])) if len(inputs) == len(outputs) == 1 else None
        if shapes is None or len(shapes[0]) != 4 or shapes[0][3] != 3 or len(shapes[1]) != 2:
            raise TrainingError(f"{path} is not an image backbone (inputs {inputs}, outputs {outputs})")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        self.image_size = int(shapes[0][1])
        self.width = int(shapes[1][1])
        self.threads = threads
        self._batch = int(shapes[0][0])
        self._lock = threading.Lock()

    def embed(self, batch: NDArray[Any]) -> NDArray[np.float32]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected (N, {self.image_size}, {self.image_size}, 3), got {batch.shape}")
        with self._lock:
            if len(batch) != self._batch:
                self._interpreter.resize_tensor_input(self._input, list(batch.shape))
                self._interpreter.allocate_tensors()
                self._batch = len(batch)
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            # a copy: the next call cannot change it
            output: NDArray[np.float32] = self._interpreter.get_tensor(self._output)
            return output
