"""What only a server database has: its URL (a password never shown), its connection settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import URL

from station.storage import Storage, StorageError, is_transient
from tests.pg import free_port


def test_a_password_in_the_url_is_masked_in_messages(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://sorter:s3cret-pw@127.0.0.1:{free_port()}/sorting"  # nothing listens there
    with pytest.raises(StorageError) as err:
        Storage(tmp_path, database_url=url, busy_timeout_ms=100)
    message = str(err.value)
    assert "s3cret-pw" not in message and "sorter:***@127.0.0.1" in message
    assert message.startswith("cannot open database postgresql+psycopg://sorter:***@")
    assert is_transient(err.value)  # a server that does not answer yet: the station retries


def test_a_url_that_is_not_one_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="database_url is not a database URL") as err:
        Storage(tmp_path, database_url="sorter:s3cret-pw at the server")
    assert "s3cret-pw" not in str(err.value)


def test_only_postgresql_serves_as_a_shared_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="only PostgreSQL") as err:
        Storage(tmp_path, database_url="mysql://sorter:s3cret-pw@db/sorting")
    assert "s3cret-pw" not in str(err.value) and "sorter:***@db" in str(err.value)


def test_server_connections_wait_busy_timeout_for_locks(tmp_path: Path, pg_url: URL) -> None:
    with Storage(tmp_path, database_url=pg_url.render_as_string(hide_password=False), busy_timeout_ms=1234) as s:
        assert s.is_shared and s.database == pg_url.render_as_string(hide_password=True)
        with s.engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SHOW lock_timeout")).scalar() == "1234ms"
        assert not (tmp_path / "station.db").exists()  # the data folder holds images and models only


def test_a_shared_folder_is_never_swept(tmp_path: Path, pg_url: URL) -> None:
    """Another machine's save (image written, row not yet) or retraining (work folder) may be in progress."""
    url = pg_url.render_as_string(hide_password=False)
    Storage(tmp_path, database_url=url).close()
    in_flight = tmp_path / "images" / "2024-06-15" / "120000-abc-def.png"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"png")
    work = tmp_path / "models" / ".r3.partial-x"
    work.mkdir(parents=True)
    with Storage(tmp_path, database_url=url) as storage:
        assert storage.swept.skipped and storage.swept.removed == []
        assert storage.remove_model_leftovers() == []
    assert in_flight.exists() and work.exists()


def test_beside_a_shared_database_each_station_writes_its_own_image_folder(tmp_path: Path, pg_url: URL) -> None:
    """One folder several stations mount: images/<station>/<day>/, paths in the database relative to the folder."""
    import numpy as np

    from station.storage import NewDecision

    url = pg_url.render_as_string(hide_password=False)
    image = np.zeros((8, 8, 3), np.uint8)
    for station in ("line 1", "line-2"):
        with Storage(tmp_path, station, database_url=url) as storage:
            storage.save(NewDecision(image=image, predicted_label="a", confidence=0.9, probabilities={},
                                     operator_label="a"))
    with Storage(tmp_path, database_url=url) as storage:
        paths = {r.station: r.image_path for r in storage.decisions()}
    assert paths["line 1"].startswith("images/line_1/") and paths["line-2"].startswith("images/line-2/")
    assert all((tmp_path / path).is_file() and len(Path(path).parts) == 4 for path in paths.values())
