"""Synthetic sorting sites made from the base model's validation and test photos (never its training photos).

    python bench/sites.py OUT [--sites belt,dim,wood] [--bundle DIR] [--base-data DIR]

Each site shifts what a real site shifts, on every photo, with a seed per photo so the site is the same on
every run: ``belt`` a dark rubber conveyor with a warm cast, a tilted camera and JPEG at quality 55; ``dim``
low light with a cool cast, blur, sensor noise and clutter (other items' fragments) around the item;
``wood`` a wooden table under a slightly shifted white balance. OUT/<site>/<class>/<photo>.jpg is a class
folder that ``bench/site_curve.py`` reads like any folder of real site photos.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from training.data import load_split  # noqa: E402
from training.preprocess import load_rgb  # noqa: E402

Image8 = NDArray[np.uint8]


def studio_background(image: Image8) -> NDArray[np.bool_]:
    """Bright, colourless pixels: the studio's white/grey backdrop behind TrashNet's items."""
    pixels = image.astype(np.int16)
    return (pixels.max(axis=2) - pixels.min(axis=2) < 40) & (pixels.mean(axis=2) > 140)


def replace_background(image: Image8, texture: NDArray[np.float64]) -> Image8:
    mask = studio_background(image)
    mask = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)[..., None]  # no hard cut-out edge
    out = image * (1 - mask) + np.clip(texture, 0, 255) * mask
    return out.astype(np.uint8)


def wood_texture(shape: tuple[int, int], rng: np.random.Generator) -> NDArray[np.float64]:
    height, width = shape
    y = np.arange(height)[:, None]
    grain = 0.5 + 0.5 * np.sin(y / rng.uniform(3, 7) + np.sin(np.arange(width)[None, :] / 40) * 3)
    wood = np.stack([110 + 60 * grain, 70 + 40 * grain, 35 + 20 * grain], axis=-1)
    return wood + rng.normal(0, 6, wood.shape)


def belt_texture(shape: tuple[int, int], rng: np.random.Generator) -> NDArray[np.float64]:
    """Dark rubber with transverse ribs and grime."""
    height, width = shape
    ribs = 0.5 + 0.5 * np.sign(np.sin(np.arange(height)[:, None] / rng.uniform(4, 8)))
    grime = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), 6) * 40
    grey = 45 + 12 * ribs + grime + rng.normal(0, 5, (height, width))
    return np.repeat(grey[..., None], 3, axis=2) * np.array([1.0, 0.97, 0.93])


def colour_cast(image: NDArray[np.float64], gains: tuple[float, float, float], gamma: float = 1.0) -> Image8:
    out = 255.0 * (np.clip(image * np.array(gains), 0, 255) / 255.0) ** gamma
    return np.clip(out, 0, 255).astype(np.uint8)


def tilt(image: Image8, rng: np.random.Generator, amount: float) -> Image8:
    """A camera not square to the surface: a random perspective warp, edges filled by reflection."""
    height, width = image.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = rng.uniform(-amount, amount, (4, 2)) * np.array([width, height])
    matrix = cv2.getPerspectiveTransform(corners, (corners + jitter).astype(np.float32))
    return cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def jpeg(image: Image8, quality: int) -> Image8:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


def clutter(image: Image8, others: list[Image8], rng: np.random.Generator) -> Image8:
    """Fragments of other items pasted along the borders, where an item's neighbours lie on a belt."""
    out = image.copy()
    height, width = out.shape[:2]
    for other in rng.choice(len(others), size=3, replace=False):
        piece = others[other]
        ph, pw = int(height * rng.uniform(0.2, 0.35)), int(width * rng.uniform(0.2, 0.35))
        sy, sx = rng.integers(0, piece.shape[0] - ph), rng.integers(0, piece.shape[1] - pw)
        fragment = piece[sy : sy + ph, sx : sx + pw]
        edge = rng.integers(4)  # top, bottom, left, right
        y = 0 if edge == 0 else height - ph if edge == 1 else rng.integers(0, height - ph)
        x = 0 if edge == 2 else width - pw if edge == 3 else rng.integers(0, width - pw)
        keep = ~studio_background(fragment)
        out[y : y + ph, x : x + pw][keep] = fragment[keep]
    return out


def belt(image: Image8, rng: np.random.Generator, others: list[Image8]) -> Image8:
    out = replace_background(image, belt_texture(image.shape[:2], rng))
    out = colour_cast(out.astype(np.float64), (1.08, 1.0, 0.85), gamma=1.1)
    return jpeg(tilt(out, rng, 0.08), 55)


def dim(image: Image8, rng: np.random.Generator, others: list[Image8]) -> Image8:
    out = clutter(image, others, rng)
    out = colour_cast(out.astype(np.float64), (0.8, 0.9, 1.1), gamma=1.5)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(1.0, 2.0))
    noisy = out + rng.normal(0, 9, out.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def wood(image: Image8, rng: np.random.Generator, others: list[Image8]) -> Image8:
    out = replace_background(image, wood_texture(image.shape[:2], rng))
    return colour_cast(out.astype(np.float64), (1.0, 0.96, 0.9))


SITES: dict[str, Callable[[Image8, np.random.Generator, list[Image8]], Image8]] = {
    "belt": belt, "dim": dim, "wood": wood}


def site_photos(bundle_dir: Path) -> list[str]:
    """The base model's validation and test photos: never trained on."""
    split = load_split(bundle_dir / "split.json")
    return sorted(split["val"] + split["test"])


def make_site(name: str, photos: list[str], base_data: Path, out: Path) -> int:
    transform = SITES[name]
    images = [load_rgb(base_data / rel) for rel in photos]
    for k, (rel, image) in enumerate(zip(photos, images, strict=True)):
        rng = np.random.default_rng([k, sorted(SITES).index(name)])
        target = out / name / Path(rel).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(transform(image, rng, images)).save(target, quality=92)
    return len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sites", default=",".join(SITES), help="comma-separated, of: " + ", ".join(SITES))
    parser.add_argument("--bundle", type=Path, help="the model whose split says which photos are unseen")
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    names = [s for s in args.sites.split(",") if s]
    unknown = sorted(set(names) - set(SITES))
    if unknown:
        parser.error(f"unknown site(s): {', '.join(unknown)}")
    photos = site_photos(bundle_or_exit(args.bundle))
    for name in names:
        count = make_site(name, photos, args.base_data, args.out)
        print(f"{args.out / name}: {count} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
