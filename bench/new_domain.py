"""A site the bundled model has never seen: the same kinds of items on another background.

    python bench/new_domain.py [--bundle DIR] [--base-data DIR]

Takes the bundle's validation-split photos (never trained on, and apart from the base test
split the gate uses), replaces their white/grey background with a wood-like texture, lets the
station's classifier predict each one as the station would (prediction + stored embedding),
stores them as operator decisions with their true label, runs one fast retrain, and prints
the running and candidate model on the held-out 20 % of those decisions and on the base test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from station.inference import Classifier  # noqa: E402
from station.retraining import RetrainJob, run_retrain  # noqa: E402
from station.storage import NewDecision, Storage  # noqa: E402
from training.data import load_split  # noqa: E402
from training.preprocess import load_rgb  # noqa: E402


def wood_background(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
    """Bright, colourless pixels (the studio background) become a brown grain texture."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    pixels = image.astype(np.int16)
    background = (pixels.max(axis=2) - pixels.min(axis=2) < 40) & (pixels.mean(axis=2) > 140)
    y = np.arange(height)[:, None]
    grain = 0.5 + 0.5 * np.sin(y / rng.uniform(3, 7) + np.sin(np.arange(width)[None, :] / 40) * 3)
    wood = np.stack([110 + 60 * grain, 70 + 40 * grain, 35 + 20 * grain], axis=-1)
    wood += rng.normal(0, 6, wood.shape)
    out = image.copy()
    out[background] = np.clip(wood, 0, 255).astype(np.uint8)[background]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--site-share", type=float, default=0.5,
                        help="share of the training weight given to the site's decisions (the station's default 0.5)")
    args = parser.parse_args()
    bundle_dir = bundle_or_exit(args.bundle)
    classifier = Classifier.load(bundle_dir)
    photos = load_split(bundle_dir / "split.json")["val"]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "site"
        start = time.perf_counter()
        with Storage(data_dir, "new-site") as storage:
            for k, rel in enumerate(photos):
                frame = wood_background(load_rgb(args.base_data / rel), seed=k)
                p = classifier.classify_image(frame, rel)
                storage.save(NewDecision(frame, p.label, p.confidence, p.probabilities_dict(),
                                         rel.split("/", 1)[0], p.model_version, p.embedding))
        stored = time.perf_counter() - start
        result = run_retrain(RetrainJob(data_dir, bundle_dir, promote="auto", base_data_dir=args.base_data,
                                            site_share=args.site_share))
    print(f"{len(photos)} decisions on a wood background (stored with predictions in {stored:.0f} s)")
    print(f"fast retrain: {result['seconds']:.1f} s; promoted: {result['promoted']} ({result['gate_reason']})")
    print(f"{'':30}{'accuracy':>10}{'macro-F1':>10}")
    for part, title in (("decisions", "held-out decisions"), ("base_test", "base test split")):
        for who, key in (("running", "current"), ("candidate", "candidate_metrics")):
            m = result[key][part]
            print(f"{title + ', ' + who:<30}{m['accuracy']:>10.3f}{m['macro_f1']:>10.3f}   (n={m['count']})")
    print(json.dumps({k: result[k] for k in ("seconds", "promoted", "gate_reason", "counts")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
