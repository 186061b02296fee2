"""The ``station`` command: one parser. Without a command it starts the window; ``retrain``, ``export`` and
``import`` work on the stored decisions from the shell (no Qt, no window).

The commands only parse, call the plain functions (retraining, export, import_folder) and print. Their
``--data-dir``, ``--model`` and ``--base-data`` default to what the window would use (the settings files).
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
from station.settings import INFERENCE_BACKENDS, SORTING_MODES, Settings, SettingsError, load_settings, model_folder
from station.storage import DB_NAME, Storage, StorageError, masked
from station.terminal import ProgressBars, retrain_summary
from training.errors import TrainingError
from training.messages import Mode, Promote
from training.quiet import import_tensorflow, quiet_libraries

COMMANDS = ("retrain", "export", "import")
IMPORT_PROGRESS_EVERY = 100  # files between progress lines on stderr
# The window's options: each overrides the settings key of the same name.
GUI_OPTIONS = ("source", "interval", "threshold", "data_dir", "station_name", "model", "base_data",
               "auto_retrain_every", "inference_backend", "max_base_drop",
               "mode", "auto_threshold", "auto_delay", "auto_trust_checks", "mqtt_url", "database_url")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in every option's help."""


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def current_settings() -> Settings | None:
    """The settings the window would start with, for the defaults shown in --help (None: they have a problem)."""
    try:
        return load_settings()
    except SettingsError:
        return None


def build_parser() -> argparse.ArgumentParser:
    settings = current_settings()

    def default(key: str, fallback: str = "see station.toml") -> str:
        value = getattr(settings, key, None) if settings is not None else None
        return fallback if value in (None, "") else str(value)

    def masked_default(key: str, fallback: str) -> str:  # a URL's password never reaches the screen
        value = default(key, "")
        return masked(value) if value else fallback

    model_default = default("model", "the bundled model")
    parser = argparse.ArgumentParser(
        prog="station", formatter_class=HelpFormatter,
        description="Sorting station: live classification, keyboard confirm/correct, decisions in SQLite. "
        "Without a command the station window starts; the options below are the window's.",
        epilog="Settings come from resources/station.toml, then your station.toml (Linux: "
        "~/.config/sorting-station/), then the options; the defaults shown are the current settings. "
        "'station COMMAND --help' explains a command.",
    )
    window = parser.add_argument_group("window options (each overrides the setting of the same name)")
    window.argument_default = argparse.SUPPRESS  # unset options leave the settings alone (no "default: None")
    window.add_argument("--source", help=f"camera index, video file, stream URL or a folder of images "
                        f"(default: {default('source')})")
    window.add_argument("--interval", type=float, help="folder source: seconds per image; 0 = next image only "
                        f"after a decision (default: {default('interval')})")
    window.add_argument("--threshold", type=float, help="confidence below which a prediction is 'uncertain' "
                        f"(default: {default('threshold')})")
    window.add_argument("--data-dir", dest="data_dir",
                        help=f"folder for station.db and images/ (default: {default('data_dir')})")
    window.add_argument("--database-url", dest="database_url",
                        help="a database several stations share, e.g. postgresql+psycopg://user@host/sorting "
                        f"(default: {masked_default('database_url', 'station.db in the data folder')})")
    window.add_argument("--station-name", dest="station_name",
                        help=f"name stored with each decision (default: {default('station_name')})")
    window.add_argument("--model", help=f"model bundle folder used while no retrained version is active "
                        f"(default: {model_default})")
    window.add_argument("--base-data", dest="base_data", help="the model's training dataset, for full "
                        f"retraining (default: {default('base_data', 'the folder its bundle records')})")
    window.add_argument("--auto-retrain-every", dest="auto_retrain_every", type=int,
                        help="retrain in the background after this many new decisions, 0 = only on request "
                        f"(default: {default('auto_retrain_every')})")
    window.add_argument("--inference-backend", dest="inference_backend", choices=INFERENCE_BACKENDS,
                        help="what runs the backbone: auto (LiteRT when it loads and agrees with Keras), litert, "
                        f"keras (default: {default('inference_backend')})")
    window.add_argument("--max-base-drop", dest="max_base_drop", type=float,
                        help="the promotion gate's allowed fall of base test accuracy below the shipped model's "
                        f"(default: {default('max_base_drop')})")
    window.add_argument("--mode", choices=SORTING_MODES, help="manual: a key per item; assist: each arriving item is "
                        "classified once and held for the operator; auto: confident items are confirmed by "
                        f"themselves (default: {default('mode')})")
    window.add_argument("--auto-threshold", dest="auto_threshold", type=float,
                        help="auto mode: confidence to confirm without the operator "
                        f"(default: {default('auto_threshold')})")
    window.add_argument("--auto-delay", dest="auto_delay", type=float,
                        help="auto mode: seconds to step in before it confirms "
                        f"(default: {default('auto_delay')})")
    window.add_argument("--auto-trust-checks", dest="auto_trust_checks", type=int,
                        help="auto mode: the operator's checks a class needs before it goes alone; 0: the threshold "
                        f"alone (default: {default('auto_trust_checks')})")
    window.add_argument("--mqtt-url", dest="mqtt_url", help="broker for the decision events, e.g. mqtt://host:1883 "
                        f"(default: {default('mqtt_url', 'none: JSON lines')})")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every library message (TensorFlow, OpenCV) and the station's debug log")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    data_dir_help = f"the station's data folder (default: the window's, {default('data_dir')})"

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        command = commands.add_parser(name, formatter_class=HelpFormatter, **kwargs)
        # SUPPRESS: "station --data-dir X retrain" keeps X; unset, the settings decide (see command_settings)
        command.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=data_dir_help)
        command.add_argument("--database-url", default=argparse.SUPPRESS,
                             help="the stations' shared database (default: the window's)")
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="show every library message")
        return command

    retrain = add_command(
        "retrain", help="retrain on the operator's decisions and register the candidate model version",
        description="Fit a candidate on every stored decision, compare it with the running model on the decisions "
        "the running model judged live (the candidate cross-validated) and on the base test split, register it "
        "and promote it by --promote. Progress goes to stderr; "
        "then a summary (verdict, current vs candidate), or with --json the outcome as one JSON line.",
    )
    retrain.add_argument("--mode", choices=MODES, default="fast",
                         help="fast: new head on the running model's backbone (seconds); "
                         "full: fine-tune the top of the backbone on images (minutes)")
    retrain.add_argument("--promote", choices=PROMOTE_POLICIES, default="auto",
                         help="auto: only if the gate passes; always; never: keep it a candidate")
    retrain.add_argument("--base-data", type=Path, default=argparse.SUPPRESS,
                         help="base dataset folder, for full retraining or a bundle without its embeddings "
                         f"(default: {default('base_data', 'the one the running model was trained on')})")
    retrain.add_argument("--model", type=Path, default=argparse.SUPPRESS,
                         help=f"bundle used while no version is active yet (default: {model_default})")
    retrain.add_argument("--json", action="store_true",
                         help="print the outcome as one JSON line on stdout instead of the summary")

    export = add_command(
        "export", help="write the decisions as a class-per-folder dataset plus decisions.csv",
        description="Copy each decision's image into OUT/<operator label>/<id>-<sha256[:8]>.png and write every "
        "exported row to OUT/decisions.csv (all columns but the embedding; created_at in ISO 8601 UTC, "
        "probabilities as JSON, holdout 0/1). 'python -m training train OUT' accepts OUT as it is. Decisions "
        "whose image file is missing are listed on stderr and left out. The data folder is only read.",
    )
    export.add_argument("--out", required=True, type=Path,
                        help="folder to write; must be empty or new, outside the data folder")
    export.add_argument("--since", type=iso_date, help="first local day to include, YYYY-MM-DD (default: the first)")
    export.add_argument("--until", type=iso_date, help="last local day to include, YYYY-MM-DD (default: the last)")
    export.add_argument("--force", action="store_true",
                        help="replace a non-empty OUT (rebuilt beside it, then swapped: no stale files remain)")

    imports = add_command(
        "import", help="add a folder of labelled images (one sub-folder per class) as decisions",
        description="Store every image of FOLDER's class sub-folders as a decision of kind 'imported' (no "
        "prediction; the folder name is the operator's label, dated by the file's modification time). Only the "
        "running model's classes are imported; other folders, unreadable files and images already stored are "
        "reported and skipped, so running the same import again adds nothing. Photos larger than 1024 px on "
        "their long side are downscaled to 1024 px (area interpolation) before they are stored as PNG.",
    )
    imports.add_argument("folder", type=Path, help="folder with one sub-folder per class")
    imports.add_argument("--model", type=Path, default=argparse.SUPPRESS,
                         help=f"bundle whose classes are used while no version is active yet "
                         f"(default: {model_default})")
    imports.add_argument("--station", default="import", help="station name recorded on the rows")
    return parser


def gui_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The window's options that were given, as settings overrides."""
    return {key: getattr(args, key) for key in GUI_OPTIONS if getattr(args, key, None) is not None}


def command_settings(args: argparse.Namespace) -> Settings:
    """The settings a command runs with: the window's, with this command's --data-dir/--database-url/--model/
    --base-data."""
    given = {key: str(getattr(args, key)) for key in ("data_dir", "database_url", "model", "base_data")
             if getattr(args, key, None) is not None}
    return load_settings(given)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command (``argv`` must name one)."""
    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "retrain": run_retrain_command, "export": run_export, "import": run_import,
    }
    if args.command is None:
        build_parser().error("a command is needed here: retrain, export or import")
    return commands[args.command](args)


def run_retrain_command(args: argparse.Namespace) -> int:
    progress = ProgressBars(sys.stderr)
    try:
        settings = command_settings(args)
        require_database(settings)
        job = RetrainJob(
            data_dir=settings.data_dir, database_url=settings.database_url,
            default_model=model_folder(settings), mode=Mode(args.mode),
            promote=Promote(args.promote), base_data_dir=settings.base_data, max_base_drop=settings.max_base_drop,
            learn_from_auto=settings.learn_from_auto,
        )
        import_tensorflow()  # quietly, before the retraining imports it
        result = run_retrain(job, progress)
    except (TrainingError, StorageError, SettingsError) as exc:
        progress.finish()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.finish()
        print("interrupted; no model version was registered", file=sys.stderr)
        return 130
    progress.finish()
    print(json.dumps(result.to_json()) if args.json else retrain_summary(result), flush=True)
    return 0


def require_database(settings: Settings) -> None:
    """A mistyped --data-dir must not create an empty data folder there (retrain and export only read one).
    A shared database is the site's: it is there or opening it says why."""
    if not settings.database_url and not (settings.data_dir / DB_NAME).is_file():
        raise StorageError(f"no station database ({DB_NAME}) in {settings.data_dir}")


def _open_existing(settings: Settings) -> Storage:
    require_database(settings)
    return Storage(settings.data_dir, sweep=False, database_url=settings.database_url)  # export only reads


def shown(name: str) -> str:
    """A file or folder name as printable text: bytes that are not UTF-8 are shown as \\xNN, never an error."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_export(args: argparse.Namespace) -> int:
    from station.export import ExportError, export_decisions

    try:
        with _open_existing(command_settings(args)) as storage:
            result = export_decisions(storage, args.out, since=args.since, until=args.until, force=args.force)
    except (ExportError, StorageError, SettingsError) as exc:
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
        settings = command_settings(args)
        with Storage(settings.data_dir, database_url=settings.database_url) as storage:
            model_name, labels = active_model_labels(storage, model_folder(settings))
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
    """The ``station`` command: a command runs here; without one the window starts (``station.app.main``)."""
    args = build_parser().parse_args(argv)  # --help and mistakes are answered here, before Qt loads
    if args.command is not None:
        return main(argv)
    from station.app import main as gui_main

    return gui_main(argv)
