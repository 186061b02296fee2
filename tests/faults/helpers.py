"""Building faulty data folders and checking what must hold after a fault."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from station.storage import DB_NAME, NewDecision, Storage


def frame(i: int) -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:] = ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)
    image[i % 40 : i % 40 + 8, 10:20] = 255
    return image


def decision(i: int, label: str = "a") -> NewDecision:
    return NewDecision(image=frame(i), predicted_label="a", confidence=0.9, probabilities={"a": 0.9, "b": 0.1},
                       operator_label=label, model_version="tiny-v1",
                       embedding=np.full(1408, i, np.float32))


def fill(data_dir: Path, count: int) -> list[int]:
    with Storage(data_dir) as storage:
        return [storage.save(decision(i)).id for i in range(count)]


def corrupt_pages(db: Path, first_page: int = 3, pages: int = 3) -> None:
    """Overwrite whole pages in the middle of a database, keeping its 100-byte header (and page 1) valid."""
    page_size = struct.unpack(">H", db.read_bytes()[16:18])[0]
    with db.open("r+b") as f:
        f.seek(page_size * (first_page - 1))
        f.write(bytes([0xA5]) * page_size * pages)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bomb_png(path: Path, side: int = 30_000) -> Path:
    """A tiny PNG whose header claims side x side pixels: Pillow refuses it as a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def assert_data_folder_intact(data_dir: Path, saved_ids: list[int] | None = None) -> None:
    """integrity_check ok; every row's image exists with its sha256; every id reported saved is there."""
    import sqlite3

    with sqlite3.connect(data_dir / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Storage(data_dir) as storage:
        records = storage.decisions()
    for record in records:
        path = data_dir / record.image_path
        assert path.is_file(), f"decision {record.id}: {path} missing"
        assert sha256_of(path) == record.sha256, f"decision {record.id}: {path} does not match its sha256"
    if saved_ids is not None:
        missing = set(saved_ids) - {r.id for r in records}
        assert not missing, f"decisions reported saved but not stored: {sorted(missing)}"


def wait_for_undecided(qtbot, window, timeout_ms: int = 30_000) -> None:
    """Wait until a prediction no key has decided yet is on screen (a condition, not "the next event":
    the next prediction may already have arrived, and a folder with interval 0 sends no other)."""
    qtbot.waitUntil(lambda: window.desk.shown is not None and not window.desk.shown_is_decided, timeout=timeout_ms)
