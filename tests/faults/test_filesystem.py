"""A read-only or full file system: a clear error, nothing half-written, and saving resumes once there is room.

Both need a small file system of their own: a tmpfs, mounted when the tests run as root (skipped otherwise).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.storage import DB_NAME, Storage, StorageError, is_transient
from tests.faults.helpers import assert_data_folder_intact, decision, fill, sha256_of

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="mounting a tmpfs needs root")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@needs_root
def test_read_only_data_folder_is_refused_with_its_path_and_left_as_it_was(tmpfs: Path) -> None:
    data_dir = tmpfs / "data"
    fill(data_dir, 3)
    before = sha256_of(data_dir / DB_NAME)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(StorageError) as err:
        Storage(data_dir)
    assert str(data_dir) in str(err.value)
    assert sha256_of(data_dir / DB_NAME) == before


@needs_root
def test_full_file_system_fails_transiently_leaves_nothing_half_written_and_recovers(tmpfs: Path) -> None:
    data_dir = tmpfs / "data"
    saved: list[int] = []
    ballast = tmpfs / "ballast"
    with Storage(data_dir) as storage:
        ballast.write_bytes(b"\0" * (2 * 1024 * 1024 - 300 * 1024))  # leave ~300 KB
        with pytest.raises(StorageError) as err:
            for i in range(1000):
                saved.append(storage.save(decision(i)).id)
        assert is_transient(err.value)
        assert "space" in str(err.value).lower() or "full" in str(err.value).lower()
        ballast.unlink()  # the operator makes room: the same Storage goes on
        saved.append(storage.save(decision(5000)).id)
    assert_data_folder_intact(data_dir, saved)
    with Storage(data_dir) as storage:
        assert storage.count() == len(saved)
        on_disk = {p.relative_to(data_dir).as_posix() for p in (data_dir / "images").rglob("*") if p.is_file()}
        assert on_disk == {r.image_path for r in storage.decisions()}
