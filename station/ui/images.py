"""numpy RGB frames to Qt images."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PySide6.QtGui import QImage, QPixmap


def to_qimage(rgb: NDArray[np.uint8]) -> QImage:
    """A QImage that owns its pixels (a QImage on a numpy buffer shares it: copy)."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, rgb.strides[0], QImage.Format.Format_RGB888).copy()


def to_pixmap(rgb: NDArray[np.uint8]) -> QPixmap:
    return QPixmap.fromImage(to_qimage(rgb))
