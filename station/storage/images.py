"""The image file of each decision: the exact frame the operator saw, as a lossless PNG beside the database."""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from station.storage.errors import StorageError


def encode_png(image: NDArray[np.uint8]) -> bytes:
    """Lossless PNG of an RGB uint8 HxWx3 frame (no BGR swap here: frames are RGB since capture)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be an RGB uint8 array of shape HxWx3, got {dtype} {shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def write_image(images_dir: Path, created: datetime, png: bytes, permissions: int) -> Path:
    """Write ``png`` as ``images/<day>/<time>-<random>.png`` (``created``'s local day), durably: the row that
    points at it is committed only after. ``permissions``: the database file's own, so images are as readable."""
    day = images_dir / f"{created:%Y-%m-%d}"
    file = day / f"{created:%H%M%S}-{uuid.uuid4().hex}.png"
    try:
        new_day = not day.exists()
        day.mkdir(parents=True, exist_ok=True)
        if new_day:
            _fsync_dir(images_dir)
        _write_atomically(file, png, permissions)
    except OSError as exc:
        raise StorageError(f"cannot write image {file}: {exc.strerror or exc}") from exc
    return file


def _fsync_dir(folder: Path) -> None:
    """Make a rename/creation inside ``folder`` durable before the row that points at it is committed (POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same folder, fsync, rename: readers see the whole file or nothing.

    ``mode``: mkstemp makes the file private (0600); images get the database's own mode instead.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)

