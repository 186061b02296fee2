"""Schema 3: kind "auto" and the item columns, and the upgrade of a schema-2 database (table rebuilt, ids kept)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from station.storage import SCHEMA_VERSION, NewDecision, Storage

# The decisions table exactly as schema 2 created it (its CHECK knows no "auto").
V2_SCHEMA = """
CREATE TABLE meta ("key" VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE decisions (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, image_path VARCHAR NOT NULL, sha256 VARCHAR(64) NOT NULL,
    predicted_label VARCHAR, confidence FLOAT, probabilities JSON NOT NULL, operator_label VARCHAR NOT NULL,
    kind VARCHAR(16) NOT NULL, model_version VARCHAR, embedding BLOB, created_at DATETIME NOT NULL,
    station VARCHAR NOT NULL, holdout BOOLEAN NOT NULL,
    CONSTRAINT ck_decisions_kind CHECK (kind IN ('confirmed', 'corrected', 'imported'))
);
CREATE INDEX ix_decisions_created_at ON decisions (created_at);
CREATE INDEX ix_decisions_sha256 ON decisions (sha256);
CREATE TABLE model_versions (
    version VARCHAR NOT NULL, parent VARCHAR, path VARCHAR NOT NULL, created_at DATETIME NOT NULL,
    mode VARCHAR(16) NOT NULL, counts JSON NOT NULL, metrics JSON NOT NULL, status VARCHAR(16) NOT NULL,
    PRIMARY KEY (version),
    CONSTRAINT ck_model_versions_mode CHECK (mode IN ('bundled', 'fast', 'full')),
    CONSTRAINT ck_model_versions_status CHECK (status IN ('candidate', 'active', 'retired', 'discarded'))
);
CREATE UNIQUE INDEX uq_model_versions_one_active ON model_versions (status) WHERE status = 'active';
INSERT INTO meta VALUES ('schema_version', '2');
"""


def decision(seed: int, **fields: object) -> NewDecision:
    image = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    values: dict[str, object] = {"image": image, "predicted_label": "glass", "confidence": 0.95,
                                 "probabilities": {"glass": 0.95, "metal": 0.05}, "operator_label": "glass"}
    values.update(fields)
    return NewDecision(**values)  # type: ignore[arg-type]


def test_auto_decisions_keep_their_item_and_timing(tmp_path: Path) -> None:
    with Storage(tmp_path) as store:
        auto = store.save(decision(1, kind="auto", item_id="s-7", settle_ms=182.5, touches=0))
        manual = store.save(decision(2, operator_label="metal"))
        assert (auto.kind, auto.item_id, auto.settle_ms, auto.touches) == ("auto", "s-7", 182.5, 0)
        assert (manual.kind, manual.item_id, manual.settle_ms, manual.touches) == ("corrected", None, None, None)
        assert store.get(auto.id).item_id == "s-7"  # type: ignore[union-attr]
        # The operator checks an auto decision in the review queue: now it is theirs (and may teach).
        assert store.relabel(auto.id, "glass").kind == "confirmed"
        with pytest.raises(ValueError, match="kind must be one of"):
            store.save(decision(3, kind="guessed"))


def test_upgrade_from_v2_rebuilds_the_table_and_keeps_ids_and_the_counter(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "station.db")
    con.executescript(V2_SCHEMA)
    (tmp_path / "images").mkdir()
    for i in (1, 2, 3):
        con.execute("INSERT INTO decisions (id, image_path, sha256, predicted_label, confidence, probabilities, "
                    "operator_label, kind, created_at, station, holdout) VALUES (?, ?, ?, 'glass', 0.5, '{}', "
                    "'glass', 'confirmed', ?, 's1', 0)", (i, f"images/{i}.png", f"{i:064x}", f"2025-01-0{i} 10:00:00"))
    con.execute("UPDATE sqlite_sequence SET seq = 5 WHERE name = 'decisions'")  # 4 and 5 were undone
    con.commit()
    con.close()

    with Storage(tmp_path, sweep=False) as store:
        assert [(r.id, r.sha256, r.kind, r.item_id) for r in store.all_decisions()] == [
            (i, f"{i:064x}", "confirmed", None) for i in (1, 2, 3)]
        new = store.save(decision(9, kind="auto", item_id="s-1", settle_ms=90.0, touches=0))
        assert new.id == 6 and new.kind == "auto"  # never an id given before the upgrade
        with store.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(decisions)")}
            tables = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == str(SCHEMA_VERSION)
    assert {"ix_decisions_created_at", "ix_decisions_sha256"} <= indexes and "decisions_v2" not in tables
