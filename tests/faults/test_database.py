"""Broken databases: refused at open with the path, never written over; the ones that pass keep passing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from station.storage import DB_NAME, SCHEMA_VERSION, CorruptDatabaseError, Storage, StorageError
from tests.faults.helpers import corrupt_pages, fill, sha256_of


def test_page_corrupted_database_is_reported_as_corrupt_and_left_untouched(tmp_path: Path) -> None:
    fill(tmp_path, 30)
    db = tmp_path / DB_NAME
    corrupt_pages(db)
    before = sha256_of(db)
    with pytest.raises(CorruptDatabaseError) as err:
        Storage(tmp_path)
    assert "corrupt" in str(err.value) and str(db) in str(err.value)
    assert sha256_of(db) == before
    assert not (tmp_path / f"{DB_NAME}-wal").exists() or (tmp_path / f"{DB_NAME}-wal").stat().st_size == 0


def test_garbage_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not a database at all" * 100)
    before = sha256_of(db)
    with pytest.raises(StorageError) as err:
        Storage(tmp_path)
    assert str(db) in str(err.value)
    assert sha256_of(db) == before


def test_future_schema_is_refused(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StorageError, match="update the station"):
        Storage(tmp_path)


def test_database_locked_by_another_process_is_transient_and_leaves_no_file(tmp_path: Path) -> None:
    from station.storage import is_transient
    from tests.faults.helpers import decision

    fill(tmp_path, 1)
    storage = Storage(tmp_path, busy_timeout_ms=200)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()", str(tmp_path / DB_NAME)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError) as err:
            storage.save(decision(99))
        assert is_transient(err.value)
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert len(list((tmp_path / "images").rglob("*.png"))) == 1  # the failed save removed its image
    storage.save(decision(100))  # released: the same Storage works again
    assert storage.count() == 2
    storage.close()
