"""Earned trust for auto mode: the station confirms a class by itself only once the operator's checks show that
the running model is right about it on this site. No Qt.

A confident model is not a right one: on a belt it has never seen, a TrashNet model is at or above 0.6 on most items
and wrong on most of those (README "Hands-free bench"). So a class is trusted when the operator's most recent
``window`` checks of the running model's answers that named this class at or above the auto threshold are at least
``checks_needed`` and make it 95 % sure that at least ``precision`` of such answers are right (the lower end of the
Wilson score interval). A bare share would not do: 9 right of 10 happens by luck to a class that is right 70 % of
the time, and among six classes one is often that lucky (measured: README "Earned trust").

A check is an operator's decision on one of the model's answers (auto-confirmed decisions are not checks: nobody
looked), or a cross-validated prediction the retraining that made the model kept in its bundle (``site_checks`` in
``metrics.json``): a retrained model does not start from nothing. Wrong answers enter the window as the operator
corrects them, so a site that changes (new lighting, new packaging) takes the trust back by itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from station.settings import TRUST_WINDOW
from station.storage import AUTO, DecisionRecord
from training.gate import SITE_CHECKS

Z_95 = 1.645  # one-sided 95 %


@dataclass(frozen=True)
class Check:
    """One judgement of one of the model's answers."""

    predicted: str
    confidence: float
    right: bool


@dataclass(frozen=True)
class Standing:
    """Where a class stands: ``checks`` judged answers naming it (at or above the threshold), ``right`` of them
    right."""

    label: str
    checks: int
    right: int
    trusted: bool


class SiteTrust:
    """The running model's most recent checks of each class at or above ``threshold``, keyed so that an undone or
    relabelled decision changes its own check only. At most ``window`` per class are kept: memory and the time
    to judge a class stay bounded however long a model runs."""

    def __init__(self, checks_needed: int = 10, precision: float = 0.8, threshold: float = 0.9,
                 window: int = TRUST_WINDOW) -> None:
        if checks_needed < 0:
            raise ValueError(f"checks_needed must be >= 0, got {checks_needed!r}")
        if not 0.0 <= precision <= 1.0:
            raise ValueError(f"precision must be between 0 and 1, got {precision!r}")
        if window < max(1, checks_needed):
            raise ValueError(f"window ({window}) must hold at least checks_needed ({checks_needed}) checks")
        self.checks_needed = checks_needed
        self.precision = precision
        self.threshold = threshold
        self.window = window
        self._checks: dict[str, OrderedDict[object, Check]] = {}  # class -> its checks, oldest first

    @property
    def enabled(self) -> bool:
        return self.checks_needed > 0

    def reset(self, checks: Iterable[tuple[object, Check]]) -> None:
        """A new running model: its checks, oldest first."""
        self._checks = {}
        for key, check in checks:
            self.record(key, check)

    def record(self, key: object, check: Check | None) -> None:
        """A new decision: its check is the newest of its class. ``None``: it is no check (the station confirmed it by
        itself, or another model answered)."""
        self.forget(key)
        if check is None or check.confidence < self.threshold:
            return
        kept = self._checks.setdefault(check.predicted, OrderedDict())
        kept[key] = check
        if len(kept) > self.window:
            kept.popitem(last=False)

    def update(self, key: object, check: Check | None) -> None:
        """A decision changed (relabelled): its check changes in its place; one no longer kept stays out."""
        for kept in self._checks.values():
            if key in kept:
                if check is None or check.predicted != kept[key].predicted or check.confidence < self.threshold:
                    del kept[key]
                else:
                    kept[key] = check
                return

    def forget(self, key: object) -> None:
        for kept in self._checks.values():
            kept.pop(key, None)

    def standing(self, label: str) -> Standing:
        kept = self._checks.get(label, OrderedDict())
        right = sum(c.right for c in kept.values())
        trusted = not self.enabled or (len(kept) >= self.checks_needed
                                       and lower_bound(right, len(kept)) >= self.precision)
        return Standing(label, len(kept), right, trusted)

    def trusted(self, label: str) -> bool:
        return self.standing(label).trusted


def lower_bound(right: int, checks: int, z: float = Z_95) -> float:
    """The lower end of the Wilson score interval of a share: ``right`` of ``checks``, one-sided at ``z``."""
    if checks == 0:
        return 0.0
    share, spread = right / checks, z * z / checks
    centre = share + spread / 2
    margin = z * math.sqrt(share * (1 - share) / checks + spread / (4 * checks))
    return (centre - margin) / (1 + spread)


def decision_check(record: DecisionRecord, model_version: str | None) -> Check | None:
    """The check a stored decision is for the model ``model_version``, or None: it is not one (the station confirmed
    it by itself, another model answered, or there was no answer)."""
    if (record.kind == AUTO or record.predicted_label is None or record.confidence is None
            or model_version is None or record.model_version != model_version):
        return None
    return Check(record.predicted_label, float(record.confidence), record.operator_label == record.predicted_label)


def bundle_checks(metrics: Mapping[str, Any]) -> list[Check]:
    """The cross-validated checks a retraining kept in the bundle's metrics; none for a bundle without them.
    A malformed entry is skipped: trust is earned, never assumed."""
    rows = metrics.get(SITE_CHECKS)
    checks = []
    for row in rows if isinstance(rows, list) else []:
        try:
            checks.append(Check(str(row["predicted"]), float(row["confidence"]), bool(row["right"])))
        except (KeyError, TypeError, ValueError):
            continue
    return checks
