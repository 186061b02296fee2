"""What a retraining says: its progress and its outcome, as frozen, picklable dataclasses.

The same objects travel from the retraining child process through the station's queue and signals to
the window, the CLI (``json.dumps(outcome.to_json())``) and the model registry (stored as JSON, read back
with ``RetrainOutcome.from_json``). Modes and policies are ``str`` enums, so JSON and the database hold
their plain values. No TensorFlow here: the station imports this module without loading it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from training.gate import PairedOutcome


class Mode(StrEnum):
    FAST = "fast"  # a new softmax head on backbone embeddings
    FULL = "full"  # the top of the backbone fine-tuned on images


class Promote(StrEnum):
    AUTO = "auto"  # if the gate passes
    ALWAYS = "always"
    NEVER = "never"  # keep it as a candidate


@dataclass(frozen=True)
class ClassScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    """One model on one set of labelled items (``training.evaluate.compute_metrics`` plus the count)."""

    count: int
    accuracy: float
    macro_f1: float
    labels: list[str]
    per_class: dict[str, ClassScore] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scores:
        return cls(
            count=int(data["count"]), accuracy=float(data["accuracy"]), macro_f1=float(data["macro_f1"]),
            labels=list(data["labels"]), confusion=[list(row) for row in data["confusion"]],
            per_class={name: ClassScore(**score) for name, score in data["per_class"].items()},
        )

    def recall(self, label: str) -> float | None:
        """The class's recall, None when no item of it was scored."""
        score = self.per_class.get(label)
        return None if score is None or not score.support else score.recall


@dataclass(frozen=True)
class PartScores:
    """A model's scores on the site's judged decisions and on the base test split."""

    decisions: Scores
    base_test: Scores

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartScores:
        return cls(**{f.name: Scores.from_json(data[f.name]) for f in fields(cls)})

    def parts(self) -> list[tuple[str, Scores]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True)
class SkippedImage:
    """A stored decision left out of a retraining because its image could not be decoded."""

    id: int
    path: str
    reason: str


@dataclass(frozen=True)
class RetrainProgress:
    phase: str
    done: int
    total: int
    elapsed: float = 0.0
    eta: float | None = None  # seconds left, None until the phase has a rate
    skipped: SkippedImage | None = None


Progress = Callable[[RetrainProgress], None]
FINAL_PHASE = "done"


@dataclass(frozen=True, kw_only=True)
class RetrainReport:
    """What ``training.retrain.retrain`` found: the candidate, both models' scores and the gate's verdict."""

    candidate: str  # the candidate bundle's folder
    current: PartScores  # the running model
    candidate_metrics: PartScores
    counts: dict[str, int]  # what trained: base_train, site_train, site_judged
    seconds: float
    gate_passed: bool
    gate_reason: str
    gate_rule: str
    paired: PairedOutcome | None
    site_share: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrainReport:
        """Read back what ``to_json`` wrote (a registry row); KeyError/TypeError/ValueError if it is not that."""
        paired = data["paired"]
        return RetrainReport(
            candidate=str(data["candidate"]), counts=dict(data["counts"]), seconds=float(data["seconds"]),
            current=PartScores.from_json(data["current"]),
            candidate_metrics=PartScores.from_json(data["candidate_metrics"]),
            gate_passed=bool(data["gate_passed"]), gate_reason=str(data["gate_reason"]),
            gate_rule=str(data["gate_rule"]), paired=PairedOutcome(**paired) if paired else None,
            site_share=data["site_share"],
        )


@dataclass(frozen=True, kw_only=True)
class RetrainOutcome(RetrainReport):
    """A retraining run by the station: the report plus the version it registered and what it left out."""

    version: str
    parent: str
    mode: Mode
    status: str  # the version's status in the registry: active or candidate
    promoted: bool
    decisions: int
    skipped_missing_images: int = 0
    skipped_unreadable_images: list[SkippedImage] = field(default_factory=list)
    classes_without_decisions: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, report: RetrainReport, **station: Any) -> RetrainOutcome:
        return cls(**{f.name: getattr(report, f.name) for f in fields(RetrainReport)}, **station)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetrainOutcome:
        return cls.of(
            RetrainReport.from_json(data), version=str(data["version"]), parent=str(data["parent"]),
            mode=Mode(data["mode"]), status=str(data["status"]), promoted=bool(data["promoted"]),
            decisions=int(data["decisions"]), skipped_missing_images=int(data["skipped_missing_images"]),
            skipped_unreadable_images=[SkippedImage(**s) for s in data["skipped_unreadable_images"]],
            classes_without_decisions=list(data["classes_without_decisions"]),
        )


@dataclass(frozen=True)
class RetrainFailed:
    message: str


@dataclass(frozen=True)
class RetrainStopped:
    """Cancelled by the operator (or the station closing); nothing was written."""


ChildEvent = RetrainProgress | RetrainOutcome | RetrainFailed | RetrainStopped
