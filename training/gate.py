"""The promotion gate: judged first on the site's own decisions, with a significance test.

The running model and the candidate are compared on the same decisions, each prediction made
without having trained on that decision: the running model's prediction is the one it made live
when the operator judged the item; the candidate's comes from cross-validation (fast mode) or a
held-out share of the decisions (full mode). McNemar's exact test on the paired outcomes tells
a real difference from noise: on 20 decisions, 2 more right is noise and decides nothing.

The rule, in order (``GateResult.rule`` names the one that decided):
1. ``no-site-decisions``: nothing judged live by the running model yet; the candidate waits for the operator.
2. ``base-drop``: accuracy on the base test split fell by more than ``max_base_drop``; not promoted.
3. ``site-worse``: significantly worse on the site's decisions (one-sided p < ``alpha``); not promoted.
4. ``site-better``: significantly better; promoted.
5. ``site-no-worse``: no significant difference. Promoted: the candidate learned from every decision
   the running model had plus the new ones, so only evidence should hold it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

DEFAULT_MAX_BASE_DROP = 0.05
DEFAULT_ALPHA = 0.05
# A candidate's metrics.json keeps its judged predictions under this key, for the station's auto-mode trust
# (``station.trust``): each the class it named, its confidence and whether the operator's label agreed.
SITE_CHECKS = "site_checks"


@dataclass(frozen=True)
class PairedOutcome:
    """How the running model and the candidate did on the same site decisions."""

    count: int
    running_correct: int
    candidate_correct: int
    only_running: int  # decisions the running model got right and the candidate wrong
    only_candidate: int  # the other way round
    p_better: float  # one-sided exact McNemar p-value: candidate better
    p_worse: float  # candidate worse

    @classmethod
    def of(cls, y: NDArray[np.int64], running: NDArray[np.int64], candidate: NDArray[np.int64]) -> PairedOutcome:
        run_ok, cand_ok = running == y, candidate == y
        b, c = int((run_ok & ~cand_ok).sum()), int((~run_ok & cand_ok).sum())
        return cls(
            count=len(y), running_correct=int(run_ok.sum()), candidate_correct=int(cand_ok.sum()),
            only_running=b, only_candidate=c, p_better=one_sided(c, b), p_worse=one_sided(b, c),
        )

    @property
    def running_accuracy(self) -> float:
        return self.running_correct / self.count if self.count else 0.0

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate_correct / self.count if self.count else 0.0


def one_sided(wins: int, losses: int) -> float:
    """P(at least ``wins`` of the discordant pairs go one way | both models equally good)."""
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest  # slow to import: only when a gate decides, not for its messages

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


@dataclass(frozen=True)
class GateResult:
    promote: bool
    rule: str
    reason: str


def decide(
    site: PairedOutcome,
    base_running: float,
    base_candidate: float,
    max_base_drop: float = DEFAULT_MAX_BASE_DROP,
    alpha: float = DEFAULT_ALPHA,
) -> GateResult:
    """Apply the rule of the module docstring; accuracies are fractions."""
    site_text = (f"site {site.running_accuracy:.3f} -> {site.candidate_accuracy:.3f} on {site.count} decisions "
                 f"({site.only_candidate} now right, {site.only_running} now wrong")
    if site.count == 0:
        return GateResult(False, "no-site-decisions",
                          "no decisions judged live by the running model yet: nothing to compare on")
    drop = base_running - base_candidate
    if drop > max_base_drop:
        return GateResult(False, "base-drop", f"base test accuracy fell {drop:.3f} (> {max_base_drop:.3f} allowed); "
                          f"{site_text})")
    if site.p_worse < alpha:
        return GateResult(False, "site-worse", f"{site_text}, p={site.p_worse:.3f}: significantly worse)")
    if site.p_better < alpha:
        return GateResult(True, "site-better", f"{site_text}, p={site.p_better:.3f}: significantly better)")
    return GateResult(True, "site-no-worse", f"{site_text}: neither significantly better, p={site.p_better:.2f}, "
                      f"nor worse, p={site.p_worse:.2f})")


def site_checks(labels: list[str], y: NDArray[np.int64], probabilities: NDArray[np.float32]) -> list[dict[str, object]]:
    """The candidate's judged predictions (made by models that did not train on them) as JSON rows."""
    predicted = probabilities.argmax(axis=1)
    return [{"predicted": labels[int(p)], "confidence": round(float(row[p]), 4), "right": bool(p == truth)}
            for p, row, truth in zip(predicted, probabilities, y, strict=True)]
