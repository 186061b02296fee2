"""``python -m station retrain``: retrain on the stored decisions from the shell (no Qt, no window).

``entry`` is the ``station`` command: ``station retrain ...`` comes here, anything else starts the GUI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from station.retraining import MODES, PROMOTE_POLICIES, RetrainJob, run_retrain
from station.settings import SettingsError, bundled_model_dir
from station.storage import StorageError
from training.errors import TrainingError


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
    return parser


def format_progress(event: dict[str, Any]) -> str:
    eta = event.get("eta")
    eta_text = "ETA —" if eta is None else f"ETA {eta:.0f} s"
    return f"{event.get('phase', '?')} {event.get('done', 0)}/{event.get('total', 0)}, {eta_text}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def progress(event: dict[str, Any]) -> None:
        print(format_progress(event), file=sys.stderr, flush=True)

    try:
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


def entry(argv: Sequence[str] | None = None) -> int:
    """The ``station`` command: ``retrain ...`` runs here; anything else starts the GUI exactly as before."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["retrain"]:
        return main(args)
    from station.app import main as gui_main

    return gui_main(argv)
