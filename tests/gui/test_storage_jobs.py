"""The storage worker's one job API: ``submit(fn, done, refresh=, write=)``, its retry policy and its stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import URL

from station import storage_jobs as jobs
from station.storage import DB_NAME, DecisionRecord, NewDecision, Storage, VersionRecord
from station.workers import StorageWorker

WAIT_MS = 30_000


@pytest.fixture
def worker(qtbot, tmp_path: Path) -> Iterator[StorageWorker]:
    """A running storage worker on an empty data folder, its first history read already delivered."""
    made = StorageWorker(tmp_path / "data", "test-station")
    made.BACKOFF = (0.01, 0.02, 0.04)  # the policy, quicker
    with qtbot.waitSignal(made.history_changed, timeout=WAIT_MS):
        made.start()
    yield made
    assert made.stop(), "the storage thread is still running after the test"


def decision(value: int = 7) -> NewDecision:
    return NewDecision(np.full((24, 32, 3), value, np.uint8), "a", 0.9, {"a": 0.9, "b": 0.1}, "b", "tiny-v1")


def flaky(failures: int, result: object) -> tuple[list[int], object]:
    """A job that fails ``failures`` times with a passing error (a full disk), then returns ``result``."""
    calls: list[int] = []

    def job(storage: Storage) -> object:
        calls.append(threading.get_ident())
        if len(calls) <= failures:
            raise OSError(28, "No space left on device")
        return result

    return calls, job


def test_a_job_runs_in_the_storage_thread_and_its_result_reaches_done_on_the_gui_thread(qtbot, worker) -> None:
    ran_in: list[int] = []
    delivered: list[tuple[int, object]] = []

    def fn(storage: Storage) -> str:
        ran_in.append(threading.get_ident())
        return storage.station

    worker.submit(fn, lambda result: delivered.append((threading.get_ident(), result)), write=False)
    qtbot.waitUntil(lambda: delivered != [], timeout=WAIT_MS)
    assert delivered == [(threading.get_ident(), "test-station")]
    assert ran_in and ran_in[0] != threading.get_ident()


def test_a_failing_write_is_retried_with_backoff_and_done_gets_its_result_once(qtbot, worker) -> None:
    retrying: list[str] = []
    recovered: list[bool] = []
    worker.storage_retrying.connect(retrying.append)
    worker.storage_recovered.connect(lambda: recovered.append(True))
    calls, job = flaky(2, "written")
    delivered: list[object] = []
    with qtbot.waitSignal(worker.storage_recovered, timeout=WAIT_MS):
        worker.submit(job, delivered.append)
    qtbot.waitUntil(lambda: delivered != [] and worker.pending == 0, timeout=WAIT_MS)
    assert delivered == ["written"] and len(calls) == 3
    qtbot.waitUntil(lambda: len(retrying) == 2 and recovered == [True], timeout=WAIT_MS)
    assert [m.endswith(f"retrying in {delay:g} s") for m, delay in zip(retrying, (0.01, 0.02), strict=True)] == [
        True, True]  # each wait longer than the last


def test_refresh_reads_the_history_again_after_the_job(qtbot, worker) -> None:
    histories: list[tuple[list[int], int]] = []
    worker.history_changed.connect(lambda entries, today: histories.append(([e.record.id for e in entries], today)))
    saved: list[object] = []
    with qtbot.waitSignal(worker.history_changed, timeout=WAIT_MS):
        worker.submit(jobs.save(decision(), worker.thumbnails), saved.append, refresh=True)
    qtbot.waitUntil(lambda: histories != [], timeout=WAIT_MS)
    [record] = saved
    assert histories == [([record.id], 1)]
    relabelled: list[object] = []
    worker.submit(jobs.relabel(record.id, "a"), relabelled.append)  # no refresh asked: the history stays
    qtbot.waitUntil(lambda: relabelled != [], timeout=WAIT_MS)
    qtbot.wait(100)
    assert len(histories) == 1


def test_a_read_is_not_counted_as_pending_a_write_is(qtbot, worker) -> None:
    release = threading.Event()
    order: list[str] = []
    worker.submit(lambda storage: release.wait(WAIT_MS / 1000), lambda _: order.append("read"), write=False)
    assert worker.pending == 0
    worker.submit(lambda storage: "w", lambda _: order.append("write"))
    assert worker.pending == 1  # behind the read, still to do
    release.set()
    qtbot.waitUntil(lambda: order == ["read", "write"] and worker.pending == 0, timeout=WAIT_MS)


def test_a_job_that_finds_nothing_to_do_is_said_not_retried(qtbot, worker) -> None:
    failed: list[str] = []
    worker.storage_failed.connect(failed.append)
    removed: list[object] = []
    worker.submit(jobs.undo_last(worker.thumbnails), removed.append, refresh=True)
    qtbot.waitUntil(lambda: failed == ["nothing to undo"] and worker.pending == 0, timeout=WAIT_MS)
    assert removed == []


def test_stopping_during_a_retry_wait_ends_at_once(qtbot, tmp_path: Path) -> None:
    worker = StorageWorker(tmp_path / "data", "test-station")
    worker.BACKOFF = (60.0,)  # a wait nobody would sit out
    failed: list[str] = []
    worker.storage_failed.connect(failed.append)
    calls, job = flaky(1_000, "never")
    delivered: list[object] = []
    worker.submit(job, delivered.append)
    with qtbot.waitSignal(worker.storage_retrying, timeout=WAIT_MS):
        worker.start()
    started = time.monotonic()
    assert worker.stop(10_000)
    assert time.monotonic() - started < 5.0  # not the 60 s wait
    qtbot.waitUntil(lambda: any("giving up at shutdown" in m for m in failed), timeout=WAIT_MS)
    assert delivered == [] and worker.pending == 0 and len(calls) == 2  # one more try, without waiting


def test_a_restarted_worker_takes_over_the_jobs_a_stopped_one_never_ran(qtbot, tmp_path: Path) -> None:
    dead = StorageWorker(tmp_path / "data", "test-station")  # never started: as if it had stopped on an error
    delivered: list[object] = []
    dead.submit(jobs.save(decision(1), dead.thumbnails), delivered.append, refresh=True)
    dead.submit(lambda storage: "read", delivered.append, write=False)
    assert dead.pending == 1
    worker = StorageWorker(dead.data_dir, dead.station)
    worker.adopt(dead)
    assert (dead.pending, worker.pending) == (0, 1)
    assert worker.thumbnails is dead.thumbnails  # the adopted save fills the cache the new history reads
    worker.start()
    try:
        qtbot.waitUntil(lambda: len(delivered) == 2 and worker.pending == 0, timeout=WAIT_MS)
        assert delivered[0].operator_label == "b" and delivered[1] == "read"  # in the order submitted
    finally:
        assert worker.stop()


def test_the_jobs_of_a_station_on_a_shared_postgresql_database(qtbot, tmp_path: Path, pg_url: URL) -> None:
    """``database_url`` reaches the storage thread: a save lands in the server's database, and the active-version
    poll (``jobs.active_version``) reads what another station made active there."""
    url = pg_url.render_as_string(hide_password=False)
    with Storage(tmp_path / "data", "elsewhere", database_url=url) as elsewhere:
        elsewhere.add_version("r1", tmp_path / "data" / "models" / "r1", "fast", status="active")
    worker = StorageWorker(tmp_path / "data", "line-1", database_url=url)
    saved: list[DecisionRecord] = []
    active: list[VersionRecord | None] = []
    asked = threading.Event()
    asked.set()  # as a poll does before it submits the question
    with qtbot.waitSignal(worker.history_changed, timeout=WAIT_MS):
        worker.start()
    try:
        worker.submit(jobs.save(decision(), worker.thumbnails), saved.append, refresh=True)
        worker.submit(jobs.active_version(asked), active.append, write=False)
        qtbot.waitUntil(lambda: saved != [] and active != [], timeout=WAIT_MS)
    finally:
        assert worker.stop()
    assert [a.version if a else None for a in active] == ["r1"]
    assert not asked.is_set()  # the question was taken: the next poll may ask again
    assert not (tmp_path / "data" / DB_NAME).exists()  # no station.db beside a server database
    with Storage(tmp_path / "data", "elsewhere", database_url=url) as elsewhere:
        assert [(r.id, r.station) for r in elsewhere.recent()] == [(saved[0].id, "line-1")]
