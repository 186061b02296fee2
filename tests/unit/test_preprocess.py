from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.preprocess import load_prepared, load_rgb, prepare_image


def test_center_square_crop_then_resize_keeps_raw_pixel_range() -> None:
    image = np.zeros((60, 100, 3), dtype=np.uint8)
    image[:, 20:80] = 200  # the centre square (60x60 at columns 20..79)
    out = prepare_image(image, 30)
    assert out.shape == (30, 30, 3) and out.dtype == np.uint8
    assert (out == 200).all()  # side bars cropped away; no /255 rescaling


def test_rejects_non_rgb_arrays() -> None:
    with pytest.raises(ValueError, match="RGB"):
        prepare_image(np.zeros((10, 10), dtype=np.uint8), 8)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_load_rgb_converts_any_mode_to_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"image_{mode}.png"
    Image.new(mode, (12, 8)).save(path)
    assert load_rgb(path).shape == (8, 12, 3)
    assert load_prepared(path, 4).shape == (4, 4, 3)


def test_truncated_file_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(OSError):
        load_rgb(path)
