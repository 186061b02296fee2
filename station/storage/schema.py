"""Schema versions of the station database and the steps that upgrade an older one, in one transaction.

The steps up to version 3 predate PostgreSQL support: they only ever run on SQLite files (a PostgreSQL database
is created at version 4 or later). Steps after them must work on both backends.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Table, insert, inspect, select, text, update

from station.storage.errors import StorageError
from station.storage.models import Base, Decision, Meta, ModelVersion
from station.storage.records import is_holdout
from training.files import atomic_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4


def read_version(conn: Connection) -> int | None:
    """None for an empty database; 0 for a pre-versioning layout (decisions without a usable meta row)."""
    tables = set(inspect(conn).get_table_names())
    if "meta" in tables:
        value = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar_one_or_none()
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise StorageError(f"unreadable schema_version {value!r}") from None
    return 0 if tables & {"meta", "decisions"} else None


def _set_version(conn: Connection, version: int) -> None:
    # Update, else insert (portable; SQLite's INSERT OR REPLACE is not): the caller holds the write lock.
    updated = conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(version)))
    if updated.rowcount == 0:
        conn.execute(insert(Meta).values(key="schema_version", value=str(version)))


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # declarative models map a Table; typed as its base class, FromClause
    return table


def _upgrade_0_to_1(conn: Connection) -> None:
    """Bootstrap from the unversioned prototype: no meta table, decisions without embedding/holdout."""
    insp = inspect(conn)
    if insp.has_table("decisions"):
        cols = {c["name"] for c in insp.get_columns("decisions")}
        if "embedding" not in cols:
            conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN embedding BLOB")
        if "holdout" not in cols:
            conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN holdout BOOLEAN NOT NULL DEFAULT 0")
            rows = conn.execute(text("SELECT id, sha256 FROM decisions")).all()
            held = [{"id": i} for i, sha in rows if sha and is_holdout(sha)]
            if held:
                conn.execute(text("UPDATE decisions SET holdout = 1 WHERE id = :id"), held)
    Base.metadata.create_all(conn)  # missing tables (meta, or decisions itself)
    for index in _table(Decision).indexes:  # create_all only adds indexes along with a new table
        index.create(conn, checkfirst=True)


def _upgrade_1_to_2(conn: Connection) -> None:
    """Model versions: the registry of bundles behind retraining and rollback."""
    _table(ModelVersion).create(conn, checkfirst=True)  # with its indexes


def _upgrade_2_to_3(conn: Connection) -> None:
    """Hands-free: kind "auto" and the item columns. The kind CHECK is part of the table's SQL, so the table is
    rebuilt (SQLite's documented way): rename, create anew, copy, drop. Ids stay, and so does the AUTOINCREMENT
    counter, so an id undone before the upgrade is still never given again."""
    has_counters = inspect(conn).has_table("sqlite_sequence")  # only once an AUTOINCREMENT table has had a row
    counter = None
    if has_counters:
        counter = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'decisions'").scalar()
    columns = ", ".join(f'"{c["name"]}"' for c in inspect(conn).get_columns("decisions"))
    conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_v2")
    for index in inspect(conn).get_indexes("decisions_v2"):  # their names are needed for the new table's
        conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
    _table(Decision).create(conn)  # with its indexes
    conn.exec_driver_sql(f"INSERT INTO decisions ({columns}) SELECT {columns} FROM decisions_v2")
    conn.exec_driver_sql("DROP TABLE decisions_v2")
    if counter is not None:
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'decisions'")
        conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES ('decisions', :seq)"), {"seq": counter})


def _upgrade_3_to_4(conn: Connection) -> None:
    """Registration order of model versions as a column (``seq``): PostgreSQL has no rowid to order by."""
    if "seq" not in {c["name"] for c in inspect(conn).get_columns("model_versions")}:  # 1->2 made it already
        conn.exec_driver_sql("ALTER TABLE model_versions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql("UPDATE model_versions SET seq = rowid")


# Key = the version a step upgrades FROM. Each step runs inside the same transaction as the version bump.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    0: _upgrade_0_to_1, 1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4,
}


def backup_path(db_path: Path, version: int) -> Path:
    """Where a schema-``version`` database is copied before it is upgraded: beside it, named by that version."""
    return db_path.with_name(f"{db_path.stem}.schema-{version}-backup{db_path.suffix}")


def back_up(db_path: Path, target: Path) -> None:
    """A consistent copy of the committed database (SQLite's online backup), written atomically: an interrupted
    backup never replaces a whole one. Its own connection: SQLite refuses to back up from a connection that is
    in a write transaction, while another connection reads beside that writer (WAL)."""
    source = sqlite3.connect(db_path)
    try:
        with atomic_path(target, durable=True, permissions=stat.S_IMODE(db_path.stat().st_mode)) as tmp:
            copy = sqlite3.connect(tmp)
            try:
                source.backup(copy)
            finally:
                copy.close()
    finally:
        source.close()


def prepare_schema(conn: Connection, database: str, db_path: Path | None) -> None:
    """Create a new database, or upgrade an older one to ``SCHEMA_VERSION``; a newer one is refused.

    ``database`` names it in messages. Before an upgrade a SQLite database (``db_path``) is backed up
    (``backup_path``): a migration that goes wrong in a way the rollback does not cover (a bug in a step, a station
    that cannot read the result) keeps the operator's data. A server database (``db_path`` None) is the site's
    to back up. Called inside the write transaction that upgrades (it holds the write lock), so no other station
    writes between the copy and the upgrade.
    """
    version = read_version(conn)
    if version is None:
        Base.metadata.create_all(conn)
        _set_version(conn, SCHEMA_VERSION)
        return
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database {database} has schema version {version}, this station knows up to {SCHEMA_VERSION}; "
            "update the station"
        )
    if version < SCHEMA_VERSION and db_path is not None:
        backup = backup_path(db_path, version)
        log.info("backing up %s to %s before upgrading it", db_path, backup)
        back_up(db_path, backup)
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StorageError(f"database {database} has schema version {version}, which this station cannot upgrade")
        log.info("upgrading %s from schema version %d to %d", database, version, version + 1)
        step(conn)
        version += 1
        _set_version(conn, version)
