"""Auto mode's earned trust: a class goes alone only after enough of the operator's checks were right."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from station.handsfree import COUNTDOWN, WAITING, HandsFree
from station.storage import AUTO, DecisionKind, DecisionRecord
from station.trust import Check, SiteTrust, Standing, bundle_checks, decision_check, lower_bound
from tests.unit.test_handsfree import Clock, FakePrediction, desk_decision, frame, settle_and_classify
from training.gate import SITE_CHECKS, site_checks


def checks(label: str, right: int, wrong: int, confidence: float = 0.95) -> list[Check]:
    return [Check(label, confidence, True)] * right + [Check(label, confidence, False)] * wrong


def trust_of(all_checks: list[Check], **kwargs: float) -> SiteTrust:
    trust = SiteTrust(**kwargs)  # type: ignore[arg-type]
    trust.reset(enumerate(all_checks))
    return trust


def test_a_class_is_trusted_once_its_checks_make_the_precision_sure() -> None:
    """At 0.8: 95 % sure that at least 80 % are right. 11 right in a row, 19 of 20, 45 of 50."""
    assert not trust_of(checks("glass", 10, 0)).trusted("glass")  # 10 of 10 could be luck
    assert trust_of(checks("glass", 11, 0)).trusted("glass")
    assert trust_of(checks("glass", 19, 1)).trusted("glass")
    assert not trust_of(checks("glass", 18, 2)).trusted("glass")  # 90 % right, but not sure enough
    assert trust_of(checks("glass", 45, 5)).trusted("glass")
    assert not trust_of(checks("glass", 44, 6)).trusted("glass")
    assert not trust_of(checks("glass", 11, 0)).trusted("metal")  # each class earns its own
    assert not trust_of(checks("glass", 5, 0), checks_needed=10, precision=0.0).trusted("glass")  # a minimum count


def test_the_lower_bound_is_wilsons() -> None:
    from scipy.stats import binomtest

    for right, n in ((0, 5), (9, 10), (45, 50), (50, 50)):
        expected = binomtest(right, n).proportion_ci(0.90, method="wilson").low  # two-sided 90 % = one-sided 95 %
        assert lower_bound(right, n) == pytest.approx(expected, abs=1e-4)
    assert lower_bound(0, 0) == 0.0


def test_only_checks_at_or_above_the_threshold_count() -> None:
    mixed = checks("glass", 10, 0, confidence=0.7) + checks("glass", 5, 0, confidence=0.95)
    strict = trust_of(mixed, threshold=0.9)
    assert strict.standing("glass").checks == 5 and not strict.trusted("glass")
    lenient = trust_of(mixed, threshold=0.6)
    assert lenient.standing("glass").checks == 15 and lenient.trusted("glass")


def test_recent_wrong_answers_take_the_trust_back() -> None:
    """The window holds the newest checks: a site that changed shows in them, however long the good record."""
    trust = trust_of(checks("glass", 200, 0), window=50)
    assert trust.trusted("glass") and trust.standing("glass").checks == 50  # no more kept than the window
    for key in range(200, 206):
        trust.record(key, Check("glass", 0.97, False))
    standing = trust.standing("glass")
    assert (standing.checks, standing.right, standing.trusted) == (50, 44, False)  # 45 of 50 would do


def test_an_undone_or_relabelled_decision_changes_its_own_check() -> None:
    trust = trust_of(checks("glass", 11, 0))
    trust.forget(3)
    assert not trust.trusted("glass")  # 10 left
    trust.record(3, Check("glass", 0.95, True))
    assert trust.trusted("glass")
    trust.update(0, Check("glass", 0.95, False))  # relabelled: now a wrong answer, in its old place
    assert trust.standing("glass").right == 10 and not trust.trusted("glass")
    trust.update(0, None)  # no longer a check at all
    assert trust.standing("glass").checks == 10
    trust.update(99, Check("glass", 0.95, True))  # a decision not kept (older than the window) stays out
    assert trust.standing("glass").checks == 10


def test_zero_checks_needed_turns_the_rule_off() -> None:
    assert SiteTrust(checks_needed=0).trusted("glass")


@pytest.mark.parametrize("kwargs", [{"checks_needed": -1}, {"precision": 1.5}, {"checks_needed": 60, "window": 50}])
def test_impossible_rules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SiteTrust(**kwargs)  # type: ignore[arg-type]


def record(**changes: object) -> DecisionRecord:
    base = DecisionRecord(
        id=1, image_path="images/a.png", sha256="0" * 64, predicted_label="glass", confidence=0.93,
        probabilities={}, operator_label="glass", kind=DecisionKind.CONFIRMED, model_version="v2", embedding=None,
        created_at=datetime.now(timezone.utc), station="s1", holdout=False)
    return replace(base, **changes)


def test_a_stored_decision_is_a_check_of_the_model_that_answered() -> None:
    assert decision_check(record(), "v2") == Check("glass", 0.93, True)
    assert decision_check(record(operator_label="metal", kind=DecisionKind.CORRECTED), "v2") == Check(
        "glass", 0.93, False)
    assert decision_check(record(kind=AUTO), "v2") is None  # nobody looked at it
    assert decision_check(record(), "v3") is None  # another model's answer
    assert decision_check(record(predicted_label=None, confidence=None, kind=DecisionKind.IMPORTED), "v2") is None


def test_a_retrained_bundle_brings_its_cross_validated_checks() -> None:
    import numpy as np

    labels = ["glass", "metal"]
    rows = site_checks(labels, np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], np.float32))
    assert bundle_checks({SITE_CHECKS: rows}) == [
        Check("glass", 0.9, True), Check("glass", 0.8, False), Check("metal", 0.7, True)]
    assert bundle_checks({}) == []  # the shipped model: no site checks, trust is earned live
    assert bundle_checks({SITE_CHECKS: [{"predicted": "glass"}, "junk", rows[0]]}) == [Check("glass", 0.9, True)]
    assert bundle_checks({SITE_CHECKS: "junk"}) == []


def test_auto_mode_holds_an_untrusted_class_until_the_checks_come_in() -> None:
    clock = Clock()
    # 3 right of 3 make the station 95 % sure of 53 % at least
    hands = HandsFree("auto", auto_threshold=0.8, auto_delay=1.0, session="s", clock=clock, trust_checks=3,
                      trust_precision=0.5)
    trust = hands.trust
    first = settle_and_classify(hands, clock, 1, 0.97)
    item = hands.current
    assert item is not None and item.state == WAITING  # confident, but glass has no checks yet
    standing = hands.standing(item)
    assert standing is not None and (standing.checks, standing.trusted) == (0, False)
    decision = hands.decided(desk_decision(first))  # the operator confirms: that is a check
    trust.record(1, Check("glass", decision.confidence or 0.0, True))
    trust.record(2, Check("glass", 0.9, True))
    second = settle_and_classify(hands, clock, 2, 0.95)
    assert hands.current is not None and hands.current.state == WAITING  # two checks of three
    trust.record(3, Check("glass", 0.85, True))
    hands.trust_changed()
    assert hands.current is not None and hands.current.state == COUNTDOWN  # earned: the item on screen goes alone
    clock.now += 1.0
    assert hands.due_item() is hands.current
    hands.decided(desk_decision(second), by_operator=False)
    shown = frame(clock.now)
    hands.item_settled(3, shown)  # type: ignore[arg-type]
    hands.classified(FakePrediction(shown, 0.95, "metal"))  # type: ignore[arg-type]
    assert hands.current is not None and hands.current.state == WAITING  # metal has earned nothing


def test_the_trust_job_reads_only_the_newest_checks_that_count(tmp_path) -> None:
    """Per class, the newest checks of this model at this station at or above the threshold, and no more than
    the window: a model that has run for months loads in a few small queries."""
    import numpy as np

    from station.storage import NewDecision, Storage
    from station.storage_jobs import trust_checks

    def saved(storage: Storage, seed: int, **fields: object) -> int:
        image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        values: dict[str, object] = {"image": image, "predicted_label": "glass", "confidence": 0.95,
                                     "probabilities": {}, "operator_label": "glass", "model_version": "v2",
                                     "station": "s1"}
        values.update(fields)
        return storage.save(NewDecision(**values)).id  # type: ignore[arg-type]

    trust = SiteTrust(checks_needed=2, precision=0.3, threshold=0.9, window=3)
    with Storage(tmp_path / "data", "s1") as storage:
        glass = [saved(storage, i) for i in range(5)]
        wrong = saved(storage, 10, operator_label="metal")
        metal = saved(storage, 11, predicted_label="metal")
        ignored = [saved(storage, 20, confidence=0.5), saved(storage, 21, kind=AUTO),
                   saved(storage, 22, model_version="v1"), saved(storage, 23, station="s2")]
        found = trust_checks("s1", "v2", ("glass", "metal", "paper"), trust)(storage)
    assert [i for i, _ in found] == [glass[3], glass[4], wrong, metal]  # oldest first, 3 glass at most
    assert not set(ignored) & {i for i, _ in found}
    trust.reset(found)
    assert trust.standing("glass") == Standing("glass", 3, 2, False) and trust.trusted("metal") is False
    assert lower_bound(3, 3) >= 0.3 > lower_bound(2, 3)  # so glass's one wrong answer is what holds it back
