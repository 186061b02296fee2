"""Stored decisions -> an ImageFolder dataset plus ``decisions.csv``. No Qt.

The export has one folder per operator label holding copies of the decisions' PNGs, named
``<id>-<first 8 of sha256>.png`` (unique: ids are never reused), so ``python -m training train OUT`` takes it as is;
``decisions.csv`` sits beside the class folders, where training ignores stray files.

CSV columns: every column of the ``decisions`` table except the embedding, then ``file`` (the exported image,
relative to OUT). ``created_at`` is ISO 8601 in UTC (``2024-05-01T09:30:00.123456+00:00``), ``probabilities`` is
JSON text (``{}`` for imports), ``holdout`` is 0/1 (as SQLite stores it), and None is an empty field.

The export is assembled in a hidden folder beside OUT and renamed into place at the end: a failed export leaves
OUT as it was, and ``force`` replaces OUT whole, so nothing from an earlier export survives. The data folder is
only read.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import date, timezone
from pathlib import Path

from station.storage import DecisionRecord, Storage
from training.files import make_work_folder, replace_folder

log = logging.getLogger(__name__)

CSV_NAME = "decisions.csv"
CSV_COLUMNS = (
    "id", "image_path", "sha256", "predicted_label", "confidence", "probabilities", "operator_label", "kind",
    "model_version", "created_at", "station", "holdout", "item_id", "settle_ms", "touches", "file",
)


class ExportError(Exception):
    """An export that must not run (the message names the path and what to do)."""


@dataclass(frozen=True)
class ExportResult:
    out: Path
    csv_path: Path
    counts: dict[str, int]  # exported rows per operator label, sorted by label
    missing: list[tuple[int, Path]] = field(default_factory=list)  # (decision id, absent image file), skipped

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def export_file_name(record: DecisionRecord) -> str:
    return f"{record.id}-{record.sha256[:8]}{Path(record.image_path).suffix or '.png'}"


def check_out_folder(out: Path, data_dir: Path, force: bool) -> None:
    """Refuse an OUT that overlaps the data folder (``force`` would delete it), is a file, or is non-empty."""
    out_r, data_r = out.expanduser().resolve(), data_dir.expanduser().resolve()
    if out_r == data_r or data_r in out_r.parents or out_r in data_r.parents:
        raise ExportError(
            f"{out} overlaps the data folder {data_dir}; export to a folder outside it (the data folder is never "
            "written to or cleared)"
        )
    if out_r.parent == out_r:
        raise ExportError(f"{out} is the root of the file system; export to a folder")
    if out_r.exists() and not out_r.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out_r.is_dir() and any(out_r.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; choose an empty folder or pass --force to replace it")


def _check_label(record: DecisionRecord) -> None:
    # The label becomes a folder name: no path tricks, and not hidden (training skips hidden folders).
    label = record.operator_label
    if label in {".", ".."} or label.startswith(".") or any(c in label for c in "/\\\0"):
        raise ExportError(f"decision {record.id}: label {label!r} cannot be a class folder name")


def _csv_row(record: DecisionRecord, file: str) -> list[object]:
    return [
        record.id, record.image_path, record.sha256, record.predicted_label, record.confidence,
        json.dumps(record.probabilities), record.operator_label, record.kind, record.model_version,
        record.created_at.astimezone(timezone.utc).isoformat(), record.station, int(record.holdout),
        record.item_id, record.settle_ms, record.touches, file,
    ]


def export_decisions(
    storage: Storage, out: Path | str, since: date | None = None, until: date | None = None, force: bool = False
) -> ExportResult:
    """Export the decisions of local days ``since``..``until`` (both included; None = open) to ``out``.

    Raises ``ExportError`` for a refused OUT or bad dates, ``StorageError`` when the database can't be read.
    Decisions whose image file is missing are skipped and listed in ``ExportResult.missing``.
    """
    out = Path(out).expanduser().resolve()  # "." or "sub/.." have no name to build the work folder beside
    if since is not None and until is not None and since > until:
        raise ExportError(f"--since {since} is after --until {until}")
    check_out_folder(out, storage.data_dir, force)
    records = storage.decisions(since=since, until=until)
    for record in records:
        _check_label(record)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = make_work_folder(out)
    except OSError as exc:
        raise ExportError(f"cannot create a folder beside {out}: {exc.strerror or exc}") from exc
    counts: dict[str, int] = {}
    missing: list[tuple[int, Path]] = []
    try:
        with (work / CSV_NAME).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for record in records:
                source = storage.image_file(record)
                file = f"{record.operator_label}/{export_file_name(record)}"
                (work / record.operator_label).mkdir(exist_ok=True)
                try:
                    shutil.copy2(source, work / file)
                except FileNotFoundError:
                    missing.append((record.id, source))
                    continue
                writer.writerow(_csv_row(record, file))
                counts[record.operator_label] = counts.get(record.operator_label, 0) + 1
        # A label whose every image is missing would leave an empty class folder, which training refuses.
        for folder in work.iterdir():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        replace_folder(work, out)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc} ({exc.filename or out})") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(out=out, csv_path=out / CSV_NAME, counts=dict(sorted(counts.items())), missing=missing)
