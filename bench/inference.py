"""Benchmark the station's inference path on a model bundle, in one run.

    python bench/inference.py [--bundle PATH] [--frames 100] [--seconds 5] [--json]

(a) ``Classifier.classify`` on a 640x480 RGB frame (preprocessing + compiled call + bookkeeping),
(b) the bare compiled forward pass on an already-prepared 1xSxSx3 tensor,
(c) ``model.predict`` on one prepared frame (what the station must not do per frame),
(d) a live run: a CaptureLoop producer at 30 fps feeding a LatestFrameSlot, an inference thread
    classifying the newest frame, and the main thread making display copies as fast as it can;
    shows whether inference starves the display (GIL, CPU) and how many frames it drops.
(a) and (b) alternate frame by frame so background load hits both alike.
Goal (product owner): classify within 1.2x of the bare forward pass.
"""

from __future__ import annotations

import argparse
import json
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

from bench.common import bundle_or_exit  # noqa: E402
from station.camera import CaptureLoop, Frame, FrameSource, LatestFrameSlot  # noqa: E402
from station.inference import Classifier  # noqa: E402
from station.settings import MODELS_DIR  # noqa: E402
from training.errors import TrainingError  # noqa: E402

GOAL_RATIO = 1.2


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


def measure_latency(classifier: Classifier, frames: list[Frame], runs: int, predict_runs: int) -> dict[str, Any]:
    prepared = classifier.prepare(frames[0].image)
    tensor = tf.constant(prepared)  # (b) starts from a tensor already on the device
    model = classifier.bundle.model
    model.predict(prepared, verbose=0)  # predict builds its own function on the first call
    classifier.classify(frames[0])
    classify_s: list[float] = []
    bare_s: list[float] = []
    predict_s: list[float] = []
    predict_every = max(1, runs // max(1, predict_runs))
    for i in range(runs):
        frame = frames[i % len(frames)]
        classify_s.append(timed(lambda frame=frame: classifier.classify(frame)))
        bare_s.append(timed(lambda: classifier.forward(tensor)))
        if i % predict_every == 0 and len(predict_s) < predict_runs:
            predict_s.append(timed(lambda: model.predict(prepared, verbose=0)))
    result = {"classify_ms": stats_ms(classify_s), "bare_ms": stats_ms(bare_s), "predict_ms": stats_ms(predict_s)}
    bare = result["bare_ms"]["median"]
    result["classify_over_bare"] = result["classify_ms"]["median"] / bare
    result["predict_over_bare"] = result["predict_ms"]["median"] / bare
    return result


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
    lat = result["latency"]
    rows = [
        ("(a) classify 640x480 frame", lat["classify_ms"]),
        ("(b) bare compiled forward", lat["bare_ms"]),
        ("(c) model.predict, 1 frame", lat["predict_ms"]),
    ]
    print(f"bundle {result['bundle']}  input {result['image_size']} px  TF threads: default")
    print(f"{'latency':32} {'median ms':>10} {'p90 ms':>10} {'n':>5}")
    for name, s in rows:
        print(f"{name:32} {s['median']:10.2f} {s['p90']:10.2f} {s['n']:5d}")
    verdict = "OK" if lat["classify_over_bare"] <= GOAL_RATIO else "OVER GOAL"
    print(f"classify / bare = {lat['classify_over_bare']:.3f}  (goal <= {GOAL_RATIO}: {verdict})")
    print(f"predict  / bare = {lat['predict_over_bare']:.2f}")
    print(f"\n{'(d) live run':32} {'no inference':>14} {'with inference':>15}")
    base, live = result["live_baseline"], result["live"]
    for key, label, fmt in [
        ("display_loop_per_s", "display loop /s (max rate)", "{:.0f}"),
        ("display_new_frames_per_s", "display new frames /s", "{:.1f}"),
        ("display_worst_gap_ms", "display worst gap ms", "{:.1f}"),
        ("capture_fps", "capture fps", "{:.1f}"),
        ("inference_fps", "inference fps", "{:.1f}"),
        ("inference_latency_ms", "inference latency ms (median)", "{:.1f}"),
        ("dropped", "dropped frames", "{:d}"),
    ]:
        print(f"{label:32} {fmt.format(base[key]):>14} {fmt.format(live[key]):>15}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help=f"model bundle folder (default: the one under {MODELS_DIR})")
    parser.add_argument("--frames", type=int, default=100, help="frames for (a) and (b)")
    parser.add_argument("--predict-runs", type=int, default=10, help="calls for (c); predict is slow")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the live run (d)")
    parser.add_argument("--baseline-seconds", type=float, default=2.0, help="live run without inference first")
    parser.add_argument("--capture-fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x480", help="camera frame WIDTHxHEIGHT")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    bundle_path = bundle_or_exit(args.bundle)
    start = time.perf_counter()
    try:
        classifier = Classifier.load(bundle_path)
    except TrainingError as exc:
        print(exc, file=sys.stderr)
        return 1
    load_s = time.perf_counter() - start

    images = synthetic_frames(width, height)
    frames = [Frame(image, i, time.monotonic(), "bench") for i, image in enumerate(images)]
    result: dict[str, Any] = {
        "bundle": str(bundle_path),
        "image_size": classifier.image_size,
        "frame_size": [width, height],
        "load_and_warmup_s": load_s,
        "latency": measure_latency(classifier, frames, args.frames, args.predict_runs),
        "live_baseline": live_run(classifier, images, args.capture_fps, args.baseline_seconds, infer=False),
        "live": live_run(classifier, images, args.capture_fps, args.seconds, infer=True),
    }
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
