"""Fixtures of the storage-level tests: a data folder and a station's ``Storage`` on it.

The database is the data folder's SQLite file unless a module overrides ``database_url``; storage modules
parametrise it over both backends::

    @pytest.fixture(params=BACKENDS)
    def database_url(request: pytest.FixtureRequest) -> str:
        return backend_url(request)

A test that only makes sense on SQLite says why: ``@pytest.mark.sqlite_only("PRAGMAs are SQLite's")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from station.storage import Storage

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def backend_url(request: pytest.FixtureRequest) -> str:
    """"" for SQLite; for PostgreSQL a fresh database of the session's cluster (skips a ``sqlite_only`` test)."""
    if request.param == "sqlite":
        return ""
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0]}")
    return str(request.getfixturevalue("pg_url").render_as_string(hide_password=False))


@pytest.fixture
def database_url() -> str:
    return ""


@pytest.fixture
def open_store(database_url: str) -> Callable[..., Storage]:
    """``Storage`` on this test's database: ``open_store(data_dir, station=..., ...)``."""
    return functools.partial(Storage, database_url=database_url)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path, open_store: Callable[..., Storage]) -> Iterator[Storage]:
    s = open_store(data_dir, station="st-test")
    yield s
    s.close()
