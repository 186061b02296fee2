from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CLASSES, run_cli


def test_explore_reports_counts_sizes_modes_and_bad_files(dirty_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "explore"
    code, stdout, err = run_cli(["explore", str(dirty_dataset), "--out", str(out)])
    assert code == 0, err
    for name in CLASSES:
        assert f"{name}" in stdout
    assert "total" in stdout and "24" in stdout
    assert "imbalance ratio (largest / smallest class): 1.00" in stdout
    assert "128x96 (24)" in stdout and "RGB (24)" in stdout
    assert "metal/truncated.jpg" in stdout and "glass/notes.txt" in stdout
    summary = json.loads((out / "explore.json").read_text())
    assert summary["counts"] == {name: 4 for name in CLASSES}
    assert {entry["path"] for entry in summary["bad_files"]} == {
        "metal/truncated.jpg", "paper/empty.jpg", "glass/notes.txt"}
    for plot in ("class_counts.png", "samples.png"):
        assert (out / plot).stat().st_size > 1000
