"""The project's one atomic file writer (training.files): whole file or nothing, durable when asked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from training.files import atomic_file, write_atomically


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Inode numbers of what os.fsync was called on, in order."""
    inodes: list[int] = []
    real = os.fsync

    def record(fd: int) -> None:
        inodes.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return inodes


def test_writes_the_whole_file_shared_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "labels.json"
    with atomic_file(target) as f:
        f.write("[1, 2]")
        assert not target.exists()  # nothing visible while the block runs
    assert target.read_text() == "[1, 2]"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(tmp_path.iterdir()) == [target]


def test_a_failing_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half"), atomic_file(target) as f:
        f.write("new, half of it")
        raise RuntimeError("half written")
    assert target.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.skipif(os.name != "posix", reason="folders are synced on POSIX only")
def test_durable_syncs_the_file_then_its_folder(tmp_path: Path, synced: list[int]) -> None:
    target = tmp_path / "frame.png"
    write_atomically(target, b"png bytes", durable=True, permissions=0o600)
    assert target.read_bytes() == b"png bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # the temporary file's inode is the renamed file's
    assert synced == [target.stat().st_ino, tmp_path.stat().st_ino]


def test_not_durable_never_syncs(tmp_path: Path, synced: list[int]) -> None:
    write_atomically(tmp_path / "cache.bin", b"x")
    assert synced == []
