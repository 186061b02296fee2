"""Fast-retrain time with 500 and 5,000 stored decisions, on the bundled model.

    python bench/retrain.py [--bundle DIR] [--base-data DIR] [--sizes 500 5000]

Decisions are real TrashNet photos with the embeddings the station stores with each decision
(computed once here from 200 photos, then reused with a little noise so 5,000 decisions do
not cost 5,000 forward passes). Three retrains per size:
"shipped": the first retrain, base embeddings read from the bundle's base-embeddings.npz;
"cold": the first retrain with a copy of the bundle that lacks that file, so the base images are
embedded (then cached in the data folder); "warm": the next retrain, from that cache.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from station.retraining import RetrainJob, run_retrain  # noqa: E402
from station.storage import NewDecision, Storage  # noqa: E402
from training.data import scan_dataset  # noqa: E402
from training.embeddings import BASE_EMBEDDINGS, embed  # noqa: E402
from training.messages import Promote  # noqa: E402
from training.model import load_bundle  # noqa: E402
from training.preprocess import load_prepared, load_rgb  # noqa: E402


def fill(data_dir: Path, bundle_dir: Path, photos: Path, count: int, seed: int = 0) -> None:
    """``count`` decisions: real photos, stored embeddings from the model, a third of them corrections."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    bundle = load_bundle(bundle_dir)
    items = rng.sample(scan_dataset(photos, check_images=False).items, 200)
    classes = sorted({p.split("/", 1)[0] for p, _ in items})
    embeddings = embed(bundle, np.stack([load_prepared(photos / p, bundle.image_size) for p, _ in items]))
    thumbs = [load_rgb(photos / p)[::4, ::4] for p, _ in items]  # small frames keep the PNG writes quick
    with Storage(data_dir, "bench") as storage:
        for i in range(count):
            k = i % len(items)
            label = items[k][0].split("/", 1)[0]
            predicted = label if i % 3 else rng.choice(classes)
            emb = embeddings[k] + noise.normal(0, 0.01, embeddings.shape[1]).astype(np.float32)
            frame = thumbs[k].copy()
            frame[0, 0] = (i % 256, (i // 256) % 256, 7)  # distinct bytes: distinct hashes
            storage.save(NewDecision(frame, predicted, 0.7, {}, label, bundle.name, emb))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the bundled model)")
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA, help="the bundle's training data folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()
    bundle_dir = bundle_or_exit(args.bundle)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare" / bundle_dir.name  # the bundle without its shipped embeddings
        shutil.copytree(bundle_dir, bare, ignore=shutil.ignore_patterns(BASE_EMBEDDINGS, "evaluation"))
        for size in args.sizes:
            data_dir = Path(tmp) / f"station-{size}"
            start = time.perf_counter()
            fill(data_dir, bundle_dir, args.base_data, size)
            filled = time.perf_counter() - start
            shutil.copytree(data_dir, data_dir.with_name(f"{data_dir.name}-bare"))
            timings = {}
            for name, model, folder in (("shipped", bundle_dir, data_dir), ("cold", bare, None), ("warm", bare, None)):
                folder = folder or data_dir.with_name(f"{data_dir.name}-bare")
                job = RetrainJob(folder, model, promote=Promote.NEVER, base_data_dir=args.base_data)
                result = run_retrain(job)
                timings[name] = result.seconds
            rows.append({"decisions": size, "fill_s": round(filled, 1), **{k: round(v, 2) for k, v in timings.items()},
                         "counts": result.counts})
    print(f"fast retrain on {bundle_dir.name} (2 cores)")
    print(f"{'decisions':>9}  {'shipped s':>9}  {'cold s':>7}  {'warm s':>7}  trained on (base + site), judged live")
    for row in rows:
        c = row["counts"]
        print(f"{row['decisions']:>9}  {row['shipped']:>9.2f}  {row['cold']:>7.2f}  {row['warm']:>7.2f}  "
              f"{c.get('base_train')} + {c.get('site_train')}, {c.get('site_judged')}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
