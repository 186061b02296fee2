"""Benchmark the station's inference on a model bundle: Keras and LiteRT side by side, in one run.

    python bench/inference.py [--bundle PATH] [--frames 100] [--seconds 5] [--embed-images 512] [--json]

The bundle is copied once into --work (default bench/.work) and given its converted backbone there
(``backbone.tflite``, as ``train`` writes it), so the first run also reports the conversion time.

(a) ``Classifier.classify`` on a 640x480 RGB frame (preprocessing + backbone + numpy head + bookkeeping)
    with the backbone in Keras (compiled call) and in LiteRT (XNNPACK, 2 threads and 1 thread),
(b) the bare backbone call on an already-prepared 1xSxSx3 input, per backend,
(c) ``model.predict`` on one prepared frame (what the station must not do per frame);
    (a)-(c) alternate frame by frame so background load hits all alike, and the labels are compared;
(d) a live run per backend: a CaptureLoop producer at 30 fps feeding a LatestFrameSlot, an inference thread
    classifying the newest frame, and the main thread making display copies as fast as it can;
(e) the same while a retrain runs in another process at the retraining child's priority and thread count:
    a full retrain's training loop (same model set-up, input pipeline, optimizer and batch size as
    ``training.retrain.retrain_full``, on synthetic images), then a fast retrain's head fitting;
(f) embedding images for a cold fast retrain (``training.embeddings.embed``): Keras ``predict`` vs LiteRT,
    batches of 32, on the bundle's base train + test images when the dataset is found, else synthetic ones.
Targets: LiteRT classify <= 8 ms median at 128 px with the same labels; >= 10 inference fps during a full
retrain; embedding >= 3x faster than Keras.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from station.camera import CaptureLoop, Frame, FrameSource, LatestFrameSlot  # noqa: E402
from station.inference import Classifier, InferenceOptions  # noqa: E402
from station.settings import DEMO_DIR, MODELS_DIR  # noqa: E402
from training.embeddings import embed, model_sha256  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.lite import find_backbone, write_backbone  # noqa: E402
from training.model import Bundle, load_bundle  # noqa: E402
from training.preprocess import IMAGE_EXTENSIONS, load_rgb  # noqa: E402

TARGET_MS = 8.0
TARGET_FPS_UNDER_RETRAIN = 10.0
TARGET_EMBED_SPEEDUP = 3.0


def synthetic_frames(width: int, height: int, count: int = 8) -> list[NDArray[np.uint8]]:
    """Smooth gradients plus noise: distinct frames (no stale detection), camera-like content."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        base = np.stack([(x + 37 * i) % 256, (y + 53 * i) % 256, ((x + y) // 2 + 11 * i) % 256], axis=-1)
        noise = rng.integers(-8, 9, base.shape)
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return frames


class SyntheticCamera(FrameSource):
    """A live source that blocks in read() until the next frame is due, like a real camera."""

    is_live = True

    def __init__(self, images: list[NDArray[np.uint8]], fps: float) -> None:
        self.description = f"synthetic {images[0].shape[1]}x{images[0].shape[0]} @ {fps:g} fps"
        self.images = images
        self.period = 1.0 / fps
        self._index = 0
        self._due = 0.0

    def open(self) -> None:
        self._index = 0
        self._due = time.monotonic()

    def read(self) -> Frame | None:
        time.sleep(max(0.0, self._due - time.monotonic()))
        self._due = max(self._due + self.period, time.monotonic() - self.period)
        self._index += 1
        image = self.images[self._index % len(self.images)]
        return Frame(image, self._index, time.monotonic(), "synthetic")

    def close(self) -> None:
        pass


def stats_ms(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000.0
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "n": len(samples)}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bundle_with_backbone(bundle_dir: Path, work: Path) -> tuple[Path, float | None]:
    """A copy of the bundle with its converted backbone; (folder, conversion seconds or None if reused)."""
    copy = work / bundle_dir.name
    if copy.is_dir() and model_sha256(copy) != model_sha256(bundle_dir):
        shutil.rmtree(copy)
    if not copy.is_dir():
        shutil.copytree(bundle_dir, copy)
    model = load_bundle(copy).model
    if find_backbone(model, copy) is not None:
        return copy, None
    start = time.perf_counter()
    write_backbone(model, copy)
    return copy, time.perf_counter() - start


def measure_latency(
    classifiers: dict[str, Classifier], frames: list[Frame], runs: int, predict_runs: int
) -> dict[str, Any]:
    """(a), (b), (c), interleaved; plus how far the backends' answers are from Keras on these frames."""
    keras_classifier = classifiers["keras"]
    prepared = keras_classifier.prepare(frames[0].image)
    tensor = tf.constant(prepared)  # the Keras bare call starts from a tensor already on the device
    model = keras_classifier.bundle.model
    model.predict(prepared, verbose=0)  # predict builds its own function on the first call
    classify: dict[str, list[float]] = {name: [] for name in classifiers}
    bare: dict[str, list[float]] = {name: [] for name in classifiers}
    predict_s: list[float] = []
    predict_every = max(1, runs // max(1, predict_runs))
    for i in range(runs):
        frame = frames[i % len(frames)]
        for name, classifier in classifiers.items():
            classify[name].append(timed(lambda c=classifier, f=frame: c.classify(f)))
            backbone = classifier.keras_backbone if name == "keras" else classifier.backbone
            bare[name].append(timed(lambda b=backbone, n=name: b.embed(tensor if n == "keras" else prepared)))
        if i % predict_every == 0 and len(predict_s) < predict_runs:
            predict_s.append(timed(lambda: model.predict(prepared, verbose=0)))
    return {
        "classify_ms": {name: stats_ms(v) for name, v in classify.items()},
        "bare_ms": {name: stats_ms(v) for name, v in bare.items()},
        "predict_ms": stats_ms(predict_s),
    }


def compare_labels(classifiers: dict[str, Classifier], images: list[NDArray[np.uint8]]) -> dict[str, Any]:
    """Per backend: frames whose top-1 differs from Keras, largest probability gap, largest relative embedding gap."""
    reference = [classifiers["keras"].classify_image(image) for image in images]
    result = {}
    for name, classifier in classifiers.items():
        got = [classifier.classify_image(image) for image in images]
        result[name] = {
            "images": len(images),
            "top1_differs": sum(g.best_index != r.best_index for g, r in zip(got, reference, strict=True)),
            "max_probability_gap": max(float(np.abs(g.probabilities - r.probabilities).max())
                                       for g, r in zip(got, reference, strict=True)),
            "max_relative_embedding_gap": max(float(np.abs(g.embedding - r.embedding).max() / np.abs(r.embedding).max())
                                              for g, r in zip(got, reference, strict=True)),
        }
    return result


def full_retrain_load(bundle_dir: Path, running: Any, stop: Any) -> None:
    """Another process doing what a full retrain does: fine-tune the top 30 % of the backbone, batch 32, augmented,
    at the retraining child's priority and thread count."""
    from station.retraining import yield_to_the_station

    yield_to_the_station()
    import keras

    from training.model import build_model, unfreeze_top
    from training.train import train_pipeline

    bundle = load_bundle(bundle_dir)
    classes, size = len(bundle.labels), bundle.image_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, classes, 256)
    model = build_model(classes, None, size, bundle.model.get_layer("head_dropout").rate, freeze_backbone=True)
    model.set_weights(bundle.model.get_weights())
    unfreeze_top(model, 0.3)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))

    class UntilStopped(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            running.set()
            if stop.is_set():
                self.model.stop_training = True

    pipeline = train_pipeline(x, y, np.ones(len(y), np.float32), classes, 32, augment=0.8, mixup_alpha=0.0, seed=0)
    model.fit(pipeline, epochs=100_000, verbose=0, callbacks=[UntilStopped()])


def fast_retrain_load(bundle_dir: Path, running: Any, stop: Any) -> None:
    """Another process doing what a fast retrain spends its time on: fitting the anchored head on the base
    embeddings plus 180 site decisions, over and over, at the retraining child's priority and thread count."""
    from station.retraining import yield_to_the_station

    yield_to_the_station()
    from training.embeddings import BASE_EMBEDDINGS, load_embeddings, model_sha256
    from training.head import Head, Standardizer, fit_head, sample_weights

    bundle = load_bundle(bundle_dir)
    classes, rng = len(bundle.labels), np.random.default_rng(0)
    base = load_embeddings(bundle_dir / BASE_EMBEDDINGS, model_sha256(bundle_dir))
    width = Head.of(bundle.model).kernel.shape[0]
    x = base["train_x"] if base else rng.normal(size=(1800, width)).astype(np.float32)
    x = np.vstack([x, rng.normal(size=(180, width)).astype(np.float32) + x.mean(axis=0)])
    y = rng.integers(0, classes, len(x))
    is_site = np.r_[np.zeros(len(x) - 180, bool), np.ones(180, bool)]
    weights = sample_weights(y, is_site, classes, 0.75)
    while not stop.is_set():
        running.set()
        fit_head(x, y, weights, classes, 1.0, Standardizer.of(x), prior=Head.of(bundle.model), max_iter=50)


RETRAIN_LOADS = {"fast": fast_retrain_load, "full": full_retrain_load}


def live_runs_under_retrain(
    bundle_dir: Path, classifiers: dict[str, Classifier], images: list[NDArray[np.uint8]], fps: float,
    seconds: float, kind: str,
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    running, stop = context.Event(), context.Event()
    process = context.Process(target=RETRAIN_LOADS[kind], args=(bundle_dir, running, stop), name=f"{kind}-retrain-load")
    process.start()
    try:
        if not running.wait(600):
            raise RuntimeError(f"the {kind}-retrain load did not start within 10 minutes")
        result = {name: live_run(c, images, fps, seconds, infer=True) for name, c in classifiers.items()}
        result["retrain_still_running"] = process.is_alive()
        return result
    finally:
        stop.set()
        process.join(120)
        if process.is_alive():
            process.terminate()
            process.join()


def base_images(bundle: Bundle, data_dir: Path, count: int) -> tuple[NDArray[np.uint8], float, str]:
    """The bundle's base train + test images when the dataset is there (else synthetic ones), load time, origin."""
    from training.data import load_arrays, load_split

    split_file = bundle.path / "split.json"
    if data_dir.is_dir() and split_file.is_file():
        split = load_split(split_file)
        paths = split["train"] + split["test"]
        paths = paths[:count] if count else paths
        start = time.perf_counter()
        images = load_arrays(data_dir, paths, bundle.image_size)
        return images, time.perf_counter() - start, f"{len(paths)} base train+test images from {data_dir}"
    size = bundle.image_size
    images = np.random.default_rng(0).integers(0, 256, (count or 512, size, size, 3), dtype=np.uint8)
    return images, 0.0, f"{len(images)} synthetic images (no dataset at {data_dir})"


def measure_embedding(bundle: Bundle, images: NDArray[np.uint8], chunk: int = 256) -> dict[str, Any]:
    """``embed`` (LiteRT: the bundle has backbone.tflite) against what it did before (Keras ``predict``, batch 32),
    alternating chunk by chunk so background load hits both alike. Each ``embed`` call loads its interpreter,
    as each split's call does in a retrain."""
    bundle.feature_model().predict(images[:1].astype(np.float32), verbose=0)  # as warm as the predict of a retrain
    keras_s = lite_s = 0.0
    keras_parts, lite_parts = [], []
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk]
        start = time.perf_counter()
        keras_parts.append(bundle.feature_model().predict(part.astype(np.float32), batch_size=32, verbose=0)[0])
        keras_s += time.perf_counter() - start
        start = time.perf_counter()
        lite_parts.append(embed(bundle, part))
        lite_s += time.perf_counter() - start
    want, got = np.concatenate(keras_parts), np.concatenate(lite_parts)
    gap = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)
    return {"images": len(images), "keras_s": keras_s, "litert_s": lite_s, "speedup": keras_s / lite_s,
            "max_relative_gap": float(gap.max())}


def live_run(
    classifier: Classifier, images: list[NDArray[np.uint8]], fps: float, seconds: float, infer: bool
) -> dict[str, Any]:
    """Producer (CaptureLoop) -> slot -> inference thread, while this thread plays the display."""
    slot = LatestFrameSlot()
    newest: list[Frame | None] = [None]  # the display's view of the feed: it shows every frame, not the slot's
    inferred: list[float] = []  # classify latencies during the run
    errors: list[BaseException] = []

    def on_frame(frame: Frame) -> None:
        newest[0] = frame
        slot.put(frame)

    def consume() -> None:
        try:
            while (frame := slot.take(timeout=0.1)) is not None or not slot.closed:
                if frame is not None:
                    inferred.append(classifier.classify(frame).latency_ms)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            errors.append(exc)

    loop = CaptureLoop(lambda: SyntheticCamera(images, fps), on_frame, lambda state, detail: None)
    stop = threading.Event()
    producer = threading.Thread(target=loop.run, args=(stop,), name="capture")
    consumer = threading.Thread(target=consume, name="inference")
    producer.start()
    if infer:
        consumer.start()
    iterations, shown, last_index, worst_gap = 0, 0, -1, 0.0
    start = previous = time.perf_counter()
    try:
        while (now := time.perf_counter()) - start < seconds:
            frame = newest[0]
            if frame is not None:
                display = np.array(frame.image, copy=True)  # what QImage(...).copy() costs
                shown += frame.index != last_index
                last_index = frame.index
                del display
            iterations += 1
            worst_gap = max(worst_gap, now - previous)  # a GIL-hogging thread shows up as a long gap
            previous = now
        elapsed = time.perf_counter() - start
        capture_fps = loop.fps
    finally:
        stop.set()
        slot.close()
        producer.join()
        if infer:
            consumer.join()
    if errors:
        raise errors[0]
    return {
        "display_loop_per_s": iterations / elapsed,
        "display_new_frames_per_s": shown / elapsed,
        "display_worst_gap_ms": worst_gap * 1000.0,
        "capture_fps": capture_fps,
        "inference_fps": len(inferred) / elapsed if infer else 0.0,
        "inference_latency_ms": float(np.median(inferred)) if inferred else 0.0,
        "dropped": slot.dropped if infer else 0,
        "seconds": elapsed,
    }


def print_table(result: dict[str, Any]) -> None:
    names = list(result["backends"])
    lat = result["latency"]
    print(f"bundle {result['bundle']}  input {result['image_size']} px  frame {result['frame_size']}")
    if result["conversion_s"] is not None:
        print(f"backbone converted to LiteRT in {result['conversion_s']:.1f} s ({result['tflite_mb']:.1f} MB)")
    print(f"\n{'median ms (p90)':34}" + "".join(f"{name:>18}" for name in names))
    for key, label in [("classify_ms", "(a) classify 640x480 frame"), ("bare_ms", "(b) bare backbone call")]:
        cells = "".join(f"{lat[key][n]['median']:9.2f} ({lat[key][n]['p90']:5.1f})" for n in names)
        print(f"{label:34}{cells}")
    print(f"{'(c) model.predict, 1 frame':34}{lat['predict_ms']['median']:9.2f} ({lat['predict_ms']['p90']:5.1f})")
    keras_ms = lat["classify_ms"]["keras"]["median"]
    print(f"{'classify: Keras / backend':34}" + "".join(f"{keras_ms / lat['classify_ms'][n]['median']:17.2f}x"
                                                     for n in names))
    labels = result["labels"]
    print(f"{'top-1 differs from Keras':34}" + "".join(
        f"{labels[n]['top1_differs']:>12d}/{labels[n]['images']:<5d}" for n in names))
    print(f"{'max probability gap':34}" + "".join(f"{labels[n]['max_probability_gap']:18.1e}" for n in names))
    print(f"{'max relative embedding gap':34}" + "".join(
        f"{labels[n]['max_relative_embedding_gap']:18.1e}" for n in names))
    best = min((lat["classify_ms"][n]["median"], n) for n in names if n != "keras")
    print(f"LiteRT classify median {best[0]:.2f} ms ({best[1]}): target <= {TARGET_MS} ms "
          f"{'MET' if best[0] <= TARGET_MS else 'NOT MET'} under this load")

    rows = [
        ("display_new_frames_per_s", "display new frames /s", "{:.1f}"),
        ("display_worst_gap_ms", "display worst gap ms", "{:.1f}"),
        ("capture_fps", "capture fps", "{:.1f}"),
        ("inference_fps", "inference fps", "{:.1f}"),
        ("inference_latency_ms", "inference latency ms (median)", "{:.1f}"),
        ("dropped", "dropped frames", "{:d}"),
    ]
    loaded = result["loaded"] or {}
    for title, runs in [("(d) live run", result["live"]),
                        *((f"(e) live run, {kind} retrain running", runs) for kind, runs in loaded.items())]:
        base = result["live_baseline"]
        print(f"\n{title:34}{'no inference':>18}" + "".join(f"{n:>18}" for n in names))
        for key, label, fmt in rows:
            print(f"{label:34}{fmt.format(base[key]):>18}" + "".join(f"{fmt.format(runs[n][key]):>18}" for n in names))
    if "full" in loaded:
        fps = max(loaded["full"][n]["inference_fps"] for n in names if n != "keras")
        print(f"LiteRT inference during a full retrain {fps:.1f} fps: target >= {TARGET_FPS_UNDER_RETRAIN} fps "
              f"{'MET' if fps >= TARGET_FPS_UNDER_RETRAIN else 'NOT MET'}")
    emb = result["embedding"]
    if emb is not None:
        print(f"\n(f) embedding {emb['origin']} (loading them took {emb['load_s']:.1f} s)")
        print(f"Keras predict {emb['keras_s']:.1f} s, LiteRT {emb['litert_s']:.1f} s: {emb['speedup']:.2f}x "
              f"(target >= {TARGET_EMBED_SPEEDUP}x {'MET' if emb['speedup'] >= TARGET_EMBED_SPEEDUP else 'NOT MET'}); "
              f"with loading {(emb['load_s'] + emb['keras_s']) / (emb['load_s'] + emb['litert_s']):.2f}x; "
              f"max relative gap {emb['max_relative_gap']:.1e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help=f"model bundle folder (default: the one under {MODELS_DIR})")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work",
                        help="where the bundle's copy with its converted backbone is kept between runs")
    parser.add_argument("--frames", type=int, default=100, help="frames for (a) and (b)")
    parser.add_argument("--predict-runs", type=int, default=10, help="calls for (c); predict is slow")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each live run (d), (e)")
    parser.add_argument("--baseline-seconds", type=float, default=2.0, help="live run without inference first")
    parser.add_argument("--capture-fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x480", help="camera frame WIDTHxHEIGHT")
    parser.add_argument("--no-retrain-run", dest="retrain_run", action="store_false", help="skip (e)")
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA, help="the bundle's dataset, for (f)")
    parser.add_argument("--embed-images", type=int, default=0,
                        help="images for (f); 0 = all of the base train + test splits (512 synthetic without data)")
    parser.add_argument("--no-embed-run", dest="embed_run", action="store_false", help="skip (f)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the tables")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    try:
        lite_dir, conversion_s = bundle_with_backbone(bundle_or_exit(args.bundle), args.work)
        bundle = load_bundle(lite_dir)
        classifiers = {
            "keras": Classifier(bundle, options=InferenceOptions("keras")),
            "litert-2-threads": Classifier(bundle, options=InferenceOptions("litert", threads=2)),
            "litert-1-thread": Classifier(bundle, options=InferenceOptions("litert", threads=1)),
        }
    except TrainingError as exc:
        print(exc, file=sys.stderr)
        return 1

    images = synthetic_frames(width, height)
    frames = [Frame(image, i, time.monotonic(), "bench") for i, image in enumerate(images)]
    demo = [load_rgb(p) for p in sorted(DEMO_DIR.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    result: dict[str, Any] = {
        "bundle": str(lite_dir),
        "image_size": bundle.image_size,
        "frame_size": f"{width}x{height}",
        "backends": list(classifiers),
        "conversion_s": conversion_s,
        "tflite_mb": (lite_dir / "backbone.tflite").stat().st_size / 1e6,
        "latency": measure_latency(classifiers, frames, args.frames, args.predict_runs),
        "labels": compare_labels(classifiers, images + demo),
        "live_baseline": live_run(classifiers["keras"], images, args.capture_fps, args.baseline_seconds, infer=False),
        "live": {name: live_run(c, images, args.capture_fps, args.seconds, infer=True)
                 for name, c in classifiers.items()},
        "loaded": {kind: live_runs_under_retrain(lite_dir, classifiers, images, args.capture_fps, args.seconds, kind)
                   for kind in RETRAIN_LOADS} if args.retrain_run else None,
        "embedding": None,
    }
    if args.embed_run:
        base, load_s, origin = base_images(bundle, args.base_data, args.embed_images)
        result["embedding"] = {**measure_embedding(bundle, base), "load_s": load_s, "origin": origin}
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
