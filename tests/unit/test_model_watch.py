"""ModelWatcher: a version promoted elsewhere is loaded once; stale answers and failed versions are not."""

from __future__ import annotations

from datetime import datetime, timezone

from station.model_watch import ModelWatcher
from station.storage import VersionRecord


def version(name: str, status: str = "active") -> VersionRecord:
    return VersionRecord(version=name, parent=None, path=f"models/{name}", created_at=datetime.now(timezone.utc),
                         mode="fast", counts={}, metrics={}, status=status)


def test_a_newly_active_version_is_loaded_once() -> None:
    watcher = ModelWatcher("base")
    assert watcher.seen(watcher.generation, version("base")) is None  # what runs already
    assert watcher.seen(watcher.generation, None) is None  # nothing active (a new database)
    assert watcher.seen(watcher.generation, version("r1")).version == "r1"  # type: ignore[union-attr]
    assert watcher.seen(watcher.generation, version("r1")) is None  # loading: not asked for again
    watcher.now_running("r1")
    assert watcher.seen(watcher.generation, version("r1")) is None


def test_a_version_that_failed_to_load_is_not_retried_but_a_newer_one_is() -> None:
    watcher = ModelWatcher("base")
    assert watcher.seen(watcher.generation, version("r1")) is not None
    # ... its load failed: the station keeps "base" and said why
    assert watcher.seen(watcher.generation, version("r1")) is None
    assert watcher.seen(watcher.generation, version("r2")).version == "r2"  # type: ignore[union-attr]


def test_answers_read_before_a_local_change_are_ignored() -> None:
    watcher = ModelWatcher("r2")
    asked = watcher.generation
    watcher.loading("r1")  # the operator goes back to r1 here; its activation is queued behind the question
    watcher.now_running("r1")
    assert watcher.seen(asked, version("r2")) is None  # read before the activation: stale, not a promotion
    assert watcher.seen(watcher.generation, version("r1")) is None
