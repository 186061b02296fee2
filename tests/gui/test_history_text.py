"""What a history row says about each kind of decision."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from station.storage import DecisionKind, DecisionRecord
from station.ui.history_panel import describe


def record(kind: DecisionKind, predicted: str | None, operator: str) -> DecisionRecord:
    return DecisionRecord(
        id=7, image_path="images/x.png", sha256="0" * 64, predicted_label=predicted, confidence=0.9,
        probabilities={}, operator_label=operator, kind=kind, model_version="r1", embedding=None,
        created_at=datetime(2026, 1, 1, 12, tzinfo=timezone.utc), station="line", holdout=False,
    )


@pytest.mark.parametrize(("kind", "predicted", "operator", "first_line"), [
    (DecisionKind.CONFIRMED, "glass", "glass", "✔ glass"),
    (DecisionKind.CORRECTED, "glass", "metal", "✎ metal   (model: glass)"),
    (DecisionKind.AUTO, "glass", "glass", "⚙ glass   (auto)"),  # the station's own, not a correction
    (DecisionKind.IMPORTED, None, "paper", "paper (imported)"),
])
def test_each_kind_reads_as_itself(kind: DecisionKind, predicted: str | None, operator: str, first_line: str) -> None:
    text = describe(record(kind, predicted, operator))
    assert text.splitlines()[0] == first_line and "#7" in text and "90%" in text
