"""Hands-free sorting end to end: a belt video in, one decision and one MQTT event per item out.

Makes a video (640x480, ``--fps``) of base-test photos of the bundled model sliding in over a rubber-belt
texture, stopping, and sliding out, at ``--rate`` items per minute; runs the real station window offscreen on it
in auto mode (arrival detection in the capture thread, inference, the hands-free rules, storage, events to a
mosquitto started on a loopback port when it is installed, else JSON lines), with a simulated operator who
presses the right class key ``--operator-delay`` seconds after an item starts waiting for them. Prints a table and,
last, one JSON line: items shown / seen / decided, missed, duplicate, unmatched decisions, settle -> on screen (model
answered), settle -> decision and settle -> event received (median, p95), share confirmed automatically and the
accuracy of those.

    QT_QPA_PLATFORM=offscreen python bench/handsfree.py [--items 30] [--rate 20] [--auto-delay 0]

``--auto-delay`` is the operator's grace period before an auto-confirmation (a setting, 1 s by default); the bench
sets 0 to measure the station's own latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from common import DEFAULT_DATA, ROOT, bundle_or_exit

sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

WIDTH, HEIGHT = 640, 480
ITEM_HEIGHT = 240
SLIDE_S, GAP_S = 0.5, 0.3  # each item: slide in, lie still for the rest of its period, slide out, gap


def belt_texture(seed: int = 0) -> np.ndarray:
    """Dark rubber with fine grain and faint ribs (RGB)."""
    rng = np.random.default_rng(seed)
    base = np.full((HEIGHT, WIDTH, 3), (52, 54, 58), np.float32)
    base += rng.normal(0.0, 6.0, (HEIGHT, WIDTH, 1))
    base[:, ::24] += 10.0
    return np.clip(cv2.GaussianBlur(base, (3, 3), 0), 0, 255).astype(np.uint8)


def test_photos(bundle: Path, data: Path, count: int, seed: int) -> list[tuple[Path, str]]:
    split = json.loads((bundle / "split.json").read_text())
    chosen = random.Random(seed).sample(split["test"], count)
    return [(data / name, name.split("/")[0]) for name in chosen]


def item_positions(period_s: float, fps: float) -> list[float | None]:
    """Centre x of the item for each frame of one period (None: not in view)."""
    xs: list[float | None] = []
    frames = round(period_s * fps)
    still_s = period_s - 2 * SLIDE_S - GAP_S
    for i in range(frames):
        t = i / fps
        if t < SLIDE_S:
            xs.append(-WIDTH * 0.3 + (WIDTH * 0.8) * t / SLIDE_S)
        elif t < SLIDE_S + still_s:
            xs.append(WIDTH / 2)
        elif t < 2 * SLIDE_S + still_s:
            xs.append(WIDTH / 2 + (WIDTH * 0.8) * (t - SLIDE_S - still_s) / SLIDE_S)
        else:
            xs.append(None)
    return xs


def make_video(photos: list[tuple[Path, str]], path: Path, rate: float, fps: float) -> int:
    """Write the belt video; returns frames per item. The first 2 s are the empty belt (calibration)."""
    belt = belt_texture()
    period = 60.0 / rate
    xs = item_positions(period, fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for _ in range(round(2 * fps)):
        writer.write(cv2.cvtColor(belt, cv2.COLOR_RGB2BGR))
    for photo, _ in photos:
        image = cv2.imread(str(photo))  # BGR, like the writer
        scale = ITEM_HEIGHT / image.shape[0]
        image = cv2.resize(image, (round(image.shape[1] * scale), ITEM_HEIGHT), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        for x in xs:
            frame = cv2.cvtColor(belt, cv2.COLOR_RGB2BGR)
            if x is not None:
                left, top = round(x - w / 2), (HEIGHT - h) // 2
                a, b = max(0, left), min(WIDTH, left + w)
                if b > a:
                    frame[top:top + h, a:b] = image[:, a - left:b - left]
            writer.write(frame)
    writer.release()
    return len(xs)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run(args: argparse.Namespace) -> dict:
    from PySide6.QtWidgets import QApplication

    from station import app
    from station.inference import Classifier, InferenceOptions
    from station.settings import load_settings
    from training.quiet import quiet_libraries

    quiet_libraries(False)
    bundle = bundle_or_exit(args.bundle)
    photos = test_photos(bundle, args.data, args.items, args.seed)
    work = Path(tempfile.mkdtemp(prefix="handsfree-bench-"))
    video = work / "belt.avi"
    per_item = make_video(photos, video, args.rate, args.fps)
    lead = round(2 * args.fps)
    total_frames = lead + per_item * len(photos)

    broker = None
    subscriber = None
    received: dict[str, float] = {}
    try:
        from tests.integration.broker import MOSQUITTO, Broker, Subscriber

        if MOSQUITTO is not None:
            broker = Broker(work / "broker")
            broker.start()
    except ImportError:
        MOSQUITTO = None  # noqa: N806
    settings = load_settings({
        "source": str(video), "data_dir": str(work / "data"), "station_name": "bench", "mode": "auto",
        "auto_threshold": args.auto_threshold, "auto_delay": args.auto_delay, "auto_retrain_every": 0,
        "auto_trust_checks": args.trust_checks, "auto_trust_precision": args.trust_precision,
        "arrival_crop": not args.whole_view,
        "mqtt_url": broker.url if broker else "", "model": str(bundle),
    }, user_file=work / "none.toml")
    if broker is not None:
        subscriber = Subscriber(broker, "sorting/bench/decision")

        def on_message(client: object, userdata: object, message: object) -> None:
            received.setdefault(json.loads(message.payload)["item_id"], time.monotonic())  # type: ignore[attr-defined]

        subscriber.client.on_message = on_message

    qt = QApplication.instance() or QApplication([])
    classifier = Classifier.load(bundle, options=InferenceOptions(backend="keras"))
    factory, demo_reason = app.choose_source(settings)
    window = app.assemble_window(settings, classifier, factory, demo_reason)
    hands = window.hands_free.hands
    labels = list(classifier.labels)
    item_of: dict[str, int] = {}  # item id -> index of the photo in the video
    answered: dict[str, float] = {}  # item id -> settle -> model's answer on screen (ms)
    decided: list[tuple[str, str, str, float]] = []  # item id, kind, label, settle -> decision ms
    waiting_since: dict[str, float] = {}
    last_frame = [0]

    def on_frame(frame: object) -> None:
        last_frame[0] = max(last_frame[0], frame.index)  # type: ignore[attr-defined]

    def on_prediction(prediction: object) -> None:
        for item in hands.queue:
            if item.prediction is prediction and item.item_id not in answered:
                answered[item.item_id] = (time.monotonic() - item.settled_at) * 1000.0

    original_store = window.store_decision

    settled_at: dict[str, float] = {}  # item id -> monotonic time it settled
    model_said: dict[str, str | None] = {}  # item id -> the model's class for it

    def store(decision: object) -> None:
        settled_at[decision.item_id] = time.monotonic() - decision.settle_ms / 1000.0  # type: ignore[attr-defined]
        model_said[decision.item_id] = decision.predicted_label  # type: ignore[attr-defined]
        decided.append((decision.item_id, decision.kind or "operator", decision.operator_label,  # type: ignore[attr-defined]
                        decision.settle_ms))  # type: ignore[attr-defined]
        original_store(decision)  # type: ignore[arg-type]

    window.store_decision = store  # type: ignore[method-assign]
    window.capture.frame_captured.connect(on_frame)
    window.inference.prediction_ready.connect(on_prediction)
    window.show()
    app.start_workers(window)
    deadline = time.monotonic() + total_frames / args.fps * 1.5 + 60
    while last_frame[0] < total_frames and time.monotonic() < deadline:
        qt.processEvents()
        item = hands.current
        if item is not None:
            item_of.setdefault(item.item_id, (item.frame.index - lead - 1) // per_item)
            if item.prediction is not None and item.due is None:  # waiting for the operator
                since = waiting_since.setdefault(item.item_id, time.monotonic())
                if time.monotonic() - since >= args.operator_delay:
                    window.choose(labels.index(photos[item_of[item.item_id]][1]))
        for queued in hands.queue:
            item_of.setdefault(queued.item_id, (queued.frame.index - lead - 1) // per_item)
        time.sleep(0.002)
    video_end = time.monotonic()  # the source rewinds here: an item settling from now on is the first photo again
    settle_end = video_end + 3.0
    while time.monotonic() < settle_end:
        qt.processEvents()
        time.sleep(0.01)
    window.close()
    if subscriber is not None:
        time.sleep(1.0)
        subscriber.close()
    if broker is not None:
        broker.stop()

    replayed = [d for d in decided if settled_at[d[0]] >= video_end]
    decided = [d for d in decided if settled_at[d[0]] < video_end]
    per_photo = Counter(item_of[i] for i, *_ in decided if i in item_of)
    auto = [(i, label) for i, kind, label, _ in decided if kind == "auto"]
    correct_auto = sum(label == photos[item_of[i]][1] for i, label in auto if i in item_of)
    settle_ms = [ms for _, kind, _, ms in decided if kind == "auto"]
    auto_ids = {i for i, _ in auto}
    events_ms = [(t - settled_at[i]) * 1000.0 for i, t in received.items() if i in auto_ids]
    return {
        "items_shown": len(photos),
        "items_seen": len(item_of),
        "decisions": len(decided),
        "missed": sum(1 for k in range(len(photos)) if per_photo[k] == 0),
        "duplicates": sum(n - 1 for n in per_photo.values() if n > 1),
        "unmatched": sum(1 for i, *_ in decided if i not in item_of),  # decided on an arrival no photo caused
        "after_the_end": len(replayed),  # the rewound video's first photo again: not counted above
        "events_received": len(received) if broker else None,
        "auto_share": round(len(auto) / len(decided), 3) if decided else None,
        "auto_accuracy": round(correct_auto / len(auto), 3) if auto else None,
        # the model's answer for every decided item, whoever decided it
        "model_right": sum(model_said.get(i) == photos[item_of[i]][1] for i, *_ in decided if i in item_of),
        "auto_wrong": len(auto) - correct_auto,
        "trusted_at_end": [c for c in labels if hands.trust.trusted(c)],
        "settle_to_answer_ms": {"median": percentile(list(answered.values()), 50),
                                "p95": percentile(list(answered.values()), 95)},
        "settle_to_auto_decision_ms": {"median": percentile(settle_ms, 50), "p95": percentile(settle_ms, 95)},
        "settle_to_event_received_ms": {"median": percentile(events_ms, 50), "p95": percentile(events_ms, 95)},
        "rate_per_min": args.rate, "fps": args.fps, "auto_threshold": args.auto_threshold,
        "auto_delay_s": args.auto_delay, "operator_delay_s": args.operator_delay,
        "trust_checks": args.trust_checks, "trust_precision": args.trust_precision,
        "arrival_crop": not args.whole_view,
        "broker": "mosquitto" if broker else "none (JSON lines)", "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--rate", type=float, default=20.0, help="items per minute")
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--auto-threshold", type=float, default=0.9)
    parser.add_argument("--auto-delay", type=float, default=0.0)
    parser.add_argument("--operator-delay", type=float, default=1.0)
    parser.add_argument("--trust-checks", type=int, default=10,
                        help="auto_trust_checks (the station's default; 0: the threshold alone)")
    parser.add_argument("--trust-precision", type=float, default=0.8, help="auto_trust_precision")
    parser.add_argument("--whole-view", action="store_true",
                        help="arrival_crop = false: classify the whole view's centre square, not the item's square")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    result = run(args)
    rows = [
        ("items shown / seen / decisions", f"{result['items_shown']} / {result['items_seen']} / {result['decisions']}"),
        ("missed / duplicate / unmatched decisions",
         f"{result['missed']} / {result['duplicates']} / {result['unmatched']}"),
        ("events received by the subscriber", str(result["events_received"])),
        ("settle -> model's answer on screen, median / p95 ms",
         f"{result['settle_to_answer_ms']['median']} / {result['settle_to_answer_ms']['p95']}"),
        ("settle -> auto decision, median / p95 ms",
         f"{result['settle_to_auto_decision_ms']['median']} / {result['settle_to_auto_decision_ms']['p95']}"),
        ("settle -> its event at the subscriber (auto), median / p95 ms",
         f"{result['settle_to_event_received_ms']['median']} / {result['settle_to_event_received_ms']['p95']}"),
        ("confirmed automatically / their accuracy / wrong ones",
         f"{result['auto_share']} / {result['auto_accuracy']} / {result['auto_wrong']}"),
        ("the model's class right, of the decided items", f"{result['model_right']} of {result['decisions']}"),
        ("classes trusted at the end", ", ".join(result["trusted_at_end"]) or "none"),
    ]
    for name, value in rows:
        print(f"{name:55s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
