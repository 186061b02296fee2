"""Post-training quantisation of the backbone: top-1 agreement with the float backbone, and speed, in one run.

    python bench/quantize.py [--bundle PATH] [--base-data DIR] [--calibration 200] [--runs 100]

Two variants, both with float input and output (the station's raw 0-255 input stays as it is):
``int8``, full integer quantisation (weights and activations) calibrated on the first --calibration images
of the bundle's base training split, and ``dynamic``, dynamic-range quantisation (int8 weights, activations
quantised on the fly, no calibration).
Agreement: the bundle's head (numpy) on each variant's embeddings against the same head on the float LiteRT
embeddings, over the whole test split. Speed: one prepared frame (the station's per-frame call) and batches
of 32 (embedding base data), the interpreters alternating so background load hits all alike.
A variant is kept for the station only if agreement >= 99.5 % and it is measurably faster.
"""

from __future__ import annotations

import argparse
import json
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


def convert_quantized(model: object, calibration: np.ndarray | None) -> bytes:
    """Full integer quantisation when ``calibration`` images are given, else dynamic-range."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(backbone_model(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if calibration is not None:
        converter.representative_dataset = lambda: ([image[np.newaxis].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def median_seconds(backbones: dict[str, LiteBackbone], batch: np.ndarray, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in backbones}
    for _ in range(runs):
        for name, backbone in backbones.items():
            start = time.perf_counter()
            backbone.embed(batch)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


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
    paths = {"float": folder / BACKBONE_FILE}
    for name, images in (("int8", calibration), ("dynamic", None)):
        start = time.perf_counter()
        paths[name] = folder / f"backbone-{name}.tflite"
        paths[name].write_bytes(convert_quantized(bundle.model, images))
        print(f"{name} conversion {time.perf_counter() - start:.1f} s, {paths[name].stat().st_size / 1e6:.1f} MB")
    print(f"(float {paths['float'].stat().st_size / 1e6:.1f} MB)")

    head = Head.of(bundle.model)
    backbones = {name: LiteBackbone(path) for name, path in paths.items()}
    predicted = {name: head.probabilities(embed_all(b, test)).argmax(axis=1) for name, b in backbones.items()}
    truth = np.array([bundle.labels.index(p.split("/", 1)[0]) for p in split["test"]])
    frame = median_seconds(backbones, test[:1].astype(np.float32), args.runs)
    batch = median_seconds(backbones, test[:32].astype(np.float32), max(3, args.runs // 10))
    print(f"{'':8}{'frame ms':>10}{'batch-32 ms/image':>19}{'test accuracy':>15}{'agreement':>11}{'kept':>6}")
    report = {}
    for name in backbones:
        agreement = float(np.mean(predicted[name] == predicted["float"]))
        faster = frame["float"] / frame[name] > 1.1 or batch["float"] / batch[name] > 1.1
        kept = name == "float" or (agreement >= MIN_AGREEMENT and faster)
        report[name] = {"frame_ms": frame[name] * 1000, "batch_ms_per_image": batch[name] * 1000 / 32,
                        "accuracy": float(np.mean(predicted[name] == truth)), "agreement": agreement, "kept": kept}
        r = report[name]
        print(f"{name:8}{r['frame_ms']:10.2f}{r['batch_ms_per_image']:19.2f}{r['accuracy']:15.4f}"
              f"{agreement:11.4f}{'yes' if kept else 'no':>6}")
    print(f"agreement: top-1 of the head on each variant's embeddings vs on float's, {len(test)} test images "
          f"(needs >= {MIN_AGREEMENT})")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
