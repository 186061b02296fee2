"""What ``station retrain`` shows in a terminal: one progress bar per phase, then a short summary. No Qt.

The retraining reports events ``{"phase", "done", "total", ...}``; a phase may report its own sub-steps
with another total (e.g. the base embeddings, computed in parts). Here each phase gets one line that
counts its own events (the first only announces it), with an ETA from the phase's own pace, and is
closed with its duration when the next phase starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TextIO

BAR_WIDTH = 20
FINAL_PHASE = "done"
# Metrics worth a row in the summary, in this order; any other number both models report follows them.
PREFERRED_METRICS = ("accuracy", "macro_f1")
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

    def __call__(self, event: dict[str, Any]) -> None:
        phase = str(event.get("phase", "?"))
        key = phase_key(phase)
        now = self.clock()
        if key != self.key:
            self.finish()
            if phase == FINAL_PHASE:
                return
            self.key, self.started, self.line = key, now, f"{key} …"
            self.first = (int(event.get("done", 0)), int(event.get("total", 0)))
        else:
            done, total = int(event.get("done", 0)), int(event.get("total", 0))
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


def retrain_summary(result: dict[str, Any]) -> str:
    """The outcome of ``run_retrain`` for a person: verdict, the gate's reasons, current vs candidate.

    Generic over the outcome: every ``gate_*`` text field is shown, every part both models were
    scored on gets rows, every number both report for it (per-class detail stays in the JSON).
    """
    verdict = "promoted: now the active version" if result.get("promoted") else (
        f"not promoted: kept as {result.get('status', 'candidate')}")
    lines = [f"candidate {result.get('version', '?')} ({result.get('mode', '?')} retrain of "
             f"{result.get('parent', '?')}): {verdict}"]
    for key, value in result.items():
        if key.startswith("gate_") and not isinstance(value, bool | dict | list):
            lines.append(f"  {key.removeprefix('gate_').replace('_', ' ')}: {value}")
    rows = metric_rows(result.get("current") or {}, result.get("candidate_metrics") or {})
    if rows:
        width = max(len(name) for name, _, _ in rows)
        lines.append("")
        lines.append(f"  {'':<{width}}  {'current':>9}  {'candidate':>9}  {'change':>7}")
        for name, now, new in rows:
            lines.append(f"  {name:<{width}}  {now:>9.3f}  {new:>9.3f}  {new - now:>+7.3f}")
    counts = result.get("counts") or {}
    if counts:
        lines.append("")
        lines.append("  trained on " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    if result.get("classes_without_decisions"):
        lines.append(f"  classes without decisions: {', '.join(result['classes_without_decisions'])}")
    if result.get("skipped_missing_images"):
        lines.append(f"  decisions skipped (image file missing): {result['skipped_missing_images']}")
    if "seconds" in result:
        lines.append(f"  took {format_seconds(float(result['seconds']))}; bundle: {result.get('candidate', '?')}")
    return "\n".join(lines)


def metric_rows(
    current: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]
) -> list[tuple[str, float, float]]:
    rows = []
    for part, now in current.items():
        new = candidate.get(part) or {}
        numbers = [k for k, v in now.items() if is_number(v) and is_number(new.get(k)) and k != "count"]
        ordered = [k for k in PREFERRED_METRICS if k in numbers] + [k for k in numbers if k not in PREFERRED_METRICS]
        count = f" ({now['count']})" if is_number(now.get("count")) else ""
        for metric in ordered:
            name = METRIC_NAMES.get(metric, metric.replace("_", " "))
            label = f"{PART_NAMES.get(part, part.replace('_', ' '))}{count} {name}"
            rows.append((label, float(now[metric]), float(new[metric])))
    return rows


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
