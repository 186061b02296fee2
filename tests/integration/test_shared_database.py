"""Several station processes on one PostgreSQL database: nothing lost or stored twice while they write at once,
or while the server restarts under them."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import URL

from station.storage import Storage, StorageError, is_transient
from tests.pg import Cluster
from tests.storage_children import write_decisions

SPAWN = multiprocessing.get_context("spawn")  # never fork a process with threads (DESIGN principle 5)


def start_stations(url: str, data_dir: Path, counts: dict[str, int]) -> tuple[list, object]:
    """One process per station, each with its database open, all released together."""
    go = SPAWN.Event()
    ready = {name: SPAWN.Event() for name in counts}
    processes = [SPAWN.Process(target=write_decisions, args=(url, data_dir, name, n, ready[name], go), name=name)
                 for name, n in counts.items()]
    for process in processes:
        process.start()
    for name, event in ready.items():
        assert event.wait(60), f"station {name} did not open the database"
    go.set()
    return processes, go


def join_all(processes: list, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    alive = [p.name for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not alive, f"still writing after {timeout_s} s: {alive}"
    assert [p.exitcode for p in processes] == [0] * len(processes)


def assert_complete(storage: Storage, counts: dict[str, int]) -> None:
    """Every decision once, each image present under a name of its own and matching its sha256."""
    records = storage.decisions()
    assert Counter(r.station for r in records) == counts
    assert len({r.image_path for r in records}) == len(records) == len({r.id for r in records})
    for record in records:
        image = storage.image_file(record)
        assert hashlib.sha256(image.read_bytes()).hexdigest() == record.sha256, record.image_path
    assert len(list((storage.data_dir / "images").rglob("*.png"))) == len(records)  # no orphan either


def url_text(pg_url: URL) -> str:
    return pg_url.render_as_string(hide_password=False)


def test_two_stations_writing_a_thousand_decisions_each(tmp_path: Path, pg_url: URL) -> None:
    counts = {"line-1": 1000, "line-2": 1000}
    Storage(tmp_path, database_url=url_text(pg_url)).close()  # the schema, as the first station's start-up does
    processes, _ = start_stations(url_text(pg_url), tmp_path, counts)
    join_all(processes, 600)
    with Storage(tmp_path, database_url=url_text(pg_url)) as storage:
        assert_complete(storage, counts)


def count_when_up(storage: Storage) -> int:
    try:
        return storage.count()
    except StorageError as exc:
        assert is_transient(exc)
        return -1


def test_a_server_restart_while_stations_write_loses_nothing(
    tmp_path: Path, pg_url: URL, pg_cluster: Cluster
) -> None:
    counts = {"line-1": 300, "line-2": 300}
    with Storage(tmp_path, database_url=url_text(pg_url)) as storage:
        processes, _ = start_stations(url_text(pg_url), tmp_path, counts)
        deadline = time.monotonic() + 120
        while count_when_up(storage) < 100:  # well under way
            assert time.monotonic() < deadline, "the stations did not start writing"
            time.sleep(0.05)
        before = count_when_up(storage)
        pg_cluster.stop()
        assert before < sum(counts.values()), "the server must stop while the stations still write"
        time.sleep(1.0)  # the stations fail and retry meanwhile
        pg_cluster.start()
        join_all(processes, 600)
        assert_complete(storage, counts)


def test_a_promotion_by_another_process_reaches_a_polling_station(tmp_path: Path, pg_url: URL) -> None:
    from station.model_watch import ModelWatcher
    from tests.storage_children import promote_version

    with Storage(tmp_path, "line-1", database_url=url_text(pg_url)) as station:
        station.add_version("base", tmp_path / "models" / "base", "bundled", status="active")
        watcher = ModelWatcher("base")
        trainer = SPAWN.Process(target=promote_version, args=(url_text(pg_url), tmp_path, "r1", "base"))
        trainer.start()
        join_all([trainer], 120)
        deadline = time.monotonic() + 10  # a few polls
        found = None
        while found is None and time.monotonic() < deadline:
            found = watcher.seen(watcher.generation, station.active_version())
            time.sleep(0.2)
        assert found is not None and found.version == "r1" and station.version_path(found) == tmp_path / "models/r1"
