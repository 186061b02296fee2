"""The model versions table reads each version's stored retraining report back into its typed form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from station.storage import VersionRecord
from station.ui.versions_dialog import VersionsDialog
from tests.fixture_outcomes import report


def record(version: str, mode: str, metrics: dict, status: str = "candidate") -> VersionRecord:
    return VersionRecord(version, None, f"models/{version}", datetime(2026, 11, 1, tzinfo=UTC), mode, {}, metrics,
                         status)


def test_scores_come_from_the_stored_report_and_a_bundle_from_its_metrics_file(qtbot, tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "metrics.json").write_text(json.dumps({"macro_f1": 0.766}))
    dialog = VersionsDialog(folder_of=lambda r: tmp_path / r.version)
    qtbot.addWidget(dialog)
    stored = json.loads(json.dumps(report(tmp_path / "r1").to_json()))  # as the database returns it
    older = {"gate": "from a version of the station that stored less"}
    dialog.show_versions([record("r1", "fast", stored), record("bundled", "bundled", {}, "active"),
                          record("r0", "fast", older)])
    cells = [[dialog.table.item(r, c).text() for c in (0, 5, 6)] for r in range(3)]
    assert cells == [["r1", "0.250 → 0.750", "0.500 → 0.500"],
                     ["bundled", "—", "0.766 (its test split)"],
                     ["r0", "—", "—"]]
