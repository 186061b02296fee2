"""Retraining messages for tests that stand in for the retraining core or its child process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.gate import PairedOutcome
from training.messages import ClassScore, Mode, PartScores, RetrainOutcome, RetrainReport, Scores


def scores(accuracy: float, count: int = 4, labels: tuple[str, ...] = ("a", "b")) -> Scores:
    return Scores(
        count=count, accuracy=accuracy, macro_f1=accuracy, labels=list(labels), confusion=[[count]],
        per_class={label: ClassScore(precision=accuracy, recall=accuracy, f1=accuracy, support=1) for label in labels},
    )


def paired(count: int, running_correct: int, candidate_correct: int) -> PairedOutcome:
    return PairedOutcome(count, running_correct, candidate_correct, 0, 0, 1.0, 1.0)


def report(candidate: Path, gate_passed: bool = True, **changes: Any) -> RetrainReport:
    fields: dict[str, Any] = {
        "candidate": str(candidate), "current": PartScores(scores(0.25), scores(0.5)),
        "candidate_metrics": PartScores(scores(0.75), scores(0.5)), "counts": {"base_train": 12},
        "seconds": 2.0, "gate_passed": gate_passed, "gate_reason": "stub gate passed" if gate_passed else "worse",
        "gate_rule": "site-better" if gate_passed else "site-worse", "paired": None, "site_share": 0.5,
    }
    return RetrainReport(**{**fields, **changes})


def outcome(candidate: Path, version: str = "r1", promoted: bool = True, **changes: Any) -> RetrainOutcome:
    return RetrainOutcome.of(
        report(candidate, promoted, **changes), version=version, parent="bundled", mode=Mode.FAST,
        status="active" if promoted else "candidate", promoted=promoted, decisions=4,
    )
