"""``python -m station retrain|export|import``: the stored decisions from the shell (no Qt, no window).

``entry`` is the ``station`` command: ``station retrain|export|import ...`` come here, anything else starts the GUI.
The commands only parse, call the plain functions (retraining, export, import_folder) and print.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from station.retraining import MODES, PROMOTE_POLICIES, RetrainJob, run_retrain
from station.settings import SettingsError, bundled_model_dir
from station.storage import DB_NAME, Storage, StorageError
from training.errors import TrainingError

COMMANDS = ("retrain", "export", "import")
IMPORT_PROGRESS_EVERY = 100  # files between progress lines on stderr


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description="Sorting station commands without the window.")
    commands = parser.add_subparsers(dest="command", required=True)
    retrain = commands.add_parser(
        "retrain", help="retrain on the operator's decisions and register the candidate model version",
        description="Fit a candidate on every stored decision, compare it with the running model on the held-out "
        "decisions and the base test split, register it and promote it by --promote. Progress goes to stderr; "
        "the last stdout line is the result as JSON.",
    )
    retrain.add_argument("--data-dir", required=True, type=Path, help="the station's data folder (station.db)")
    retrain.add_argument("--mode", choices=MODES, default="fast",
                         help="fast: new head on the running model's backbone (default); "
                         "full: fine-tune the top of the backbone on images (minutes)")
    retrain.add_argument("--promote", choices=PROMOTE_POLICIES, default="auto",
                         help="auto: only if the gate passes (default); always; never: keep it a candidate")
    retrain.add_argument("--base-data", type=Path,
                         help="base dataset folder (default: the one the running model was trained on)")
    retrain.add_argument("--model", type=Path,
                         help="bundle used while no version is active yet (default: the bundled model)")

    export = commands.add_parser(
        "export", help="write the decisions as a class-per-folder dataset plus decisions.csv",
        description="Copy each decision's image into OUT/<operator label>/<id>-<sha256[:8]>.png and write every "
        "exported row to OUT/decisions.csv (all columns but the embedding; created_at in ISO 8601 UTC, "
        "probabilities as JSON, holdout 0/1). 'python -m training train OUT' accepts OUT as it is. Decisions "
        "whose image file is missing are listed on stderr and left out. The data folder is only read.",
    )
    export.add_argument("--data-dir", required=True, type=Path, help="the station's data folder (station.db)")
    export.add_argument("--out", required=True, type=Path,
                        help="folder to write; must be empty or new, outside the data folder")
    export.add_argument("--since", type=iso_date, help="first local day to include, YYYY-MM-DD")
    export.add_argument("--until", type=iso_date, help="last local day to include, YYYY-MM-DD")
    export.add_argument("--force", action="store_true",
                        help="replace a non-empty OUT (rebuilt beside it, then swapped: no stale files remain)")

    imports = commands.add_parser(
        "import", help="add a folder of labelled images (one sub-folder per class) as decisions",
        description="Store every image of FOLDER's class sub-folders as a decision of kind 'imported' (no "
        "prediction; the folder name is the operator's label, dated by the file's modification time). Only the "
        "running model's classes are imported; other folders, unreadable files and images already stored are "
        "reported and skipped, so running the same import again adds nothing. Photos larger than 1024 px on "
        "their long side are downscaled to 1024 px (area interpolation) before they are stored as PNG.",
    )
    imports.add_argument("--data-dir", required=True, type=Path, help="the station's data folder (station.db)")
    imports.add_argument("folder", type=Path, help="folder with one sub-folder per class")
    imports.add_argument("--model", type=Path,
                         help="bundle whose classes are used while no version is active yet "
                         "(default: the bundled model)")
    imports.add_argument("--station", default="import", help="station name recorded on the rows (default: import)")
    return parser


def format_progress(event: dict[str, Any]) -> str:
    eta = event.get("eta")
    eta_text = "ETA —" if eta is None else f"ETA {eta:.0f} s"
    return f"{event.get('phase', '?')} {event.get('done', 0)}/{event.get('total', 0)}, {eta_text}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "retrain": run_retrain_command, "export": run_export, "import": run_import,
    }
    return commands[args.command](args)


def run_retrain_command(args: argparse.Namespace) -> int:
    def progress(event: dict[str, Any]) -> None:
        print(format_progress(event), file=sys.stderr, flush=True)

    try:
        require_database(args.data_dir.expanduser())
        default_model = args.model.expanduser() if args.model else bundled_model_dir()
        job = RetrainJob(
            data_dir=args.data_dir.expanduser(), default_model=default_model, mode=args.mode,
            promote=args.promote, base_data_dir=args.base_data.expanduser() if args.base_data else None,
        )
        result = run_retrain(job, progress)
    except (TrainingError, StorageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no model version was registered", file=sys.stderr)
        return 130
    verdict = "promoted" if result["promoted"] else "not promoted"
    print(f"candidate {result['version']} ({verdict}): {result['gate_reason']}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


def require_database(data_dir: Path) -> None:
    """A mistyped --data-dir must not create an empty data folder there (retrain and export only read one)."""
    if not (data_dir / DB_NAME).is_file():
        raise StorageError(f"no station database ({DB_NAME}) in {data_dir}")


def _open_existing(data_dir: Path) -> Storage:
    require_database(data_dir)
    return Storage(data_dir, sweep=False)  # export only reads the data folder


def shown(name: str) -> str:
    """A file or folder name as printable text: bytes that are not UTF-8 are shown as \\xNN, never an error."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_export(args: argparse.Namespace) -> int:
    from station.export import ExportError, export_decisions

    try:
        with _open_existing(args.data_dir.expanduser()) as storage:
            result = export_decisions(storage, args.out, since=args.since, until=args.until, force=args.force)
    except (ExportError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {args.out} was left as it was", file=sys.stderr)
        return 130
    for decision_id, image in result.missing:
        print(f"decision {decision_id}: image file missing, skipped: {image}", file=sys.stderr)
    print(f"exported {result.rows} decision(s) to {result.out}")
    print_counts(result.counts)
    print(f"CSV: {result.csv_path}")
    if result.missing:
        print(f"skipped {len(result.missing)} decision(s) whose image file is missing (listed on stderr)")
    if not result.rows:
        print("nothing to train on: no decision in the chosen days")
    return 0


def print_counts(counts: dict[str, int]) -> None:
    """One indented, aligned line per class."""
    width = max((len(label) for label in counts), default=0)
    for label, n in counts.items():
        print(f"  {label:<{width}}  {n}")


def run_import(args: argparse.Namespace) -> int:
    from station.import_folder import MAX_SIDE, active_model_labels, check_import_folder, import_folder

    def progress(done: int, total: int) -> None:
        if done % IMPORT_PROGRESS_EVERY == 0 or done == total:
            print(f"import {done}/{total} files", file=sys.stderr, flush=True)

    folder = args.folder.expanduser()
    try:
        check_import_folder(folder)  # before the data folder is opened (and maybe created)
        default_model = args.model.expanduser() if args.model else bundled_model_dir()
        with Storage(args.data_dir.expanduser()) as storage:
            model_name, labels = active_model_labels(storage, default_model)
            result = import_folder(storage, folder, labels, station=args.station, progress=progress)
    except (TrainingError, StorageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the images added so far stay (running the import again skips them)", file=sys.stderr)
        return 130
    for name, n in result.unknown.items():
        print(f"unknown class folder {shown(name)!r} ({n} image(s)) skipped", file=sys.stderr)
    for rel, reason in result.bad_files:
        print(f"bad file {shown(rel)} skipped: {shown(reason)}", file=sys.stderr)
    print(f"imported {result.total_added} image(s) from {shown(str(result.folder))} (classes of model {model_name})")
    print_counts(result.added)
    print(f"duplicates skipped: {len(result.duplicates)}")
    unknown = ", ".join(f"{shown(name)} ({n})" for name, n in result.unknown.items()) or "none"
    print(f"unknown classes skipped: {unknown}" + (f"; known: {', '.join(labels)}" if result.unknown else ""))
    print(f"bad files skipped: {len(result.bad_files)}")
    if result.downscaled:
        print(f"downscaled to {MAX_SIDE} px on the long side: {result.downscaled}")
    return 0


def entry(argv: Sequence[str] | None = None) -> int:
    """The ``station`` command: ``retrain|export|import ...`` run here; anything else starts the GUI as before."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] and args[0] in COMMANDS:
        return main(args)
    from station.app import main as gui_main

    return gui_main(argv)
