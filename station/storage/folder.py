"""A station's data folder: its layout, the lock every open ``Storage`` holds, and what crashes leave in it."""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

DB_NAME = "station.db"
IMAGES_DIR = "images"
MODELS_DIR = "models"  # retrained bundles, one folder per version
LOCK_NAME = ".station.lock"

RETRAINED_NAME = re.compile(r"r(\d+)")  # names given by Storage.next_version_name
TEMP_GLOBS = (".*.tmp", ".write-test-*")  # the atomic writer's and Storage's write-test temporaries
MODEL_LEFTOVER_GLOBS = (".*.partial-*", ".*.old-*")  # training.files.make_work_folder / replace_folder


@dataclass(frozen=True)
class SweepReport:
    """What opening a data folder removed: crash leftovers no row refers to."""

    removed: list[Path]
    bytes: int = 0  # their total size
    skipped: str | None = None  # why nothing was swept (the folder is in use by another process)


def remove_leftover(path: Path) -> tuple[Path, int]:
    """Remove a leftover file or folder; (path, bytes freed)."""
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path, ignore_errors=True)
    else:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
    return path, size


def remove_file(path: Path) -> None:
    # The row is already gone (or never existed): a file we can't remove is a harmless orphan, so log, don't raise.
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


class FolderLock:
    """A shared lock on ``data_dir/.station.lock`` held by every open Storage (every process, every thread).

    Only a Storage that can briefly take it exclusively knows that nothing else writes to the folder, so only
    then are leftovers swept: a file being saved or a model being trained by another process is never touched.
    """

    def __init__(self, data_dir: Path) -> None:
        self._fd: int | None = None
        self._fcntl: ModuleType | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks, so never sweep
            return
        self._fcntl = fcntl
        self._fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def try_exclusive(self) -> bool:
        if self._fd is None or self._fcntl is None:
            return False
        try:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except OSError:
            # A failed conversion has already dropped the shared lock (flock(2): not atomic): take it back,
            # or a later Storage would sweep the temporary files this one is writing.
            self.share()
            return False
        return True

    def share(self) -> None:
        if self._fd is not None and self._fcntl is not None:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
