"""Station processes for the shared-database tests (module-level and light: a spawned child imports them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from station.storage import NewDecision, Storage, StorageError, is_transient

LABELS = ("glass", "metal", "paper")
GIVE_UP_S = 60.0  # a server that stays away longer fails the test rather than hanging it


def decision(station: str, n: int) -> NewDecision:
    """Decision ``n`` of ``station``: a small frame unique to both, every third one corrected."""
    seed = abs(hash((station, n))) % 2**32
    image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    predicted = LABELS[n % 3]
    operator = LABELS[(n + 1) % 3] if n % 3 == 0 else predicted
    return NewDecision(image=image, predicted_label=predicted, confidence=0.8,
                       probabilities={predicted: 0.8}, operator_label=operator, model_version="base")


def save_retrying(storage: Storage, new: NewDecision) -> None:
    """Save as the storage worker does: a passing failure (server restarting, lock timeout) is retried."""
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            storage.save(new)
            return
        except StorageError as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def write_decisions(database_url: str, data_dir: Path, station: str, count: int, ready: Any, go: Any) -> None:
    """Open the shared database as ``station``, wait for ``go``, then save ``count`` decisions."""
    with Storage(data_dir, station, database_url=database_url, busy_timeout_ms=10_000) as storage:
        ready.set()
        go.wait()
        for n in range(count):
            save_retrying(storage, decision(station, n))


def promote_version(database_url: str, data_dir: Path, version: str, parent: str) -> None:
    """What a retraining elsewhere does once its candidate passed the gate: register it as the active version."""
    with Storage(data_dir, "trainer", database_url=database_url) as storage:
        storage.add_version(version, data_dir / "models" / version, "fast", parent=parent, status="active")
