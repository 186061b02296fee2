"""Int8 post-training quantisation of the backbone: top-1 agreement with the float backbone, and speed, in one run.

    python bench/quantize.py [--bundle PATH] [--base-data DIR] [--calibration 200] [--runs 100]

Full integer quantisation (weights and activations int8, float input and output, so the station's raw 0-255
input stays as it is), calibrated on the first --calibration images of the bundle's base training split.
Agreement: the bundle's head (numpy) on the int8 embeddings against the same head on the float LiteRT
embeddings, over the whole test split. Latency: one prepared frame, float and int8 interpreters alternating.
Kept for the station only if agreement >= 99.5 % and it is measurably faster.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from bench.inference import bundle_with_backbone  # noqa: E402
from training.data import load_arrays, load_split  # noqa: E402
from training.head import Head  # noqa: E402
from training.lite import BACKBONE_FILE, LiteBackbone, backbone_model  # noqa: E402
from training.model import load_bundle  # noqa: E402

MIN_AGREEMENT = 0.995


def convert_int8(model: object, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(backbone_model(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[np.newaxis].astype(np.float32)] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def embed_all(backbone: LiteBackbone, images: np.ndarray) -> np.ndarray:
    return np.concatenate([backbone.embed(images[i : i + 32].astype(np.float32)) for i in range(0, len(images), 32)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    if not args.base_data.is_dir():
        print(f"the bundle's dataset is not at {args.base_data}; pass --base-data", file=sys.stderr)
        return 1
    folder, _ = bundle_with_backbone(bundle_or_exit(args.bundle), args.work)
    bundle = load_bundle(folder)
    split = load_split(folder / "split.json")
    size = bundle.image_size
    calibration = load_arrays(args.base_data, split["train"][: args.calibration], size)
    test = load_arrays(args.base_data, split["test"], size)
    start = time.perf_counter()
    int8_path = folder / "backbone-int8.tflite"
    int8_path.write_bytes(convert_int8(bundle.model, calibration))
    print(f"int8 conversion {time.perf_counter() - start:.1f} s, {int8_path.stat().st_size / 1e6:.1f} MB "
          f"(float {(folder / BACKBONE_FILE).stat().st_size / 1e6:.1f} MB)")

    head = Head.of(bundle.model)
    results = {}
    for name, path in (("float", folder / BACKBONE_FILE), ("int8", int8_path)):
        backbone = LiteBackbone(path)
        results[name] = (backbone, head.probabilities(embed_all(backbone, test)).argmax(axis=1))
    agreement = float(np.mean(results["float"][1] == results["int8"][1]))
    truth = np.array([bundle.labels.index(p.split("/", 1)[0]) for p in split["test"]])
    frame = test[:1].astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in results}
    for _ in range(args.runs):
        for name, (backbone, _) in results.items():
            start = time.perf_counter()
            backbone.embed(frame)
            times[name].append(time.perf_counter() - start)
    for name, (_, predicted) in results.items():
        print(f"{name:6} backbone median {np.median(times[name]) * 1000:6.2f} ms, "
              f"test accuracy {np.mean(predicted == truth):.4f}")
    speedup = np.median(times["float"]) / np.median(times["int8"])
    print(f"top-1 agreement int8 vs float on {len(test)} test images: {agreement:.4f} (needs >= {MIN_AGREEMENT}); "
          f"int8 speed-up {speedup:.2f}x")
    keep = agreement >= MIN_AGREEMENT and speedup > 1.1
    print("keep int8:", "yes" if keep else "no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
