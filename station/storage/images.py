"""The image file of each decision: the exact frame the operator saw, as a lossless PNG beside the database."""

from __future__ import annotations

import io
import re
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from station.storage.errors import StorageError
from training.files import fsync_dir, write_atomically


def encode_png(image: NDArray[np.uint8]) -> bytes:
    """Lossless PNG of an RGB uint8 HxWx3 frame (no BGR swap here: frames are RGB since capture)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be an RGB uint8 array of shape HxWx3, got {dtype} {shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def station_folder(station: str) -> str:
    """A station's own folder name under ``images/`` beside a shared database (any name made a safe path part)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", station).strip("._") or "station"


def write_image(images_dir: Path, created: datetime, key: str, png: bytes, permissions: int) -> Path:
    """Write ``png`` as ``images/<day>/<time>-<key>-<attempt>.png`` (``created``'s local day), durably: the row
    that points at it is committed only after. ``key`` (``NewDecision.key``, random) keeps names unique across
    stations sharing the folder; ``<attempt>`` (random) keeps a retry from overwriting, or removing when it fails,
    the image of an attempt that did commit. ``permissions``: the database file's own, so images are as readable."""
    day = images_dir / f"{created:%Y-%m-%d}"
    file = day / f"{created:%H%M%S}-{key}-{uuid.uuid4().hex[:8]}.png"
    try:
        new_folders = [folder for folder in (day, *day.parents) if not folder.exists()][::-1]  # outermost first
        day.mkdir(parents=True, exist_ok=True)
        for folder in new_folders:  # a new folder's entry lives in its parent
            fsync_dir(folder.parent)
        write_atomically(file, png, durable=True, permissions=permissions)
    except OSError as exc:
        raise StorageError(f"cannot write image {file}: {exc.strerror or exc}") from exc
    return file
