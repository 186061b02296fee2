from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy.exc
from PIL import Image
from sqlalchemy import event

from station.storage import (
    SCHEMA_VERSION,
    Decision,
    DecisionKind,
    NewDecision,
    Storage,
    StorageError,
    VersionStatus,
    is_holdout,
    is_transient,
    open_engine,
    queries,
    repository,
    schema,
)
from tests.unit.conftest import BACKENDS, backend_url

OpenStore = Callable[..., Storage]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    return backend_url(request)


LABELS = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


def frame(seed: int = 0, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def new(seed: int = 0, predicted: str | None = "glass", operator: str = "glass", **kw: object) -> NewDecision:
    probs = {label: 1.0 / len(LABELS) for label in LABELS}
    fields: dict[str, object] = {
        "image": frame(seed),
        "predicted_label": predicted,
        "confidence": 0.9 if predicted else None,
        "probabilities": probs,
        "operator_label": operator,
        "model_version": "v1",
    }
    fields.update(kw)
    return NewDecision(**fields)  # type: ignore[arg-type]


def pngs(root: Path) -> list[Path]:
    return sorted((root / "images").rglob("*.png"))


def leftovers(root: Path) -> list[Path]:
    return [p for p in (root / "images").rglob("*") if p.is_file() and not p.name.endswith(".png")]


# ---------------------------------------------------------------------------------------------- engine


@pytest.mark.sqlite_only("the pragmas are SQLite's (PostgreSQL: test_storage_server.py)")
def test_pragmas_set_on_every_new_connection(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir, busy_timeout_ms=1234) as s, s.engine.connect() as c1, s.engine.connect() as c2:
        for conn in (c1, c2):  # two live connections at once = two distinct DBAPI connections
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234


def test_open_engine_default_busy_timeout(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "x.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- save


def test_save_writes_exact_png_matching_row(store: Storage, data_dir: Path) -> None:
    image = frame(7, h=31, w=17)  # odd sizes catch stride/transposition bugs
    rec = store.save(new(image=image))

    path = store.image_file(rec)
    assert path == data_dir / rec.image_path
    assert not Path(rec.image_path).is_absolute() and "\\" not in rec.image_path
    assert rec.image_path.startswith("images/") and rec.image_path.endswith(".png")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.sha256
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), image)
    assert leftovers(data_dir) == []  # no temp files left behind

    again = store.get(rec.id)
    assert again is not None
    assert (again.sha256, again.image_path, again.operator_label) == (rec.sha256, rec.image_path, "glass")
    assert again.probabilities == pytest.approx({label: 1 / 6 for label in LABELS})
    assert again.station == "st-test" and again.model_version == "v1" and again.confidence == pytest.approx(0.9)
    assert again.created_at.tzinfo is not None and again.created_at.utcoffset() == timedelta(0)
    assert abs(again.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert again.created_at == rec.created_at


@pytest.mark.skipif(os.name != "posix", reason="folders are synced on POSIX only")
def test_image_and_its_folders_are_on_disk_before_the_row(
    store: Storage, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []  # inodes, in order
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    committed_after: list[int] = []
    event.listen(store._sessions, "after_commit", lambda s: committed_after.append(len(synced)))
    path = store.image_file(store.save(new()))
    day = path.parent
    # Each new folder's parent, outermost first (images/, and images/<station>/ beside a shared database), then
    # the file, then the day folder that holds its entry.
    parents = [folder for folder in reversed(day.parents) if folder.is_relative_to(data_dir / "images")]
    assert synced == [folder.stat().st_ino for folder in parents] + [path.stat().st_ino, day.stat().st_ino]
    assert committed_after == [len(synced)]


def test_save_accepts_numpy_scalars_and_station_override(store: Storage) -> None:
    rec = store.save(
        new(confidence=np.float32(0.75), probabilities={"glass": np.float32(0.75)}, station="other", seed=1)
    )
    got = store.get(rec.id)
    assert got is not None and got.confidence == pytest.approx(0.75) and got.probabilities == {"glass": 0.75}
    assert got.station == "other"


def test_save_rejects_bad_input_without_writing(store: Storage, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="operator_label"):
        store.save(new(operator=""))
    with pytest.raises(ValueError, match="operator_label"):
        store.save(new(operator="   "))
    with pytest.raises(ValueError, match="HxWx3"):
        store.save(new(image=np.zeros((8, 8), dtype=np.uint8)))
    with pytest.raises(ValueError, match="HxWx3"):
        store.save(new(image=np.zeros((8, 8, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="kind"):
        store.save(new(kind="guessed"))
    assert store.count() == 0 and pngs(data_dir) == []


def test_kind_confirmed_corrected_imported(store: Storage) -> None:
    assert store.save(new(predicted="glass", operator="glass")).kind == "confirmed"
    assert store.save(new(predicted="glass", operator="metal", seed=1)).kind == "corrected"
    imported = store.save(new(predicted=None, operator="paper", kind="imported", seed=2))
    assert imported.kind == "imported" and imported.predicted_label is None and imported.confidence is None
    assert store.count() == 3
    assert store.count(kind="corrected") == 1


def test_embedding_round_trip(store: Storage) -> None:
    emb = np.random.default_rng(3).standard_normal(1408).astype(np.float32)
    rec = store.save(new(embedding=emb))
    got = store.get(rec.id)
    assert got is not None and got.embedding is not None
    assert got.embedding.dtype == np.float32 and got.embedding.shape == (1408,)
    np.testing.assert_array_equal(got.embedding, emb)
    got.embedding[0] = 1.0  # decoded arrays are writable copies, not views on DB bytes

    no_emb = store.save(new(seed=1))
    assert no_emb.embedding is None and store.get(no_emb.id).embedding is None  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- delete / undo / relabel


def test_undo_last_removes_newest_row_and_file(store: Storage, data_dir: Path) -> None:
    first = store.save(new(seed=1))
    second = store.save(new(seed=2))
    undone = store.undo_last()
    assert undone is not None and undone.id == second.id
    assert store.get(second.id) is None and not store.image_file(second).exists()
    assert store.image_file(first).exists() and store.count() == 1
    assert store.undo_last().id == first.id  # type: ignore[union-attr]
    assert store.undo_last() is None
    assert pngs(data_dir) == []


def test_undo_last_filters_by_station(store: Storage) -> None:
    mine = store.save(new(seed=1))
    store.save(new(seed=2, station="other"))
    undone = store.undo_last(station="st-test")
    assert undone is not None and undone.id == mine.id
    assert [r.station for r in store.all_decisions()] == ["other"]
    assert store.undo_last(station="st-test") is None


def test_ids_are_not_reused_after_undo(store: Storage) -> None:
    first = store.save(new(seed=1))
    store.undo_last()
    assert store.save(new(seed=2)).id > first.id  # a stale id in the UI can never hit a newer decision


def test_delete(store: Storage) -> None:
    keep = store.save(new(seed=1))
    gone = store.save(new(seed=2))
    deleted = store.delete(gone.id)
    assert deleted is not None and deleted.id == gone.id
    assert store.get(gone.id) is None and not store.image_file(gone).exists()
    assert store.get(keep.id) is not None and store.image_file(keep).exists()
    assert store.delete(gone.id) is None


def test_relabel_recomputes_kind(store: Storage) -> None:
    rec = store.save(new(predicted="glass", operator="glass"))
    changed = store.relabel(rec.id, "plastic")
    assert (changed.operator_label, changed.kind) == ("plastic", "corrected")
    assert store.get(rec.id).kind == "corrected"  # type: ignore[union-attr]
    back = store.relabel(rec.id, "glass")
    assert (back.operator_label, back.kind) == ("glass", "confirmed")

    imported = store.save(new(predicted=None, operator="paper", kind="imported", seed=1))
    assert store.relabel(imported.id, "cardboard").kind == "imported"

    with pytest.raises(ValueError):
        store.relabel(rec.id, "")
    with pytest.raises(StorageError, match="no longer exists"):
        store.relabel(9999, "glass")


# ---------------------------------------------------------------------------------------------- queries


def test_recent_newest_first_with_limit(store: Storage) -> None:
    ids = [store.save(new(seed=i)).id for i in range(5)]
    assert [r.id for r in store.recent(limit=3)] == ids[::-1][:3]
    assert [r.id for r in store.recent()] == ids[::-1]
    assert store.recent(limit=0) == []
    assert [r.id for r in store.all_decisions()] == ids


def test_count_today_uses_local_day(store: Storage) -> None:
    noon = datetime(2024, 6, 15, 12, 0)  # naive = station local time
    for seed, when in enumerate(
        [
            datetime(2024, 6, 15, 0, 0, 1),
            datetime(2024, 6, 15, 23, 59, 59),
            datetime(2024, 6, 14, 23, 59, 59),  # yesterday
            datetime(2024, 6, 16, 0, 0, 0),  # tomorrow
        ]
    ):
        store.save(new(seed=seed, created_at=when))
    assert store.count_today(now=noon) == 2
    assert store.count_today(now=noon.astimezone(timezone.utc)) == 2  # aware input means the same instant
    assert store.count_today() == 0
    store.save(new(seed=9))
    assert store.count_today() == 1
    assert store.count() == 5


def test_decisions_filter_by_station_and_every_station_is_listed(store: Storage) -> None:
    assert store.decision_stations() == []
    mine = [store.save(new(seed=i)).id for i in range(3)]
    theirs = [store.save(new(seed=10 + i, station="line-2", model_version="r1")).id for i in range(2)]
    store.save(new(seed=20, station="B-line"))
    # One order on both backends (code points), whatever collation the PostgreSQL database has.
    assert store.decision_stations() == ["B-line", "line-2", "st-test"]
    assert [r.id for r in store.decisions(station="st-test")] == mine
    assert [r.id for r in store.decisions(station="line-2")] == theirs
    assert [r.id for r in store.decisions(station="line-2", model_version="r1")] == theirs  # filters combine
    assert store.decisions(station="line-2", model_version="v1") == []
    assert store.decisions(station="nowhere") == []
    assert len(store.decisions()) == 6
    # the window's history and today count of one station
    assert [r.id for r in store.recent(limit=2, station="st-test")] == mine[::-1][:2]
    assert [r.id for r in store.recent(station="line-2")] == theirs[::-1]
    assert store.count_today(station="line-2") == 2 and store.count_today() == 6


def test_find_sha256(store: Storage) -> None:
    rec = store.save(new(seed=4))
    assert store.find_sha256(rec.sha256).id == rec.id  # type: ignore[union-attr]
    assert store.find_sha256("0" * 64) is None


def test_holdout_is_deterministic_and_about_a_fifth(store: Storage) -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_000)]
    flags = [is_holdout(h) for h in hashes]
    assert flags == [is_holdout(h) for h in hashes]
    assert 0.18 < sum(flags) / len(flags) < 0.22
    assert is_holdout("00000000" + "f" * 56) and not is_holdout("00000001" + "0" * 56)

    recs = [store.save(new(seed=i)) for i in range(12)]
    assert all(r.holdout == is_holdout(r.sha256) for r in recs)
    same = store.save(new(seed=0))  # same pixels -> same bytes -> same sha -> same split
    assert (same.sha256, same.holdout) == (recs[0].sha256, recs[0].holdout)
    held = store.all_decisions(holdout=True)
    pool = store.all_decisions(holdout=False)
    assert len(held) + len(pool) == 13 and all(r.holdout for r in held) and not any(r.holdout for r in pool)
    assert store.relabel(recs[0].id, "metal").holdout == recs[0].holdout  # never changed after insert


# ---------------------------------------------------------------------------------------------- failures


def test_locked_database_leaves_no_row_and_no_file(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir, busy_timeout_ms=100) as store, open_store(data_dir) as other:
        with other.write() as held:
            held.execute(sqlalchemy.text("SELECT 1"))  # the other station holds the write lock
            with pytest.raises(StorageError, match="lock") as err:
                store.save(new())
        assert err.value.args[0].startswith(f"cannot record the decision in {store.database}: ")
        assert is_transient(err.value)
        assert store.count() == 0
        assert pngs(data_dir) == [] and leftovers(data_dir) == []
        assert store.save(new()).id  # works again once the lock is gone


def test_failing_commit_removes_file(store: Storage, data_dir: Path) -> None:
    def fail(session: object) -> None:
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    event.listen(store._sessions, "before_commit", fail)
    with pytest.raises(StorageError, match="disk I/O error"):
        store.save(new())
    event.remove(store._sessions, "before_commit", fail)
    assert store.count() == 0 and pngs(data_dir) == []


def test_unexpected_error_during_insert_propagates_and_removes_file(
    store: Storage, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(row: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(Decision, "to_record", boom)
    with pytest.raises(RuntimeError, match="bug"):
        store.save(new())
    monkeypatch.undo()
    assert store.count() == 0 and pngs(data_dir) == []


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("x")
    with pytest.raises(StorageError, match="data folder") as err:
        Storage(not_a_dir)
    assert str(not_a_dir) in str(err.value)
    with pytest.raises(StorageError) as err2:
        Storage(not_a_dir / "sub")
    assert str(not_a_dir / "sub") in str(err2.value)


def test_unwritable_data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch, open_store: OpenStore) -> None:
    # Tests run as root, which ignores chmod: simulate the write probe failing instead.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(repository.tempfile, "NamedTemporaryFile", denied)
    with pytest.raises(StorageError, match="Permission denied") as err:
        open_store(data_dir)
    assert str(data_dir) in str(err.value)


@pytest.mark.sqlite_only("a damaged database file; a server checks its own pages")
def test_corrupt_database_named(data_dir: Path, open_store: OpenStore) -> None:
    data_dir.mkdir()
    (data_dir / "station.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="is corrupt \\(file is not a database\\)") as err:
        open_store(data_dir)
    assert str(data_dir / "station.db") in str(err.value)


def test_is_transient() -> None:
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    wrapped = sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is busy"))
    assert is_transient(wrapped)
    try:
        raise StorageError("cannot save") from wrapped
    except StorageError as exc:
        assert is_transient(exc)
    assert not is_transient(sqlite3.OperationalError("no such table: decisions"))
    assert not is_transient(OSError(errno.ENOENT, "No such file"))
    assert not is_transient(ValueError("x"))
    assert not is_transient(StorageError("schema too new"))


# ---------------------------------------------------------------------------------------------- schema


def _v0_database(path: Path, with_meta: bool) -> None:
    """The unversioned prototype layout: no embedding/holdout columns, meta table optional."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY, image_path TEXT NOT NULL, sha256 VARCHAR(64) NOT NULL,
            predicted_label TEXT, confidence FLOAT, probabilities JSON NOT NULL, operator_label TEXT NOT NULL,
            kind VARCHAR(16) NOT NULL, model_version TEXT, created_at DATETIME NOT NULL, station TEXT NOT NULL);
        INSERT INTO decisions VALUES (1, 'images/a.png', '00000000aaaa', 'glass', 0.8, '{"glass": 0.8}', 'glass',
            'confirmed', 'v0', '2024-01-02 03:04:05.000000', 'old');
        INSERT INTO decisions VALUES (2, 'images/b.png', '00000001bbbb', 'glass', 0.8, '{"glass": 0.8}', 'metal',
            'corrected', 'v0', '2024-01-02 03:04:06.000000', 'old');
        """
    )
    if with_meta:
        con.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema_version', '0');"
        )
    con.commit()
    con.close()


@pytest.mark.parametrize("with_meta", [True, False], ids=["meta-v0", "no-meta-table"])
@pytest.mark.sqlite_only("schema 0 to 3 only ever existed as SQLite files")
def test_upgrade_from_v0(data_dir: Path, with_meta: bool, open_store: OpenStore) -> None:
    _v0_database(data_dir / "station.db", with_meta)
    with open_store(data_dir) as store:
        old = store.all_decisions()
        assert [(r.id, r.kind, r.embedding, r.holdout) for r in old] == [
            (1, "confirmed", None, True),
            (2, "corrected", None, False),
        ]
        assert old[0].created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        rec = store.save(new(embedding=np.ones(4, dtype=np.float32)))
        assert store.get(rec.id).embedding is not None  # type: ignore[union-attr]
        with store.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(decisions)")}
        assert version == str(SCHEMA_VERSION)
        assert "ix_decisions_sha256" in indexes


@pytest.mark.sqlite_only("schema 0 to 3 only ever existed as SQLite files")
def test_failed_upgrade_rolls_back(data_dir: Path, monkeypatch: pytest.MonkeyPatch, open_store: OpenStore) -> None:
    _v0_database(data_dir / "station.db", with_meta=True)

    def half_done(conn: object) -> None:
        conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN embedding BLOB")  # type: ignore[attr-defined]
        raise RuntimeError("step failed")

    monkeypatch.setitem(schema.MIGRATIONS, 0, half_done)
    with pytest.raises(RuntimeError):
        open_store(data_dir)
    con = sqlite3.connect(data_dir / "station.db")
    try:
        assert con.execute("SELECT value FROM meta").fetchone() == ("0",)
        assert "embedding" not in {row[1] for row in con.execute("PRAGMA table_info(decisions)")}
    finally:
        con.close()


@pytest.mark.parametrize("old_version", [0, 1])
@pytest.mark.sqlite_only("the upgrade backup copies the SQLite file; a server is the site's to back up")
def test_upgrade_keeps_a_backup_of_the_old_database(data_dir: Path, old_version: int, open_store: OpenStore) -> None:
    db = data_dir / "station.db"
    _v0_database(db, with_meta=True)
    if old_version == 1:
        with open_store(data_dir) as store, store.engine.begin() as conn:  # a schema-1 database: no model versions
            conn.exec_driver_sql("DROP TABLE model_versions")
            conn.exec_driver_sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        schema.backup_path(db, 0).unlink()
    with open_store(data_dir) as store:
        assert store.count() == 2

    backup = data_dir / f"station.schema-{old_version}-backup.db"
    assert schema.backup_path(db, old_version) == backup
    assert [p.name for p in data_dir.glob("station.schema-*")] == [backup.name]  # one backup, no temporary
    con = sqlite3.connect(backup)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(old_version),)
        assert con.execute("SELECT id, operator_label FROM decisions ORDER BY id").fetchall() == [
            (1, "glass"), (2, "metal")]
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "model_versions" not in tables
    finally:
        con.close()


@pytest.mark.sqlite_only("the upgrade backup copies the SQLite file")
def test_no_backup_of_a_new_or_current_database(data_dir: Path, open_store: OpenStore) -> None:
    open_store(data_dir).close()
    open_store(data_dir).close()
    assert not list(data_dir.glob("*backup*"))


@pytest.mark.sqlite_only("the upgrade backup copies the SQLite file")
def test_interrupted_backup_leaves_a_temporary_that_the_next_start_sweeps(
    data_dir: Path, open_store: OpenStore
) -> None:
    open_store(data_dir).close()
    temporary = data_dir / ".station.schema-1-backup.db.x1y2.tmp"  # what a kill during the copy leaves
    temporary.write_bytes(b"half a database")
    with open_store(data_dir) as store:
        assert store.swept.removed == [temporary]
    assert not temporary.exists()


def test_newer_schema_refused(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as store, store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        database = store.database
    with pytest.raises(StorageError) as err:
        open_store(data_dir)
    assert str(err.value) == (
        f"database {database} has schema version 99, this station knows up to {SCHEMA_VERSION}; "
        "update the station"
    )


def test_reopen_sees_earlier_decisions(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as first:
        saved = [first.save(new(seed=i)) for i in range(3)]
    with open_store(data_dir) as second:
        assert [r.id for r in second.recent()] == [r.id for r in reversed(saved)]
        assert all(second.image_file(r).exists() for r in second.all_decisions())
        assert second.get(saved[0].id).sha256 == saved[0].sha256  # type: ignore[union-attr]


def test_one_storage_per_thread_concurrent_saves(data_dir: Path, open_store: OpenStore) -> None:
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            with open_store(data_dir, station=f"t{offset}") as mine:
                for i in range(10):
                    mine.save(new(seed=offset * 100 + i))
                    mine.recent(limit=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    open_store(data_dir).close()  # create the schema once, as the app does at startup
    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with open_store(data_dir) as check:
        assert check.count() == 20 and len(pngs(data_dir)) == 20


def test_storages_opening_together_never_sweep_each_others_write_test(data_dir: Path, open_store: OpenStore) -> None:
    # Each opening writes a test file and may sweep; a sweeper must not remove a file another opening still holds.
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                open_store(data_dir).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    open_store(data_dir).close()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert not list(data_dir.glob(".write-test-*"))


@pytest.mark.sqlite_only("beside a shared database nothing is swept (test_storage_server.py)")
def test_a_storage_that_could_not_sweep_still_holds_the_folder(data_dir: Path, open_store: OpenStore) -> None:
    first = open_store(data_dir)
    second = open_store(data_dir)  # cannot sweep while the first is open
    assert second.swept.skipped
    first.close()
    with open_store(data_dir) as third:  # the second is still open: no sweeping under its writes
        assert third.swept.skipped
    second.close()
    with open_store(data_dir) as alone:
        assert not alone.swept.skipped


# ---------------------------------------------------------------------------------------------- model versions


@pytest.mark.sqlite_only("schema 1 only ever existed as SQLite files")
def test_upgrade_from_v1_adds_model_versions_and_keeps_decisions(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as first:
        saved = [first.save(new(seed=i, embedding=np.ones(3, np.float32))) for i in range(3)]
    con = sqlite3.connect(data_dir / "station.db")  # back to the exact v1 layout
    con.executescript("DROP TABLE model_versions; UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    con.close()

    with open_store(data_dir) as store:
        assert [(r.id, r.sha256, r.holdout) for r in store.all_decisions()] == [
            (r.id, r.sha256, r.holdout) for r in saved
        ]
        assert store.get(saved[0].id).embedding.tolist() == [1.0, 1.0, 1.0]  # type: ignore[union-attr]
        assert store.versions() == [] and store.active_version() is None
        store.add_version("base", data_dir / "models" / "base", "bundled", status="active")
        with store.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(model_versions)")}
    assert version == str(SCHEMA_VERSION)
    assert "uq_model_versions_one_active" in indexes


def test_add_version_round_trip_and_paths(store: Storage, data_dir: Path, tmp_path: Path) -> None:
    inside = store.add_version(
        "r1", data_dir / "models" / "r1", "fast", parent="base",
        counts={"base_train": 10, "site_train": 4, "site_holdout": 1}, metrics={"gate_passed": True},
    )
    assert (inside.path, inside.status, inside.parent, inside.mode) == ("models/r1", "candidate", "base", "fast")
    assert store.version_path(inside) == data_dir / "models" / "r1"
    assert inside.created_at.utcoffset() == timedelta(0)
    outside = store.add_version("shipped", tmp_path / "elsewhere" / "bundle", "bundled")
    assert Path(outside.path).is_absolute() and store.version_path(outside) == (tmp_path / "elsewhere" / "bundle")
    got = store.get_version("r1")
    assert got == inside and got.counts["site_train"] == 4 and got.metrics == {"gate_passed": True}
    assert store.get_version("nope") is None
    with pytest.raises(StorageError, match="already exists"):
        store.add_version("r1", data_dir / "models" / "r1", "fast")
    with pytest.raises(ValueError, match="mode"):
        store.add_version("r9", data_dir, "slow")
    with pytest.raises(ValueError, match="status"):
        store.add_version("r9", data_dir, "fast", status="maybe")


def test_versions_newest_first(store: Storage, data_dir: Path) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store.add_version("base", data_dir, "bundled", created_at=t0)
    for n in range(1, 12):  # same timestamp: insertion order decides (r10 after r9, not by string order)
        store.add_version(f"r{n}", data_dir, "fast", created_at=t0 + timedelta(hours=1))
    assert [v.version for v in store.versions()] == [f"r{n}" for n in range(11, 0, -1)] + ["base"]


def test_activate_retires_the_old_one_and_rolls_back(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled", status="active")
    store.add_version("r1", data_dir / "models" / "r1", "fast", parent="base")
    assert store.active_version().version == "base"  # type: ignore[union-attr]

    assert store.activate("r1").status == "active"
    statuses = {v.version: v.status for v in store.versions()}
    assert statuses == {"base": "retired", "r1": "active"}

    store.add_version("r2", data_dir / "models" / "r2", "fast", parent="r1", status="active")  # promoted at once
    assert {v.version: v.status for v in store.versions()} == {"base": "retired", "r1": "retired", "r2": "active"}

    assert store.activate("base").status == "active"  # rollback to any earlier version
    assert [v.version for v in store.versions() if v.status == "active"] == ["base"]
    assert store.activate("base").status == "active"  # idempotent
    with pytest.raises(StorageError, match="no model version named 'zz'"):
        store.activate("zz")
    assert store.active_version().version == "base"  # type: ignore[union-attr]


def test_one_active_version_enforced_by_the_database(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled", status="active")
    store.add_version("r1", data_dir, "fast")
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.IntegrityError):
        conn.exec_driver_sql("UPDATE model_versions SET status = 'active' WHERE version = 'r1'")


def test_kinds_and_statuses_read_back_as_enum_members(store: Storage, data_dir: Path) -> None:
    store.save(new(1, predicted="glass", operator="metal"))
    store.add_version("base", data_dir, "bundled", status="active")
    (record,) = store.decisions()
    assert type(record.kind) is DecisionKind and record.kind is DecisionKind.CORRECTED
    assert type(store.active_version().status) is VersionStatus  # type: ignore[union-attr]
    assert json.dumps({"kind": record.kind}) == '{"kind": "corrected"}'  # a str: exports and events unchanged


def test_an_unknown_kind_is_refused_by_the_column_and_by_the_database(store: Storage) -> None:
    store.save(new(1))
    with store.write() as s, pytest.raises(sqlalchemy.exc.StatementError, match="bogus"):
        s.add(Decision(image_path="x.png", sha256="0" * 64, predicted_label=None, confidence=None, probabilities={},
                       operator_label="glass", kind="bogus", model_version=None, embedding=None,
                       created_at=datetime.now(timezone.utc), station="s", holdout=False))
        s.flush()
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.IntegrityError):  # the CHECK constraint
        conn.exec_driver_sql("UPDATE decisions SET kind = 'bogus'")
    assert [r.kind for r in store.decisions()] == [DecisionKind.CONFIRMED]


def test_set_version_status(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled", status="active")
    store.add_version("r1", data_dir, "fast")
    assert store.set_version_status("r1", "discarded").status == "discarded"
    assert store.set_version_status("r1", "active").status == "active"  # same as activate
    assert store.get_version("base").status == "retired"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="status"):
        store.set_version_status("r1", "gone")
    with pytest.raises(StorageError, match="no model version"):
        store.set_version_status("r7", "retired")


def test_next_version_name_is_never_reused(store: Storage, data_dir: Path) -> None:
    assert store.next_version_name() == "r1"
    store.add_version("trashnet-b2", data_dir, "bundled", status="active")
    assert store.next_version_name() == "r1"
    store.add_version("r1", data_dir, "fast")
    store.set_version_status("r1", "discarded")
    assert store.next_version_name() == "r2"
    (data_dir / "models" / "r2").mkdir(parents=True)  # a bundle folder without a row (e.g. a crash before register)
    assert store.next_version_name() == "r3"
    store.add_version("r9", data_dir, "fast")
    assert store.next_version_name() == "r10"


# ---------------------------------------------------------------------------------------------- transactions


def test_a_write_block_that_raises_rolls_back_every_step(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled", status="active")
    kept = store.save(new(seed=1, operator="glass"))
    with pytest.raises(RuntimeError, match="half way"), store.write("try several steps") as s:
        queries.add_version(s, "r1", "models/r1", "fast", status="active")  # retires "base"
        queries.relabel(s, kept.id, "metal")
        assert queries.active_version(s).version == "r1"  # type: ignore[union-attr]  # seen inside the block
        raise RuntimeError("half way")  # not a database error: it leaves the block as it is
    assert [(v.version, v.status) for v in store.versions()] == [("base", "active")]
    assert store.get(kept.id).operator_label == "glass"  # type: ignore[union-attr]


def test_a_failing_step_rolls_back_the_steps_before_it(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled")
    with pytest.raises(StorageError, match="already exists"), store.write() as s:
        queries.add_version(s, "r1", "models/r1", "fast")
        queries.add_version(s, "base", "elsewhere", "bundled")
    assert [v.version for v in store.versions()] == ["base"]


def test_a_write_block_commits_all_its_steps_together(store: Storage, data_dir: Path) -> None:
    store.add_version("base", data_dir, "bundled", status="active")
    with store.write() as s:
        record = queries.set_version_status(s, "base", "discarded")
        listed = queries.list_versions(s)
    assert record.status == "discarded" and listed == store.versions() == [record]


def test_write_maps_database_errors_with_its_action(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir, busy_timeout_ms=50) as store, open_store(data_dir) as other, other.write() as held:
        held.execute(sqlalchemy.text("SELECT 1"))  # the other Storage holds the write lock
        with pytest.raises(StorageError) as err, store.write("activate model version 'r1'") as s:
            queries.active_version(s)
        assert str(err.value).startswith(f"cannot activate model version 'r1' in {store.database}: ")
    assert "lock" in str(err.value) and is_transient(err.value)


def test_write_takes_the_lock_at_the_first_statement_not_on_entry(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir, busy_timeout_ms=50) as store, open_store(data_dir) as other, other.write() as held:
        held.execute(sqlalchemy.text("SELECT 1"))
        with pytest.raises(ValueError, match="mode"), store.write() as s:
            queries.add_version(s, "r1", "models/r1", "slow")  # refused before any statement: no lock needed


def test_read_sees_what_other_storages_committed_and_nothing_uncommitted(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as writer, open_store(data_dir) as reader:
        with writer.write() as s:
            queries.add_version(s, "base", "models/base", "bundled")
            s.flush()
            with reader.read() as r:
                assert queries.list_versions(r) == []  # not committed yet
        with reader.read() as r:
            assert [v.version for v in queries.list_versions(r)] == ["base"]


def test_a_read_block_is_one_snapshot(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as writer, open_store(data_dir) as reader, reader.read() as r:
        assert queries.list_versions(r) == []  # the snapshot starts here
        writer.add_version("base", data_dir, "bundled")
        assert queries.list_versions(r) == [] and queries.version_names(r) == set()
    with open_store(data_dir) as again:
        assert [v.version for v in again.versions()] == ["base"]


# ---------------------------------------------------------------------------------------------- retried saves


def test_saving_a_decision_again_returns_the_row_the_first_save_committed(store: Storage, data_dir: Path) -> None:
    decision = new(seed=3)
    first = store.save(decision)
    again = store.save(decision)  # a retry of the same decision (e.g. by the storage worker)
    assert again.id == first.id and again.image_path == first.image_path
    assert store.count() == 1 and pngs(data_dir) == [store.image_file(first)]
    other = store.save(new(seed=3))  # the same pixels decided again: a new decision
    assert other.id != first.id and store.count() == 2


def test_a_commit_whose_answer_was_lost_is_saved_once_with_its_image(store: Storage, data_dir: Path) -> None:
    def connection_lost(session: object) -> None:  # the COMMIT happened, its answer never came back
        event.remove(store._sessions, "after_commit", connection_lost)
        raise sqlalchemy.exc.OperationalError(
            "COMMIT", {}, Exception("server closed the connection unexpectedly"), connection_invalidated=True)

    decision = new(seed=5)
    event.listen(store._sessions, "after_commit", connection_lost)
    with pytest.raises(StorageError, match="server closed") as err:
        store.save(decision)
    assert is_transient(err.value)
    saved = store.save(decision)  # the retry
    assert store.count() == 1 and pngs(data_dir) == [store.image_file(saved)]
    assert hashlib.sha256(store.image_file(saved).read_bytes()).hexdigest() == saved.sha256


def test_image_names_carry_the_decision_key_and_never_collide(store: Storage) -> None:
    same_moment = datetime(2024, 6, 15, 12, 0, 0)
    saved = [store.save(new(seed=1, created_at=same_moment)) for _ in range(5)]
    assert len({r.image_path for r in saved}) == 5
    decision = new(seed=2)
    assert f"-{decision.key}-" in store.save(decision).image_path


def test_reserved_version_names_are_never_handed_out_twice(data_dir: Path, open_store: OpenStore) -> None:
    with open_store(data_dir) as one, open_store(data_dir) as other:
        first = one.reserve_version_name()
        assert (first, other.reserve_version_name()) == ("r1", "r2")  # r1's folder exists: the other takes r2
        assert (data_dir / "models" / "r1").is_dir() and one.next_version_name() == "r3"
