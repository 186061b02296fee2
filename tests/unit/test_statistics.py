"""Statistics against numbers worked out by hand from tests/fixture_decisions.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from station.statistics import StatsFilter, compute_statistics, covered_decisions
from station.storage import NewDecision, Storage
from tests import fixture_decisions as fx


@pytest.fixture
def storage(tmp_path: Path):
    fx.fill(tmp_path / "data")
    with Storage(tmp_path / "data") as store:
        yield store


def stats_for(storage: Storage, wanted: StatsFilter | None = None, labels=("a", "b", "c")):
    return compute_statistics(covered_decisions(storage, wanted or StatsFilter()), labels, fx.NOW)


def test_counts_agreement_and_confusion(storage: Storage) -> None:
    stats = stats_for(storage)
    assert stats.labels == ("a", "b", "c")
    assert (stats.overall, stats.agreed, stats.today, stats.imported) == (7, 5, 3, 1)
    assert stats.agreement == pytest.approx(5 / 7)
    # rows: operator label, columns: prediction
    np.testing.assert_array_equal(stats.confusion, [[2, 0, 1], [1, 2, 0], [0, 0, 1]])
    by_name = {c.name: c for c in stats.classes}
    assert [(c.today, c.overall, c.agreed) for c in stats.classes] == [(1, 3, 2), (1, 3, 2), (1, 1, 1)]
    assert by_name["a"].agreement == pytest.approx(2 / 3)
    assert by_name["c"].agreement == 1.0


def test_timeline_per_hour_with_version_marks(storage: Storage) -> None:
    stats = stats_for(storage)
    assert stats.bucket == "hour"  # the decisions span less than two days
    local = [(b.start.replace(tzinfo=None), b.decisions, b.agreed) for b in stats.timeline]
    assert local == [
        (datetime(2026, 3, 2, 10), 2, 1),
        (datetime(2026, 3, 2, 11), 2, 1),
        (datetime(2026, 3, 3, 9), 3, 3),
    ]
    assert [(m.version, m.first_decision.replace(tzinfo=None)) for m in stats.marks] == [
        ("v1", datetime(2026, 3, 2, 10, 5)),
        ("r1", datetime(2026, 3, 3, 9, 0)),
    ]


def test_filter_by_version_and_by_dates(storage: Storage) -> None:
    retrained = stats_for(storage, StatsFilter(model_version="r1"))
    assert (retrained.overall, retrained.agreed, retrained.imported) == (3, 3, 0)
    day1 = stats_for(storage, StatsFilter(since=fx.DAY1, until=fx.DAY1))
    assert (day1.overall, day1.agreed, day1.today, day1.imported) == (4, 2, 0, 0)
    np.testing.assert_array_equal(day1.confusion, [[1, 0, 1], [1, 1, 0], [0, 0, 0]])
    day2 = stats_for(storage, StatsFilter(since=fx.DAY2))
    assert (day2.overall, day2.agreed, day2.imported) == (3, 3, 1)
    nothing = stats_for(storage, StatsFilter(until=fx.DAY1 - timedelta(days=1)))
    assert (nothing.overall, nothing.agreement, nothing.timeline, nothing.marks) == (0, None, (), ())
    assert all(c.agreement is None for c in nothing.classes)


def test_filter_by_station(storage: Storage, tmp_path: Path) -> None:
    with Storage(tmp_path / "data", station="line-2") as other:  # a second station on the same database
        other.save(NewDecision(
            image=fx.image(60), predicted_label="a", confidence=0.6, probabilities={}, operator_label="c",
            model_version="r1", created_at=datetime(2026, 3, 3, 10, 0)))
    everywhere = stats_for(storage)
    assert (everywhere.overall, everywhere.agreed) == (8, 5)
    fixture = stats_for(storage, StatsFilter(station="fixture"))  # fx.fill's station: the hand-worked numbers
    assert (fixture.overall, fixture.agreed, fixture.today, fixture.imported) == (7, 5, 3, 1)
    line2 = stats_for(storage, StatsFilter(station="line-2"))
    assert (line2.overall, line2.agreed, line2.today, line2.imported) == (1, 0, 1, 0)
    np.testing.assert_array_equal(line2.confusion, [[0, 0, 0], [0, 0, 0], [1, 0, 0]])
    assert (stats_for(storage, StatsFilter(model_version="v1", station="line-2")).overall) == 0


def test_long_ranges_are_plotted_per_day_and_unknown_labels_are_kept(storage: Storage) -> None:
    storage.save(NewDecision(
        image=fx.image(50), predicted_label="a", confidence=0.6, probabilities={}, operator_label="old-class",
        model_version="v0", created_at=datetime(2026, 2, 20, 15, 30)))
    stats = stats_for(storage)
    assert stats.bucket == "day"
    assert [(b.start.replace(tzinfo=None), b.decisions) for b in stats.timeline] == [
        (datetime(2026, 2, 20), 1), (datetime(2026, 3, 2), 4), (datetime(2026, 3, 3), 3)]
    assert stats.labels == ("a", "b", "c", "old-class")  # a label the current model lacks is shown, not dropped
    assert stats.confusion[3, 0] == 1 and stats.confusion.sum() == 8
    assert [m.version for m in stats.marks] == ["v0", "v1", "r1"]


def test_review_queue_is_least_confident_first_without_imports(storage: Storage) -> None:
    queue = storage.review_queue()
    assert [r.confidence for r in queue] == sorted(c for *_, c in fx.ROWS)
    assert all(r.predicted_label is not None for r in queue)
    assert len(storage.review_queue(limit=2)) == 2
