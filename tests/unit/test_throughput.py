"""Throughput per hour (items per minute, auto share, touches per item, median settle-to-decision), and auto
decisions kept out of the model/operator agreement."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from station.statistics import compute_statistics
from station.storage import DecisionRecord

START = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc).astimezone()  # a local hour's start


def record(n: int, minute: float, kind: str, settle_ms: float | None = None, touches: int | None = None,
           label: str = "a", predicted: str = "a") -> DecisionRecord:
    return DecisionRecord(
        id=n, image_path=f"{n}.png", sha256="0" * 64, predicted_label=predicted, confidence=0.9, probabilities={},
        operator_label=label, kind=kind, model_version="m1", embedding=None,
        created_at=(START + timedelta(minutes=minute)).astimezone(timezone.utc), station="s", holdout=False,
        item_id=f"i{n}", settle_ms=settle_ms, touches=touches)


def test_throughput_by_hour() -> None:
    first_hour = [
        record(1, 0.0, "auto", 120.0, 0),
        record(2, 0.5, "auto", 180.0, 0),
        record(3, 1.0, "corrected", 2400.0, 1, label="b"),
        record(4, 1.5, "confirmed", 900.0, 2),  # held (Esc), then confirmed
        record(5, 2.0, "confirmed"),  # manual mode: no item, one key press
    ]
    second_hour = [record(6, 75.0, "auto", 150.0, 0)]
    stats = compute_statistics([*first_hour, *second_hour], ["a", "b"])
    one, two = stats.throughput
    assert one.start == START and one.items == 5
    assert one.items_per_minute == 2.0  # 4 intervals in 2 minutes
    assert one.auto_share == 0.4 and one.touches_per_item == (0 + 0 + 1 + 2 + 1) / 5
    assert one.median_settle_ms == 540.0  # of 120, 180, 900, 2400
    assert two.start == START + timedelta(hours=1) and two.items == 1 and two.items_per_minute is None
    assert two.auto_share == 1.0 and two.touches_per_item == 0.0 and two.median_settle_ms == 150.0
    # Nobody judged the auto ones: agreement is over the 2 confirmed and 1 corrected decisions only.
    assert stats.auto == 3 and stats.overall == 3 and stats.agreed == 2
