"""Earned trust for auto mode: the station confirms a class by itself only once the operator's checks show that
the running model is right about it on this site. No Qt.

A confident model is not a right one: on a belt it has never seen, a TrashNet model is at or above 0.6 on most items
and wrong on most of those (README "Hands-free bench"). So a class is trusted at a threshold when, among the
operator's most recent ``window`` checks of the running model's answers that named this class at or above that
threshold, there are at least ``checks_needed`` and at least ``precision`` of them were right. A check is an
operator's decision on one of the model's answers (auto-confirmed decisions are not checks: nobody looked), or a
cross-validated prediction the retraining that made the model kept in its bundle (``site_checks`` in
``metrics.json``): a retrained model does not start from nothing. Wrong answers pile up in the window as the
operator corrects them, so a site that changes (new lighting, new packaging) takes the trust back by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from station.settings import TRUST_WINDOW
from station.storage import AUTO, DecisionRecord
from training.gate import SITE_CHECKS


@dataclass(frozen=True)
class Check:
    """One judgement of one of the model's answers."""

    predicted: str
    confidence: float
    right: bool


@dataclass(frozen=True)
class Standing:
    """Where a class stands at a threshold: ``checks`` judged answers naming it, ``right`` of them right."""

    label: str
    checks: int
    right: int
    trusted: bool


class SiteTrust:
    """The running model's checks, keyed so that an undone or relabelled decision changes its own check only."""

    def __init__(self, checks_needed: int = 10, precision: float = 0.9, window: int = TRUST_WINDOW) -> None:
        if checks_needed < 0:
            raise ValueError(f"checks_needed must be >= 0, got {checks_needed!r}")
        if not 0.0 <= precision <= 1.0:
            raise ValueError(f"precision must be between 0 and 1, got {precision!r}")
        if window < max(1, checks_needed):
            raise ValueError(f"window ({window}) must hold at least checks_needed ({checks_needed}) checks")
        self.checks_needed = checks_needed
        self.precision = precision
        self.window = window
        self._checks: dict[object, Check] = {}  # oldest first (insertion order)

    @property
    def enabled(self) -> bool:
        return self.checks_needed > 0

    def reset(self, checks: Iterable[tuple[object, Check]]) -> None:
        """A new running model: its checks, oldest first."""
        self._checks = dict(checks)

    def record(self, key: object, check: Check | None) -> None:
        """A new decision (the newest check) or a changed one (its place kept); ``None``: it is no check (the
        station confirmed it by itself, or another model answered)."""
        if check is None:
            self._checks.pop(key, None)
        else:
            self._checks[key] = check

    def forget(self, key: object) -> None:
        self._checks.pop(key, None)

    def standing(self, label: str, threshold: float) -> Standing:
        relevant = [c for c in self._checks.values() if c.predicted == label and c.confidence >= threshold]
        recent = relevant[-self.window:]
        right = sum(c.right for c in recent)
        trusted = not self.enabled or (len(recent) >= self.checks_needed and right >= self.precision * len(recent))
        return Standing(label, len(recent), right, trusted)

    def trusted(self, label: str, threshold: float) -> bool:
        return self.standing(label, threshold).trusted


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
