"""Data folders whose path has URL-special or non-ASCII characters: the database is where the folder is."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.storage import DB_NAME, Storage
from tests.faults.helpers import assert_data_folder_intact, decision

NAMES = ["site?1", "100%", "line#2", "a b", "%41", "Müll-Station ♻", "x?mode=ro"]


@pytest.mark.parametrize("name", NAMES)
def test_database_is_created_inside_the_named_folder(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    data_dir = parent / name
    with Storage(data_dir) as storage:
        saved = storage.save(decision(1))
    assert (data_dir / DB_NAME).is_file()
    assert sorted(p.name for p in parent.iterdir()) == [name]  # nothing created beside it
    with Storage(data_dir) as storage:  # and it is found again
        assert [r.id for r in storage.decisions()] == [saved.id]
    assert_data_folder_intact(data_dir, [saved.id])
