"""Shared by the benchmark scripts: where the repository, the bundled model and TrashNet are."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "trashnet"


def bundle_or_exit(given: Path | None) -> Path:
    """``given``, else the bundled model; exit 1 with the reason when there is none."""
    from station.settings import SettingsError, bundled_model_dir

    if given is not None:
        return given
    try:
        return bundled_model_dir()
    except SettingsError as exc:
        print(f"{exc}; pass --bundle PATH", file=sys.stderr)
        raise SystemExit(1) from exc
