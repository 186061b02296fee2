"""The hands-free state machine: one decision per item, in order, auto-confirmed only when confident and on time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from station.handsfree import CLASSIFYING, COUNTDOWN, WAITING, HandsFree
from station.retraining import LearningTrigger, learnable
from station.storage import NewDecision


@dataclass(eq=False)
class FakeFrame:
    image: np.ndarray
    timestamp: float


@dataclass(eq=False)
class FakePrediction:
    frame: FakeFrame
    confidence: float
    label: str = "glass"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(t: float) -> FakeFrame:
    return FakeFrame(np.zeros((4, 4, 3), np.uint8), t)


def desk_decision(prediction: FakePrediction, label: str | None = None) -> NewDecision:
    """What DecisionDesk.decide returns: the shown frame, the model's label or the operator's."""
    return NewDecision(image=prediction.frame.image, predicted_label=prediction.label,
                       confidence=prediction.confidence, probabilities={}, operator_label=label or prediction.label)


def settle_and_classify(hands: HandsFree, clock: Clock, number: int, confidence: float) -> FakePrediction:
    shown = frame(clock.now)
    hands.item_settled(number, shown)  # type: ignore[arg-type]
    clock.now += 0.05  # the model takes 50 ms
    prediction = FakePrediction(shown, confidence)
    assert hands.classified(prediction) is not None  # type: ignore[arg-type]
    return prediction


def test_auto_confirms_a_confident_item_after_the_delay_once() -> None:
    clock = Clock()
    hands = HandsFree("auto", auto_threshold=0.8, auto_delay=1.0, session="s", clock=clock)
    prediction = settle_and_classify(hands, clock, 1, 0.93)
    item = hands.current
    assert item is not None and item.state == COUNTDOWN and hands.next_due() == pytest.approx(101.05)
    clock.now = 101.0
    assert hands.due_item() is None
    clock.now = 101.05
    assert hands.due_item() is item
    decision = hands.decided(desk_decision(prediction), by_operator=False)
    assert (decision.kind, decision.item_id, decision.touches, decision.settle_ms) == ("auto", "s-0001", 0, 1050.0)
    assert hands.current is None and hands.due_item() is None
    with pytest.raises(ValueError, match="no item"):
        hands.decided(desk_decision(prediction))  # one decision per item


def test_an_uncertain_item_waits_and_the_next_cannot_overwrite_it() -> None:
    clock = Clock()
    hands = HandsFree("auto", auto_threshold=0.8, auto_delay=1.0, session="s", clock=clock)
    first = settle_and_classify(hands, clock, 1, 0.55)
    assert hands.current is not None and hands.current.state == WAITING
    second = settle_and_classify(hands, clock, 2, 0.97)  # a confident item settles behind it
    clock.now += 30.0
    assert hands.due_item() is None and hands.current.frame is first.frame  # still the first, still waiting
    decision = hands.decided(desk_decision(first, "metal"))
    assert (decision.kind, decision.item_id, decision.touches) == (None, "s-0001", 1)  # kind from the labels
    # The second is on screen now and counts down from now, not from when it settled.
    assert hands.current is not None and hands.current.frame is second.frame and hands.next_due() == clock.now + 1.0
    clock.now += 1.0
    assert hands.decided(desk_decision(second), by_operator=False).item_id == "s-0002"


def test_a_key_during_the_countdown_is_the_operators_decision_and_hold_stops_it() -> None:
    clock = Clock()
    hands = HandsFree("auto", auto_threshold=0.8, auto_delay=1.0, session="s", clock=clock)
    first = settle_and_classify(hands, clock, 1, 0.95)
    assert hands.decided(desk_decision(first)).kind is None  # Space during the countdown: a human confirmation
    settle_and_classify(hands, clock, 2, 0.95)
    assert hands.hold() and hands.current is not None and hands.current.state == WAITING
    clock.now += 60.0
    assert hands.due_item() is None and not hands.hold()


def test_an_item_leaving_during_the_countdown_is_confirmed_at_once() -> None:
    clock = Clock()
    hands = HandsFree("auto", auto_threshold=0.8, auto_delay=5.0, session="s", clock=clock)
    settle_and_classify(hands, clock, 1, 0.95)
    clock.now += 0.5
    hands.item_left(1)
    assert hands.due_item() is hands.current is not None


def test_assist_never_confirms_by_itself_and_classifying_comes_first() -> None:
    clock = Clock()
    hands = HandsFree("assist", session="s", clock=clock)
    shown = frame(clock.now)
    item = hands.item_settled(1, shown)  # type: ignore[arg-type]
    assert item is not None and item.state == CLASSIFYING
    assert hands.classified(FakePrediction(frame(clock.now), 0.99)) is None  # a live frame: not this item's
    hands.classified(FakePrediction(shown, 0.99))  # type: ignore[arg-type]
    clock.now += 600
    assert item.state == WAITING and hands.due_item() is None


def test_manual_mode_passes_decisions_through_and_ignores_items() -> None:
    hands = HandsFree("manual")
    assert hands.item_settled(1, frame(0.0)) is None  # type: ignore[arg-type]
    decision = desk_decision(FakePrediction(frame(0.0), 0.5))
    assert hands.decided(decision) is decision
    assert [hands.next_mode() for _ in range(3)] == ["assist", "auto", "manual"]


def test_undo_puts_the_item_back_on_screen_waiting() -> None:
    clock = Clock()
    hands = HandsFree("auto", auto_threshold=0.5, auto_delay=1.0, session="s", clock=clock)
    first = settle_and_classify(hands, clock, 1, 0.9)
    clock.now += 1.0
    hands.decided(desk_decision(first), by_operator=False)
    assert hands.undone("another") is None
    item = hands.undone("s-0001")
    assert item is hands.current and item is not None and item.state == WAITING
    assert hands.decided(desk_decision(first, "paper")).touches == 2  # undo + the correction


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of manual, assist, auto"):
        HandsFree("automatic")
    with pytest.raises(ValueError, match="auto_threshold"):
        HandsFree("auto", auto_threshold=1.5)
    with pytest.raises(ValueError, match="auto_delay"):
        HandsFree("auto", auto_delay=-1)


@dataclass
class Kind:
    kind: str


def test_retraining_leaves_auto_decisions_out_unless_asked() -> None:
    records = [Kind("confirmed"), Kind("auto"), Kind("corrected"), Kind("auto")]
    assert [r.kind for r in learnable(records, learn_from_auto=False)] == ["confirmed", "corrected"]  # type: ignore[arg-type]
    assert learnable(records, learn_from_auto=True) == records  # type: ignore[arg-type]
    trigger = LearningTrigger(every=2)
    for kind in ("auto", "auto", "auto", "confirmed"):
        trigger.decision_saved(kind)
    assert trigger.pending == 1 and not trigger.due(running=False)
    eager = LearningTrigger(every=2, learn_from_auto=True)
    eager.decision_saved("auto")
    eager.decision_saved("auto")
    assert eager.due(running=False)
