"""A small decision history whose statistics are worked out by hand in the tests that use it.

Labels a, b, c (the tiny test model's). Local times, two days, two model versions, one import:

    day 1 (v1)  10:05 a->a  10:20 a->b  11:10 b->b  11:40 c->a      (prediction -> operator label)
    day 2 (r1)  09:00 a->a  09:30 b->b  09:45 c->c   + 08:00 an imported c (no prediction)
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np

from station.storage import IMPORTED, NewDecision, Storage

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
NOW = datetime(2026, 3, 3, 12, 0)  # "today" is day 2

# (day, hour, minute, prediction, operator label, model version, confidence)
ROWS = [
    (DAY1, 10, 5, "a", "a", "v1", 0.91),
    (DAY1, 10, 20, "a", "b", "v1", 0.42),
    (DAY1, 11, 10, "b", "b", "v1", 0.77),
    (DAY1, 11, 40, "c", "a", "v1", 0.35),
    (DAY2, 9, 0, "a", "a", "r1", 0.88),
    (DAY2, 9, 30, "b", "b", "r1", 0.55),
    (DAY2, 9, 45, "c", "c", "r1", 0.97),
]


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def fill(data_dir: Path) -> None:
    with Storage(data_dir, station="fixture") as storage:
        for seed, (day, hour, minute, predicted, label, version, confidence) in enumerate(ROWS):
            others = (1 - confidence) / 2
            storage.save(NewDecision(
                image=image(seed), predicted_label=predicted, confidence=confidence,
                probabilities={n: confidence if n == predicted else others for n in "abc"},
                operator_label=label, model_version=version,
                created_at=datetime(day.year, day.month, day.day, hour, minute)))
        storage.save(NewDecision(
            image=image(99), predicted_label=None, confidence=None, probabilities={}, operator_label="c",
            kind=IMPORTED, created_at=datetime(DAY2.year, DAY2.month, DAY2.day, 8, 0)))
