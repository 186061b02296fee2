"""What ``station retrain`` shows in a terminal: one progress bar per phase, then a short summary. No Qt.

The retraining reports ``RetrainProgress`` events (phase, done, total, ...); a phase may report its own sub-steps
with another total (e.g. the base embeddings, computed in parts). Here each phase gets one line that
counts its own events (the first only announces it), with an ETA from the phase's own pace, and is
closed with its duration when the next phase starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TextIO

from training.messages import FINAL_PHASE, PartScores, RetrainOutcome, RetrainProgress

BAR_WIDTH = 20
# The numbers worth a row in the summary, in this order.
SUMMARY_METRICS = ("accuracy", "macro_f1")
PART_NAMES = {"decisions": "held-out decisions", "base_test": "base test split"}
METRIC_NAMES = {"macro_f1": "macro-F1"}


def phase_key(phase: str) -> str:
    """Numbered phases (``fine-tune epoch 3``) share one bar: ``fine-tune epoch``."""
    return re.sub(r"\s*\d+$", "", phase)


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total > 0 else 0
    return "█" * min(filled, width) + "░" * (width - min(filled, width))


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class ProgressBars:
    """Feeds on retraining progress events; on a terminal a bar redraws in place, elsewhere one line per phase."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.live = stream.isatty()
        self.key: str | None = None
        self.started = 0.0
        self.first = (0, 0)  # (done, total) of the event that announced the phase
        self.line = ""

    def __call__(self, event: RetrainProgress) -> None:
        phase = event.phase
        key = phase_key(phase)
        now = self.clock()
        if key != self.key:
            self.finish()
            if phase == FINAL_PHASE:
                return
            self.key, self.started, self.line = key, now, f"{key} …"
            self.first = (event.done, event.total)
        else:
            done, total = event.done, event.total
            # Steps since the announcing event (a sub-count with its own total starts from 0).
            steps = done - self.first[0] if total == self.first[1] else done
            self.line = self.render(key, done, total, steps, now - self.started)
        if self.live:
            self.stream.write("\r\033[K" + self.line)
            self.stream.flush()

    @staticmethod
    def render(key: str, done: int, total: int, steps: int, elapsed: float) -> str:
        eta = elapsed / steps * (total - done) if steps > 0 and done < total else None
        tail = f"ETA {format_seconds(eta)}" if eta is not None else format_seconds(elapsed)
        return f"{key:<18} {bar(done, total)} {done}/{total}  {tail}"

    def finish(self) -> None:
        """Close the current phase's line with its duration."""
        if self.key is None:
            return
        took = format_seconds(self.clock() - self.started)
        line = self.line if self.line.endswith(took) else f"{self.line.removesuffix(' …')}  ({took})"
        self.stream.write(("\r\033[K" if self.live else "") + line + "\n")
        self.stream.flush()
        self.key = None


def retrain_summary(outcome: RetrainOutcome) -> str:
    """The outcome of ``run_retrain`` for a person: verdict, the gate's reasons, current vs candidate
    (per-class detail stays in the JSON)."""
    verdict = "promoted: now the active version" if outcome.promoted else f"not promoted: kept as {outcome.status}"
    lines = [f"candidate {outcome.version} ({outcome.mode} retrain of {outcome.parent}): {verdict}",
             f"  rule: {outcome.gate_rule}", f"  reason: {outcome.gate_reason}"]
    rows = metric_rows(outcome.current, outcome.candidate_metrics)
    width = max(len(name) for name, _, _ in rows)
    lines.append("")
    lines.append(f"  {'':<{width}}  {'current':>9}  {'candidate':>9}  {'change':>7}")
    for name, now, new in rows:
        lines.append(f"  {name:<{width}}  {now:>9.3f}  {new:>9.3f}  {new - now:>+7.3f}")
    if outcome.counts:
        lines.append("")
        lines.append("  trained on " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in outcome.counts.items()))
    if outcome.classes_without_decisions:
        lines.append(f"  classes without decisions: {', '.join(outcome.classes_without_decisions)}")
    if outcome.skipped_missing_images:
        lines.append(f"  decisions skipped (image file missing): {outcome.skipped_missing_images}")
    lines.append(f"  took {format_seconds(outcome.seconds)}; bundle: {outcome.candidate}")
    return "\n".join(lines)


def metric_rows(current: PartScores, candidate: PartScores) -> list[tuple[str, float, float]]:
    rows = []
    for (part, now), (_, new) in zip(current.parts(), candidate.parts(), strict=True):
        for metric in SUMMARY_METRICS:
            name = METRIC_NAMES.get(metric, metric)
            label = f"{PART_NAMES.get(part, part.replace('_', ' '))} ({now.count}) {name}"
            rows.append((label, float(getattr(now, metric)), float(getattr(new, metric))))
    return rows
