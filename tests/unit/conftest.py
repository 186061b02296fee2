"""Fixtures of the storage-level tests: a data folder and a station's ``Storage`` on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.storage import Storage


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path):
    s = Storage(data_dir, station="st-test")
    yield s
    s.close()
