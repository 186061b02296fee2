"""What ``station retrain`` prints: one progress line per phase, then a summary of the outcome."""

from __future__ import annotations

import io

from station.terminal import ProgressBars, phase_key, retrain_summary
from training.messages import Mode, PartScores, RetrainOutcome, RetrainProgress, Scores


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(bars: ProgressBars, clock: Clock, events: list[tuple[float, str, int, int]]) -> None:
    for moment, phase, done, total in events:
        clock.now = moment
        bars(RetrainProgress(phase, done, total))


def test_one_line_per_phase_with_its_own_count_and_duration() -> None:
    # the events of a fast retrain: outer steps of 4, the base embeddings' own 2 parts, then "done"
    clock, out = Clock(), io.StringIO()
    bars = ProgressBars(out, clock=clock)
    feed(bars, clock, [(0, "preparing", 0, 4), (1, "base embeddings", 0, 4), (4, "base embeddings", 1, 2),
                       (7, "base embeddings", 2, 2), (7.5, "site embeddings", 1, 4), (8, "fit head", 2, 4),
                       (9, "evaluate", 3, 4), (9.5, "done", 1, 1)])
    bars.finish()  # after "done" nothing is left open: no extra line
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["preparing", "base", "site", "fit", "evaluate"]
    assert lines[1].startswith("base embeddings") and lines[1].endswith("2/2  6 s")
    assert lines[3] == "fit head  (1 s)"
    assert "done" not in out.getvalue() and "1/1" not in out.getvalue()


def test_an_eta_comes_from_the_phase_s_own_pace() -> None:
    clock, out = Clock(), io.StringIO()
    bars = ProgressBars(out, clock=clock)
    feed(bars, clock, [(0, "fine-tune epoch 1", 1, 6)])
    assert bars.key == "fine-tune epoch"  # numbered phases share one bar
    feed(bars, clock, [(10, "fine-tune epoch 2", 2, 6)])  # one epoch in 10 s, 4 to go
    assert bars.line.endswith("2/6  ETA 40 s")
    feed(bars, clock, [(20, "evaluate", 5, 6)])
    assert out.getvalue().splitlines()[0].startswith("fine-tune epoch")


def test_phase_key() -> None:
    assert phase_key("fine-tune epoch 12") == "fine-tune epoch" and phase_key("fit head") == "fit head"


def scores(accuracy: float, f1: float, count: int) -> Scores:
    return Scores(count=count, accuracy=accuracy, macro_f1=f1, labels=["a"])


def test_summary_has_the_verdict_the_gate_and_current_vs_candidate() -> None:
    outcome = RetrainOutcome(
        version="r3", mode=Mode.FAST, parent="bundled-v2", promoted=False, status="candidate", decisions=309,
        gate_passed=False, gate_reason="base test macro-F1 dropped by 0.042 (> 0.01)", gate_rule="base-test drop",
        current=PartScores(scores(0.214, 0.140, 70), scores(0.776, 0.766, 379)),
        candidate_metrics=PartScores(scores(0.357, 0.345, 70), scores(0.739, 0.724, 379)),
        counts={"base_train": 1769, "site_train": 309}, seconds=4.7, candidate="/data/models/r3",
        paired=None, site_share=0.8,
    )
    text = retrain_summary(outcome)
    lines = text.splitlines()
    assert lines[0] == "candidate r3 (fast retrain of bundled-v2): not promoted: kept as candidate"
    assert "  reason: base test macro-F1 dropped by 0.042 (> 0.01)" in lines
    assert "  rule: base-test drop" in lines
    row = next(line for line in lines if line.strip().startswith("held-out decisions (70) macro-F1"))
    assert row.split()[-3:] == ["0.140", "0.345", "+0.205"]
    assert any(line.strip().startswith("base test split (379) accuracy") for line in lines)
    assert "per_class" not in text and "recall" not in text  # details stay in --json
    assert "trained on base train 1769, site train 309" in text and "took 5 s" in text
