"""``station export``: decisions -> ImageFolder dataset + decisions.csv (no Qt)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import station.app
from station.cli import entry
from station.export import CSV_COLUMNS, CSV_NAME, ExportError, export_decisions
from station.storage import CORRECTED, DB_NAME, Decision, DecisionRecord, NewDecision, Storage
from tests.conftest import CLASSES, MINI_DATASET, run_cli
from training.data import scan_dataset
from training.preprocess import load_rgb

DAY1 = date(2024, 5, 1)
DAYS = [DAY1 + timedelta(days=i) for i in range(3)]
# (day index, predicted, operator): confirmed and corrected decisions on three different local days
ROWS = [(0, "glass", "glass"), (0, "glass", "metal"), (1, "paper", "paper"), (1, "metal", "metal"),
        (2, "plastic", "plastic"), (2, None, "trash")]


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


def local_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12)  # naive = station local time


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes (the database's WAL files change on their own)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(DB_NAME)
    }


def exported_files(out: Path) -> dict[str, list[str]]:
    return {d.name: sorted(f.name for f in d.iterdir()) for d in sorted(out.iterdir()) if d.is_dir()}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def local_day(record: DecisionRecord) -> date:
    return record.created_at.astimezone().date()


@pytest.fixture
def store(data_dir: Path):
    """Decisions with several labels on three days; one corrected again afterwards (relabelled)."""
    s = Storage(data_dir, station="st-test")
    for seed, (day, predicted, operator) in enumerate(ROWS):
        s.save(NewDecision(
            image=frame(seed), predicted_label=predicted, confidence=None if predicted is None else 0.5 + seed / 20,
            probabilities={} if predicted is None else {predicted: 0.5 + seed / 20, "other": 0.5 - seed / 20},
            operator_label=operator, model_version=None if predicted is None else "v1",
            created_at=local_noon(DAYS[day]),
        ))
    relabelled = s.relabel(s.all_decisions()[2].id, "cardboard")  # paper -> cardboard after the fact
    assert relabelled.kind == CORRECTED
    yield s
    s.close()


# ------------------------------------------------------------------------------------------------ layout + CSV


def test_export_writes_one_folder_per_operator_label_and_a_csv_of_every_row(store: Storage, tmp_path: Path) -> None:
    out = tmp_path / "export"
    records = store.all_decisions()
    result = export_decisions(store, out)

    expected = Counter(r.operator_label for r in records)
    assert result.counts == dict(expected) and result.rows == len(records) and result.missing == []
    files = exported_files(out)
    assert {label: len(names) for label, names in files.items()} == dict(expected)
    all_names = [name for names in files.values() for name in names]
    assert len(set(all_names)) == len(records)
    for r in records:  # each image is a byte-identical copy, named <id>-<sha256[:8]>.png, under its operator label
        copy = out / r.operator_label / f"{r.id}-{r.sha256[:8]}.png"
        assert copy.read_bytes() == store.image_file(r).read_bytes()

    assert result.csv_path == out / CSV_NAME
    columns, rows = read_csv(result.csv_path)
    assert tuple(columns) == CSV_COLUMNS
    table_columns = {c.name for c in Decision.__table__.columns}
    assert set(columns) >= table_columns - {"embedding"} and "embedding" not in columns
    assert [int(row["id"]) for row in rows] == [r.id for r in records]
    for row, r in zip(rows, records, strict=True):
        assert row["image_path"] == r.image_path and row["sha256"] == r.sha256
        assert row["predicted_label"] == (r.predicted_label or "")
        assert (float(row["confidence"]) if row["confidence"] else None) == r.confidence
        assert json.loads(row["probabilities"]) == r.probabilities
        assert row["operator_label"] == r.operator_label and row["kind"] == r.kind
        assert row["model_version"] == (r.model_version or "") and row["station"] == r.station
        created = datetime.fromisoformat(row["created_at"])
        assert created == r.created_at and created.utcoffset() == timedelta(0)
        assert row["holdout"] == str(int(r.holdout))
        assert hashlib.sha256((out / row["file"]).read_bytes()).hexdigest() == r.sha256
    assert {row["kind"] for row in rows} >= {"confirmed", "corrected"}


def test_training_sees_the_class_folders_and_ignores_the_csv(store: Storage, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_decisions(store, out)
    dataset = scan_dataset(out)
    assert dataset.class_names == sorted({r.operator_label for r in store.all_decisions()})
    assert dataset.bad_files == [] and len(dataset.items) == store.count()


def test_since_and_until_select_local_days_both_included(store: Storage, tmp_path: Path) -> None:
    records = store.all_decisions()
    cases = [(DAYS[1], DAYS[2]), (DAYS[1], DAYS[1]), (None, DAYS[0]), (DAYS[2], None)]
    for i, (since, until) in enumerate(cases):
        out = tmp_path / f"export-{i}"
        result = export_decisions(store, out, since=since, until=until)
        wanted = [r for r in records
                  if (since is None or local_day(r) >= since) and (until is None or local_day(r) <= until)]
        assert 0 < len(wanted) < len(records)
        _, rows = read_csv(out / CSV_NAME)
        assert [int(row["id"]) for row in rows] == [r.id for r in wanted]
        assert result.counts == dict(Counter(r.operator_label for r in wanted))
        assert exported_files(out).keys() == {r.operator_label for r in wanted}

    with pytest.raises(ExportError, match="after"):
        export_decisions(store, tmp_path / "backwards", since=DAYS[2], until=DAYS[0])
    assert not (tmp_path / "backwards").exists()


# ------------------------------------------------------------------------------------------------ refusals


def test_non_empty_out_is_refused_without_force_and_replaced_whole_with_force(store: Storage, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_decisions(store, out)
    first = store.all_decisions()[0]
    stale_copy = out / first.operator_label / f"{first.id}-{first.sha256[:8]}.png"
    assert stale_copy.is_file()
    (out / "notes.txt").write_text("mine")
    new_label = next(c for c in CLASSES if c != first.operator_label)
    store.relabel(first.id, new_label)
    before = snapshot(out)

    with pytest.raises(ExportError, match=r"not empty.*--force"):
        export_decisions(store, out)
    assert snapshot(out) == before  # refused: nothing touched

    result = export_decisions(store, out, force=True)
    assert not stale_copy.exists() and not (out / "notes.txt").exists()
    assert (out / new_label / stale_copy.name).is_file()
    _, rows = read_csv(out / CSV_NAME)
    assert next(row for row in rows if int(row["id"]) == first.id)["operator_label"] == new_label
    assert result.rows == store.count()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "export"]  # no work or old folder left beside it


def test_empty_existing_out_is_fine_without_force(store: Storage, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    assert export_decisions(store, out).rows == store.count()


def test_out_overlapping_the_data_folder_is_refused_even_with_force(
    store: Storage, data_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(data_dir)
    for out in [data_dir, data_dir / "exports", data_dir / "images", tmp_path, data_dir / ".." / "data"]:
        with pytest.raises(ExportError, match="overlaps the data folder"):
            export_decisions(store, out, force=True)
    assert snapshot(data_dir) == before
    assert not (data_dir / "exports").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_out_that_is_a_file_is_refused(store: Storage, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.write_text("not a folder")
    with pytest.raises(ExportError, match="not a folder"):
        export_decisions(store, out, force=True)
    assert out.read_text() == "not a folder"


def test_decision_with_a_missing_image_is_skipped_and_listed(store: Storage, tmp_path: Path) -> None:
    records = store.all_decisions()
    only_of_label = next(r for r in records if sum(x.operator_label == r.operator_label for x in records) == 1)
    store.image_file(only_of_label).unlink()
    out = tmp_path / "export"
    result = export_decisions(store, out)

    assert result.missing == [(only_of_label.id, store.image_file(only_of_label))]
    assert result.rows == len(records) - 1
    _, rows = read_csv(out / CSV_NAME)
    assert only_of_label.id not in {int(row["id"]) for row in rows} and len(rows) == result.rows
    # No empty class folder left behind: training refuses those.
    assert only_of_label.operator_label not in exported_files(out)
    scan_dataset(out)


# ------------------------------------------------------------------------------------------------ CLI


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = entry(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_export_prints_a_summary_and_goes_to_the_cli_not_the_gui(
    store: Storage, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(station.app, "main", lambda argv=None: pytest.fail("export started the GUI"))
    out = tmp_path / "export"
    code, stdout, err = cli(["export", "--data-dir", str(data_dir), "--out", str(out),
                             "--since", DAYS[1].isoformat(), "--until", DAYS[2].isoformat()], capsys)
    assert code == 0, err
    wanted = [r for r in store.all_decisions() if DAYS[1] <= local_day(r) <= DAYS[2]]
    assert f"exported {len(wanted)} decision(s) to {out}" in stdout
    for label, n in Counter(r.operator_label for r in wanted).items():
        assert any(line.split() == [label, str(n)] for line in stdout.splitlines())
    assert f"CSV: {out / CSV_NAME}" in stdout


def test_cli_export_reports_each_missing_image_on_stderr(
    store: Storage, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = store.all_decisions()[1]
    store.image_file(gone).unlink()
    code, stdout, err = cli(["export", "--data-dir", str(data_dir), "--out", str(tmp_path / "export")], capsys)
    assert code == 0
    assert f"decision {gone.id}: image file missing, skipped: {store.image_file(gone)}" in err
    assert "skipped 1 decision(s) whose image file is missing" in stdout


def test_cli_export_errors_exit_2_with_a_message(
    store: Storage, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, stdout, err = cli(["export", "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert (code, stdout) == (2, "") and err.startswith(f"error: {out} is not empty") and "--force" in err
    assert (out / "keep.txt").read_text() == "x"

    code, _, err = cli(["export", "--data-dir", str(data_dir), "--out", str(data_dir / "x"), "--force"], capsys)
    assert code == 2 and err.startswith("error: ") and "overlaps the data folder" in err

    nowhere = tmp_path / "nowhere"
    code, _, err = cli(["export", "--data-dir", str(nowhere), "--out", str(tmp_path / "e2")], capsys)
    assert code == 2 and err.strip() == f"error: no station database ({DB_NAME}) in {nowhere}"
    assert not nowhere.exists()  # a mistyped data folder is not created

    code, _, err = cli(["export", "--data-dir", str(data_dir), "--out", str(tmp_path / "e3"),
                        "--since", DAYS[2].isoformat(), "--until", DAYS[0].isoformat()], capsys)
    assert code == 2 and "after" in err and not (tmp_path / "e3").exists()


def test_cli_export_rejects_a_malformed_date(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        entry(["export", "--data-dir", str(data_dir), "--out", str(tmp_path / "e"), "--since", "1/5/2024"])
    assert exit_info.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_python_m_station_export_error_has_no_traceback(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "station", "export", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, cwd=root,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: no station database"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_and_import_modules_load_without_tensorflow_or_qt() -> None:
    code = ("import sys, station.export, station.import_folder, station.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'PySide6') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=root)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ round trip


def test_export_then_train_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """18 decisions (3 per class) -> export -> ``python -m training train OUT`` accepts it as is."""
    data_dir, out, run = tmp_path / "data", tmp_path / "export", tmp_path / "run"
    with Storage(data_dir) as s:
        for label in CLASSES:
            for photo in sorted((MINI_DATASET / label).glob("*.jpg"))[:3]:
                s.save(NewDecision(image=load_rgb(photo), predicted_label=None, confidence=None, probabilities={},
                                   operator_label=label))
    assert entry(["export", "--data-dir", str(data_dir), "--out", str(out)]) == 0, capsys.readouterr().err

    code, _, err = run_cli(["train", str(out), "--out", str(run), "--weights", "none", "--image-size", "32",
                            "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "8"])
    assert code == 0, err
    assert json.loads((run / "labels.json").read_text()) == sorted(CLASSES)
