"""Operator decisions in SQLite (or a shared PostgreSQL database), image files in the data folder. No Qt.

A data folder holds ``station.db`` and ``images/``. Each decision is one row plus one PNG of the exact frame the
operator saw. With a ``database_url`` the rows live in a PostgreSQL database several stations share instead, and
``data_dir`` is a folder they all mount (``engine``). Hands-free sorting (schema 3): kind "auto" for decisions the
station confirmed by itself, and per decision the item it was made for, the milliseconds from the item settling to
the decision, and the operator's key presses. Model versions (schema 2): every model bundle the station has run or
could run is a row in ``model_versions`` (bundled default, fast/full retrained candidates); exactly one is "active"
once the station has started.

Threading: one ``Storage`` per thread; results are plain frozen dataclasses (``records``), never ORM objects, so
they can be sent across threads. Several processes may share a data folder (WAL + busy_timeout).

Modules: ``records`` (plain values), ``models`` (ORM tables), ``errors``, ``schema`` (versions and upgrades),
``engine``, ``folder`` (layout, lock, crash leftovers), ``images``, ``repository`` (``Storage``), ``queries``
(the steps of a transaction a caller owns: ``with storage.write() as s: queries.… (s, …)``).
Everything callers need is re-exported here: ``from station.storage import Storage, DecisionRecord``.
"""

from station.storage import queries
from station.storage.engine import DEFAULT_BUSY_TIMEOUT_MS, masked, open_engine
from station.storage.errors import CorruptDatabaseError, StorageError, is_corrupt, is_transient
from station.storage.folder import DB_NAME, IMAGES_DIR, LOCK_NAME, MODELS_DIR, SweepReport
from station.storage.images import encode_png
from station.storage.models import Base, Decision, Meta, ModelVersion
from station.storage.records import (
    ACTIVE,
    AUTO,
    CANDIDATE,
    CONFIRMED,
    CORRECTED,
    DISCARDED,
    IMPORTED,
    KINDS,
    RETIRED,
    VERSION_MODES,
    VERSION_STATUSES,
    DecisionKind,
    DecisionRecord,
    NewDecision,
    VersionRecord,
    VersionStatus,
    derive_kind,
    is_holdout,
    local_day_bounds,
    version_folder,
)
from station.storage.repository import Storage
from station.storage.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "ACTIVE",
    "AUTO",
    "CANDIDATE",
    "CONFIRMED",
    "CORRECTED",
    "DB_NAME",
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DISCARDED",
    "IMAGES_DIR",
    "IMPORTED",
    "KINDS",
    "LOCK_NAME",
    "MIGRATIONS",
    "MODELS_DIR",
    "RETIRED",
    "SCHEMA_VERSION",
    "VERSION_MODES",
    "VERSION_STATUSES",
    "Base",
    "CorruptDatabaseError",
    "Decision",
    "DecisionKind",
    "DecisionRecord",
    "Meta",
    "ModelVersion",
    "NewDecision",
    "Storage",
    "StorageError",
    "SweepReport",
    "VersionRecord",
    "VersionStatus",
    "derive_kind",
    "encode_png",
    "is_corrupt",
    "is_holdout",
    "is_transient",
    "local_day_bounds",
    "masked",
    "open_engine",
    "queries",
    "version_folder",
]
