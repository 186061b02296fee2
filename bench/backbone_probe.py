"""How well a backbone's frozen features separate a site's classes: the frozen-feature curve of the backbone issue.

    python bench/backbone_probe.py SITE_DIR [SITE_DIR ...] --backbone NAME=PATH [--backbone NAME=PATH ...]
                                   [--image-size 128] [--per-class 5,10,30,100] [--repeats 5]

PATH is a model bundle (its backbone is used) or a no-top weights file (``python -m training export-backbone``),
so a backbone pretrained on other classes (Tiny ImageNet) is measured before any garbage photo reached it. Each
site photo is embedded once (centre square at ``--image-size``, global average pooling, never trained on the
site); for each N a logistic regression is fitted on N photos per class of the site alone and scored on the rest
(``bench/site_curve.py``'s "probe", the same draws for every backbone). Prints a table and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from bench.site_curve import probe  # noqa: E402
from training.data import scan_dataset  # noqa: E402
from training.preprocess import load_prepared  # noqa: E402


def feature_model(path: Path) -> Any:  # a keras.Model: keras loads only here
    """The backbone at any input size with global average pooling, from a bundle or a weights file."""
    import keras

    from training.model import backbone_of, build_backbone, load_bundle

    if path.is_dir():  # a bundle: its backbone's weights, into a backbone that accepts any size
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "backbone.weights.h5"
            backbone_of(load_bundle(path).model).save_weights(weights)
            backbone = build_backbone(str(weights))
    else:
        backbone = build_backbone(str(path))
    return keras.Model(backbone.input, keras.layers.GlobalAveragePooling2D()(backbone.output))


def site_photos(folder: Path, size: int) -> tuple[NDArray[np.uint8], NDArray[np.int64], int]:
    dataset = scan_dataset(folder)
    images = np.stack([load_prepared(dataset.root / rel, size) for rel, _ in dataset.items])
    return images, np.array([y for _, y in dataset.items], dtype=np.int64), len(dataset.class_names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sites", nargs="+", type=Path, help="folders of site photos in class sub-folders")
    parser.add_argument("--backbone", action="append", required=True, metavar="NAME=PATH",
                        help="a backbone to measure: a bundle folder or a .weights.h5 file (repeatable)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--per-class", default="5,10,30,100")
    parser.add_argument("--repeats", type=int, default=5, help="draws of the N photos per point (seeds 0..)")
    args = parser.parse_args()
    counts = [int(n) for n in args.per_class.split(",")]
    backbones = dict(spec.split("=", 1) for spec in args.backbone)
    sites = {folder.name: site_photos(folder, args.image_size) for folder in args.sites}

    results: dict[str, dict[str, dict[int, float]]] = {}
    for name, path in backbones.items():
        model = feature_model(Path(path))
        for site, (images, y, num_classes) in sites.items():
            embeddings = model.predict(images.astype(np.float32), batch_size=32, verbose=0).astype(np.float32)
            results.setdefault(name, {})[site] = {
                n: float(np.mean([probe(embeddings, y, num_classes, n, seed) for seed in range(args.repeats)]))
                for n in counts
            }
    print(f"frozen-feature probe, {args.image_size} px, mean of {args.repeats} draws; site accuracy by N per class")
    print(f"{'backbone':24} {'site':8} " + " ".join(f"{n:>6}" for n in counts))
    for name, by_site in results.items():
        for site, curve in by_site.items():
            print(f"{name:24} {site:8} " + " ".join(f"{curve[n]:6.3f}" for n in counts))
    print(json.dumps({"image_size": args.image_size, "repeats": args.repeats, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
