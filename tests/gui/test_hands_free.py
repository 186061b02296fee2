"""Hands-free sorting in the real window (offscreen): a folder in auto mode decides every item once without a
key; an uncertain item waits for the operator; each decision's event goes out (JSON lines here; the broker path
is tests/integration)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from station.camera import Frame, FrameSource
from station.handsfree import WAITING
from tests.gui.test_main_window import WAIT_MS, rows, start_window


def events(data_dir: Path) -> list[dict]:
    path = data_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def window_with_a_waiting_item(qtbot, windows, make_settings, tiny_classifier):
    """Auto mode that never trusts the model (threshold 1.0): the first item waits for the operator's key."""
    settings = make_settings(mode="auto", auto_threshold=1.0, auto_delay=0.0, interval=0.3)
    window = start_window(qtbot, windows, settings, tiny_classifier)
    hands = window.hands_free.hands
    qtbot.waitUntil(lambda: hands.current is not None and hands.current.state == WAITING, timeout=WAIT_MS)
    return settings, window


def test_auto_mode_stores_exactly_one_decision_per_item_without_a_key(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings(mode="auto", auto_threshold=0.0, auto_delay=0.0, bins={"a": "ab", "b": "ab"},
                             auto_trust_checks=0)  # trust taken as given here (earning it: below)
    window = start_window(qtbot, windows, settings, tiny_classifier)
    qtbot.waitUntil(lambda: window.capture.loop.state == "ended" and window.storage.pending == 0
                    and len(rows(settings.data_dir)) == 6, timeout=WAIT_MS * 2)
    qtbot.wait(500)  # nothing more may come
    stored = rows(settings.data_dir)
    assert len(stored) == 6 and {r.kind for r in stored} == {"auto"}
    assert len({r.item_id for r in stored}) == 6 and all(r.touches == 0 and r.settle_ms >= 0 for r in stored)
    qtbot.waitUntil(lambda: len(events(settings.data_dir)) == 6, timeout=WAIT_MS)
    window.hands_free.publisher.close()
    sent = events(settings.data_dir)
    assert [e["item_id"] for e in sent] == [r.item_id for r in stored]  # once each, in order
    for event, record in zip(sent, stored, strict=True):
        assert event["class"] == record.operator_label and event["kind"] == "auto"
        assert event["bin"] == ("ab" if record.operator_label in ("a", "b") else record.operator_label)
        assert event["station"] == "test-station" and event["model_version"] == "tiny-v1"


def test_an_uncertain_item_waits_for_a_key_and_the_next_does_not_replace_it(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings, window = window_with_a_waiting_item(qtbot, windows, make_settings, tiny_classifier)
    hands = window.hands_free.hands
    first = hands.current
    qtbot.waitUntil(lambda: len(hands.queue) >= 2, timeout=WAIT_MS)  # the slideshow goes on: a second item
    assert hands.current is first and window.desk.shown is first.prediction  # still the first on screen
    # the live picture shows the next item: its own settled frame is shown beside the decision
    held = window.video._overlay.held_image
    assert held is not None and (held.width(), held.height()) == first.frame.image.shape[1::-1]
    assert rows(settings.data_dir) == []  # nothing decided without the operator
    assert "WAITING FOR YOU" in (window.video._overlay.item_state or "")
    with qtbot.waitSignal(window.decision_saved, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    [row] = rows(settings.data_dir)
    assert row.kind == "confirmed" and row.item_id == first.item_id and row.touches == 1
    assert hands.current is not first


def test_the_mode_key_cycles_and_manual_is_unchanged(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings = make_settings()
    window = start_window(qtbot, windows, settings, tiny_classifier)
    assert window.hands_free.hands.mode == "manual" and window.capture.classify_live
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert window.hands_free.hands.mode == "assist" and not window.capture.classify_live
    assert "mode assist" in window.hands_free.mode_label.text()
    qtbot.keyClick(window, Qt.Key.Key_M)
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert window.hands_free.hands.mode == "manual" and window.capture.classify_live


def test_an_undone_decision_is_retracted_at_the_sorter_and_its_replacement_follows(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    settings, window = window_with_a_waiting_item(qtbot, windows, make_settings, tiny_classifier)
    hands = window.hands_free.hands
    item = hands.current
    with qtbot.waitSignal(window.decision_saved, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    [first] = rows(settings.data_dir)
    with qtbot.waitSignal(window.decision_removed, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Backspace)
    assert hands.current is item  # back on screen, waiting
    with qtbot.waitSignal(window.decision_saved, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_2)  # the operator's second thought: class "b"
    [second] = rows(settings.data_dir)
    qtbot.waitUntil(lambda: len(events(settings.data_dir)) == 3, timeout=WAIT_MS)
    window.hands_free.publisher.close()
    sent = events(settings.data_dir)
    assert [(e["item_id"], e["decision_id"], e["kind"]) for e in sent] == [
        (item.item_id, first.id, "confirmed"), (item.item_id, first.id, "retracted"),
        (item.item_id, second.id, "corrected" if first.operator_label != "b" else "confirmed")]
    assert sent[1]["class"] == first.operator_label and sent[1]["time"] >= sent[0]["time"]
    assert second.id != first.id and second.operator_label == "b"


def test_auto_mode_confirms_a_class_alone_only_after_the_operators_checks(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    """Trust on (at least 2 checks, 2 right of 2 make it 95 % sure of 42 %): items wait for the operator until their
    class has 2 confirmed answers."""
    settings = make_settings(mode="auto", auto_threshold=0.0, auto_delay=0.0, interval=0.2, auto_trust_checks=2,
                             auto_trust_precision=0.4)
    window = start_window(qtbot, windows, settings, tiny_classifier)
    hands = window.hands_free.hands
    qtbot.waitUntil(lambda: hands.current is not None and hands.current.state == WAITING, timeout=WAIT_MS)
    assert "not trusted: no checks" in (window.video._overlay.item_state or "")
    assert "trusted: none yet" in window.hands_free.mode_label.text()

    def decided_alone() -> bool:
        current = hands.current
        if current is not None and current.state == WAITING and not window.desk.shown_is_decided:
            qtbot.keyClick(window, Qt.Key.Key_Space)  # the operator confirms whatever waits
        return any(r.kind == "auto" for r in rows(settings.data_dir))

    qtbot.waitUntil(decided_alone, timeout=WAIT_MS * 4)
    stored = rows(settings.data_dir)
    first_auto = next(i for i, r in enumerate(stored) if r.kind == "auto")
    label = stored[first_auto].predicted_label
    checks_before = [r for r in stored[:first_auto] if r.predicted_label == label]
    assert len(checks_before) >= 2 and all(r.kind == "confirmed" for r in checks_before)
    trusted = window.hands_free.mode_label.text().split("trusted: ", 1)[1].split(")", 1)[0].split(", ")
    assert label in trusted


def test_a_retrained_model_brings_its_checks_and_goes_alone_from_the_start(
    qtbot, windows, make_settings, image_folder, tiny_bundle_path, tmp_path
) -> None:
    import shutil

    from station.inference import Classifier
    from training.gate import SITE_CHECKS

    bundle = tmp_path / "retrained"
    shutil.copytree(tiny_bundle_path, bundle)
    metrics = json.loads((bundle / "metrics.json").read_text()) if (bundle / "metrics.json").is_file() else {}
    labels = json.loads((bundle / "labels.json").read_text())
    metrics[SITE_CHECKS] = [{"predicted": c, "confidence": 0.99, "right": True} for c in labels for _ in range(11)]
    (bundle / "metrics.json").write_text(json.dumps(metrics))
    settings = make_settings(mode="auto", auto_threshold=0.0, auto_delay=0.0, auto_trust_checks=10,
                             auto_trust_precision=0.8, model=str(bundle))  # 11 right of 11: sure of 80 %
    window = start_window(qtbot, windows, settings, Classifier.load(bundle))
    qtbot.waitUntil(lambda: window.capture.loop.state == "ended" and window.storage.pending == 0
                    and len(rows(settings.data_dir)) == 6, timeout=WAIT_MS * 2)
    assert {r.kind for r in rows(settings.data_dir)} == {"auto"}  # no key pressed


class BeltCamera(FrameSource):
    """A live 640 x 480 camera over a grey belt: empty for 1.5 s, then a red 120 x 160 item lies still at
    x 400..519, y 200..359 (off centre: the whole view's centre square would cut it)."""

    is_live = True
    description = "belt test camera"

    def __init__(self) -> None:
        self.index = 0
        self.start = 0.0

    def open(self) -> None:
        self.start = time.monotonic()

    def read(self) -> Frame | None:
        time.sleep(0.04)
        self.index += 1
        image = np.full((480, 640, 3), 110, np.uint8)
        if time.monotonic() - self.start > 1.5:
            image[200:360, 400:520] = (220, 40, 40)
        return Frame(image, self.index, time.monotonic(), self.description)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("crop", [True, False])
def test_a_settled_item_is_classified_and_stored_from_its_own_square(
    qtbot, windows, make_settings, tiny_classifier, crop: bool
) -> None:
    settings = make_settings(source="0", mode="assist", arrival_crop=crop)
    window = start_window(qtbot, windows, settings, tiny_classifier, lambda: BeltCamera())
    hands = window.hands_free.hands
    qtbot.waitUntil(lambda: hands.current is not None and hands.current.prediction is not None, timeout=WAIT_MS)
    item = hands.current
    assert item.prediction.frame is item.frame  # the model answered for the item's own image
    window.status.refresh()  # only settled items are classified: a time per prediction, no rate
    assert window.status.labels["inference"].text().startswith("inference ") and "fps" not in (
        window.status.labels["inference"].text())
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: len(rows(settings.data_dir)) == 1, timeout=WAIT_MS)
    [record] = rows(settings.data_dir)
    stored = np.asarray(Image.open(settings.data_dir / record.image_path).convert("RGB"))
    if not crop:
        assert stored.shape == (480, 640, 3)
        return
    # The item's 160 px side plus 15 % on each side: a 208 px square around it, the item in its middle.
    assert stored.shape[0] == stored.shape[1] and abs(stored.shape[0] - 208) <= 12
    assert item.frame.image.shape == stored.shape
    middle = stored[84:124, 84:124].reshape(-1, 3).mean(axis=0)
    assert middle[0] > 180 and middle[1] < 90  # red
