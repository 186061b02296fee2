"""Small file helpers shared by every command (no TensorFlow import)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from training.errors import TrainingError

log = logging.getLogger(__name__)


def fsync_dir(folder: Path) -> None:
    """Make a rename or creation inside ``folder`` survive a power cut (POSIX; elsewhere the rename is all we have)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # writable: Windows cannot flush a read-only descriptor
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, *, durable: bool = False, permissions: int = 0o644) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to fill, renamed into place only when the block succeeds:
    a reader never sees half a file, and a failure leaves no temporary behind (a killed process leaves
    ``.NAME.*.tmp``).

    ``durable``: the file and the rename are on disk when the block returns (fsync of the file, then of its
    folder), for what a database row will point at; without it a power cut may lose the new file, never half of it.
    ``permissions``: mkstemp makes the file private; bundles and metrics are meant to be shared.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
        tmp.chmod(permissions)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def atomic_file(
    path: Path, mode: str = "w", *, durable: bool = False, permissions: int = 0o644
) -> Iterator[IO[Any]]:
    """``atomic_path`` opened in ``mode``: the file is closed before it is renamed into place."""
    with atomic_path(path, durable=durable, permissions=permissions) as tmp, tmp.open(mode) as f:
        yield f


def write_atomically(path: Path, data: bytes, *, durable: bool = False, permissions: int = 0o644) -> None:
    with atomic_file(path, "wb", durable=durable, permissions=permissions) as f:
        f.write(data)


def write_json(path: Path, data: Any) -> None:
    with atomic_file(path) as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TrainingError(f"model bundle {path.parent}: missing {path.name} ({what})") from exc
    except (OSError, ValueError) as exc:
        raise TrainingError(f"model bundle {path.parent}: {path.name} is unreadable: {exc}") from exc


def make_work_folder(beside: Path) -> Path:
    """A hidden folder next to ``beside`` to assemble it in, renamed into place when complete."""
    work = Path(tempfile.mkdtemp(dir=beside.parent, prefix=f".{beside.name}.partial-"))
    work.chmod(0o755)  # mkdtemp makes it private
    return work


def read_labels(folder: Path) -> list[str]:
    """A bundle's class names in output order (``labels.json``), checked, without loading the model."""
    labels = read_json(Path(folder) / "labels.json", "class names in output order")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise TrainingError(f"model bundle {folder}: labels.json must be a list of class names")
    if not all(x.strip() for x in labels):
        raise TrainingError(f"model bundle {folder}: labels.json has an empty class name")
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        named = ", ".join(map(repr, duplicates))
        raise TrainingError(f"model bundle {folder}: labels.json names a class twice: {named}")
    return labels


def replace_folder(src: Path, dst: Path) -> None:
    """Rename a finished folder into place; an existing ``dst`` is moved aside first and removed only after the swap
    (restored if the swap fails), so ``dst`` is always either the old or the new folder, whole."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():  # the new folder is in place; a leftover hidden copy of the old one is only untidy
        log.warning("could not remove the previous %s, left at %s", dst.name, old)
