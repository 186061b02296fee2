"""Stand-ins for the retraining child process (module-level, light: a spawned child imports them)."""

from __future__ import annotations

import os
import time
from typing import Any


def crashing_child(job: Any, events: Any, cancel: Any) -> None:
    """Starts, leaves a partial candidate folder, then dies without a word (like a segfault)."""
    events.put({"type": "progress", "phase": "fit head", "done": 1, "total": 4, "eta": None})
    (job.data_dir / "models" / ".r1.partial-x").mkdir(parents=True)
    time.sleep(0.3)
    os._exit(3)


def slow_child(job: Any, events: Any, cancel: Any) -> None:
    """Reports progress until cancelled, then says so."""
    done = 0
    while not cancel.is_set():
        done += 1
        events.put({"type": "progress", "phase": "fine-tune epoch", "done": done, "total": 1000, "eta": 99.0})
        time.sleep(0.05)
    events.put({"type": "cancelled"})


def declined_child(job: Any, events: Any, cancel: Any) -> None:
    """A quick retraining whose candidate the gate declined: the station must keep its model."""
    events.put({"type": "progress", "phase": "fit head", "done": 2, "total": 4, "eta": 1.0})
    events.put({"type": "result", "result": {
        "version": "r1", "promoted": False, "gate_rule": "site-worse", "candidate": str(job.data_dir / "models" / "r1"),
        "paired": {"count": 20, "running_correct": 12, "candidate_correct": 6},
        "gate_reason": "significantly worse", "current": {}, "candidate_metrics": {}, "counts": {},
    }})
