"""Folder sources: a file that fails to decode is skipped with a message; a folder never starts over silently."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from station import app
from station.camera import ENDED, CaptureLoop, FolderSource
from tests.faults.helpers import bomb_png
from tests.unit.test_camera import Recorder, start_loop, stop_loop


def write(folder: Path, name: str, value: int) -> None:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / name)


def test_a_bomb_as_first_file_is_skipped_at_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bomb_png(tmp_path / "a-bomb.png")
    write(tmp_path, "b.png", 20)
    source = FolderSource(tmp_path, 0)
    with caplog.at_level(logging.WARNING):
        source.open()
    frame = source.read()
    assert frame is not None and frame.name == "b.png"
    assert [p.name for p in source.skipped] == ["a-bomb.png"]
    assert "a-bomb.png" in caplog.text and "DecompressionBombError" in caplog.text


def test_a_bomb_mid_folder_is_skipped_and_the_folder_never_restarts(tmp_path: Path) -> None:
    write(tmp_path, "a.png", 10)
    write(tmp_path, "b.png", 20)
    bomb_png(tmp_path / "c.png")
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write(tmp_path, "e.png", 50)
    rec = Recorder()
    loop = CaptureLoop(lambda: source, rec.on_frame, rec.on_state, backoff=(0.01,))
    source = FolderSource(tmp_path, 0)
    stop, thread = start_loop(loop)
    try:
        for count in (1, 2, 3):
            rec.wait_for(lambda n=count: len(rec.frames) == n)
            loop.advance()
        rec.wait_for(lambda: ENDED in rec.state_names())
    finally:
        stop_loop(stop, thread)
    assert [f.name for f in rec.frames] == ["a.png", "b.png", "e.png"]  # each once, in order
    assert "lost" not in rec.state_names()
    assert sorted(p.name for p in source.skipped) == ["c.png", "d.png"]


def test_reopening_a_folder_resumes_after_the_last_image(tmp_path: Path) -> None:
    for i, name in enumerate("abc"):
        write(tmp_path, f"{name}.png", 10 * i)
    source = FolderSource(tmp_path, 0)
    source.open()
    assert source.read().name == "a.png"
    source.advance()
    assert source.read().name == "b.png"
    source.close()  # the capture loop closes and reopens a source after a loss
    source.open()
    assert source.read().name == "c.png"
    source.advance()
    assert source.read() is None and source.ended
    source.close()
    source.open()  # at the end, a reopen stays at the end
    assert source.read() is None and source.ended


def test_the_station_reopens_the_same_folder_source(tmp_path: Path, make_settings) -> None:
    (tmp_path / "photos").mkdir()
    write(tmp_path / "photos", "a.png", 1)
    factory, demo = app.choose_source(make_settings())
    assert demo is None and factory() is factory()
