"""The single image preprocessing path shared by training, evaluation, prediction and the station.

Models take raw RGB pixels (0-255) at their input size: Keras EfficientNetV2 rescales
internally, so nothing here divides by 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def prepare_image(rgb: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """Center-crop to a square and resize to ``size`` x ``size`` (RGB uint8 in, RGB uint8 out).

    A square crop treats every source alike (4:3 photos, 16:9 cameras) without distorting
    the item; the operator places items in the middle of the view.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cast(NDArray[np.uint8], cv2.resize(square, (size, size), interpolation=interpolation))


MAX_DECODE_PIXELS = 64_000_000  # with max_side: larger images that cannot be decoded at a reduced scale are refused


def load_rgb(path: str | Path, max_side: int | None = None) -> NDArray[np.uint8]:
    """Decode an image file fully into RGB uint8, honouring EXIF orientation.

    With ``max_side``, a JPEG is decoded at a reduced scale (1/2 to 1/8) no smaller than ``max_side`` on its
    long side (the caller resizes the rest of the way), and an image that would still exceed
    ``MAX_DECODE_PIXELS`` is refused from its header, before any pixel is decoded.
    Raises ``OSError`` or ``ValueError`` for unreadable, truncated, too large or non-image files.
    """
    with Image.open(path) as image:
        if max_side is not None:
            image.draft("RGB", (max_side, max_side))
            if image.width * image.height > MAX_DECODE_PIXELS:
                raise ValueError(f"image too large to decode ({image.width}x{image.height} pixels)")
        image.load()  # decode everything now: truncated files fail here, not mid-epoch
        upright = ImageOps.exif_transpose(image)
        return np.asarray(upright.convert("RGB"), dtype=np.uint8)


def load_prepared(path: str | Path, size: int) -> NDArray[np.uint8]:
    """Load a file and prepare it for a model of input size ``size``."""
    return prepare_image(load_rgb(path), size)
