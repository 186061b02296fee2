"""The promotion gate: paired outcomes, McNemar's exact test, and the order of its rules."""

from __future__ import annotations

import numpy as np
import pytest

from training.gate import GateResult, PairedOutcome, decide, one_sided


def paired(both: int, only_running: int, only_candidate: int, neither: int) -> PairedOutcome:
    """Outcomes with the given counts of (running right?, candidate right?) pairs; class 0 is the truth."""
    run = [0] * both + [0] * only_running + [1] * only_candidate + [1] * neither
    cand = [0] * both + [1] * only_running + [0] * only_candidate + [1] * neither
    return PairedOutcome.of(np.zeros(len(run), np.int64), np.array(run), np.array(cand))


def test_paired_counts_and_accuracies() -> None:
    p = paired(10, 2, 5, 3)
    assert (p.count, p.running_correct, p.candidate_correct, p.only_running, p.only_candidate) == (20, 12, 15, 2, 5)
    assert (p.running_accuracy, p.candidate_accuracy) == (0.6, 0.75)


def test_one_sided_mcnemar_matches_the_binomial_tail() -> None:
    assert one_sided(7, 0) == pytest.approx(0.5**7)  # 7 of 7 discordant pairs one way
    assert one_sided(5, 2) == pytest.approx(sum(__import__("math").comb(7, k) for k in (5, 6, 7)) / 2**7)
    assert one_sided(0, 0) == 1.0


def rule(p: PairedOutcome, base_running: float = 0.8, base_candidate: float = 0.8) -> GateResult:
    return decide(p, base_running, base_candidate, max_base_drop=0.05)


def test_two_more_right_on_twenty_is_noise_and_promotes_as_not_worse() -> None:
    result = rule(paired(10, 1, 3, 6))
    assert (result.promote, result.rule) == (True, "site-no-worse")


def test_a_slightly_worse_candidate_on_a_few_items_is_not_blocked_by_noise() -> None:
    assert rule(paired(10, 3, 1, 6)).rule == "site-no-worse"


def test_no_difference_names_both_one_sided_p_values() -> None:
    result = rule(paired(10, 3, 1, 6))  # 1 now right, 3 now wrong
    p_better, p_worse = one_sided(1, 3), one_sided(3, 1)
    assert p_worse < p_better
    assert f"neither significantly better, p={p_better:.2f}, nor worse, p={p_worse:.2f}" in result.reason


def test_significantly_better_and_worse() -> None:
    assert (rule(paired(5, 0, 8, 7)).promote, rule(paired(5, 0, 8, 7)).rule) == (True, "site-better")
    worse = rule(paired(5, 8, 0, 7))
    assert (worse.promote, worse.rule) == (False, "site-worse")
    assert "significantly worse" in worse.reason


def test_the_base_split_guards_before_the_site_decides() -> None:
    better_on_site = paired(5, 0, 8, 7)
    assert rule(better_on_site, 0.80, 0.76).promote  # within the allowed drop
    blocked = rule(better_on_site, 0.80, 0.74)
    assert (blocked.promote, blocked.rule) == (False, "base-drop")
    assert decide(better_on_site, 0.80, 0.74, max_base_drop=0.10).promote  # the setting moves the line


def test_no_decisions_judged_by_the_running_model_means_no_verdict() -> None:
    result = rule(PairedOutcome.of(*(np.zeros(0, np.int64),) * 3))
    assert (result.promote, result.rule) == (False, "no-site-decisions")
