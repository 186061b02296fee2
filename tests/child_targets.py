"""Stand-ins for the retraining child process (module-level, light: a spawned child imports them)."""

from __future__ import annotations

import os
import time
from typing import Any

from tests.fixture_outcomes import outcome, paired
from training.messages import RetrainProgress, RetrainStopped


def crashing_child(job: Any, events: Any, cancel: Any) -> None:
    """Starts, leaves a partial candidate folder, then dies without a word (like a segfault)."""
    events.put(RetrainProgress("fit head", 1, 4))
    (job.data_dir / "models" / ".r1.partial-x").mkdir(parents=True)
    time.sleep(0.3)
    os._exit(3)


def slow_child(job: Any, events: Any, cancel: Any) -> None:
    """Reports progress until cancelled, then says so."""
    done = 0
    while not cancel.is_set():
        done += 1
        events.put(RetrainProgress("fine-tune epoch", done, 1000, eta=99.0))
        time.sleep(0.05)
    events.put(RetrainStopped())


def declined_child(job: Any, events: Any, cancel: Any) -> None:
    """A quick retraining whose candidate the gate declined: the station must keep its model."""
    events.put(RetrainProgress("fit head", 2, 4, eta=1.0))
    events.put(outcome(job.data_dir / "models" / "r1", "r1", promoted=False, gate_rule="site-worse",
                       gate_reason="significantly worse", paired=paired(20, 12, 6)))
