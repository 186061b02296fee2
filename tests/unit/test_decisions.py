"""The decision desk: the shown prediction's exact frame, one decision per frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from station.camera import Frame
from station.decisions import DecisionDesk, DecisionRefusedError
from station.inference import Prediction

LABELS = ("a", "b", "c")


def prediction(probabilities: list[float], seed: int = 0) -> Prediction:
    image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Prediction(Frame(image, seed, time.monotonic(), "test"), np.array(probabilities, np.float32),
                      LABELS, np.ones(4, np.float32), 5.0, "v1")


def test_no_prediction_on_screen_is_refused_with_a_hint() -> None:
    with pytest.raises(DecisionRefusedError, match="No prediction"):
        DecisionDesk(LABELS, "s", 0.6).decide(None)


def test_confirm_stores_the_shown_frame_and_prediction() -> None:
    desk = DecisionDesk(LABELS, "s", 0.6)
    shown = prediction([0.1, 0.7, 0.2])
    desk.show(shown)
    decision = desk.decide(None)
    assert decision.image is shown.frame.image
    assert decision.predicted_label == decision.operator_label == "b"
    assert decision.confidence == pytest.approx(0.7)
    assert decision.model_version == "v1" and decision.station == "s"


def test_key_sets_the_operator_label() -> None:
    desk = DecisionDesk(LABELS, "s", 0.6)
    desk.show(prediction([0.1, 0.7, 0.2]))
    decision = desk.decide(2)
    assert (decision.predicted_label, decision.operator_label) == ("b", "c")


def test_one_decision_per_frame_until_a_new_prediction_or_undo() -> None:
    desk = DecisionDesk(LABELS, "s", 0.6)
    desk.show(prediction([0.8, 0.1, 0.1]))
    desk.decide(None)
    with pytest.raises(DecisionRefusedError, match="Already saved"):
        desk.decide(1)
    desk.undone()
    assert desk.decide(1).operator_label == "b"
    desk.show(prediction([0.8, 0.1, 0.1], seed=1))
    assert desk.decide(None).operator_label == "a"


def test_uncertain_below_threshold_and_unknown_key() -> None:
    desk = DecisionDesk(LABELS, "s", 0.6)
    assert desk.is_uncertain(prediction([0.5, 0.3, 0.2]))
    assert not desk.is_uncertain(prediction([0.6, 0.3, 0.1]))
    desk.show(prediction([0.5, 0.3, 0.2]))
    with pytest.raises(DecisionRefusedError, match="No class on key 5"):
        desk.decide(4)
