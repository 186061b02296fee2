"""Small file helpers shared by every command (no TensorFlow import)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from training.errors import TrainingError


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    Path(tmp).chmod(0o644)  # mkstemp makes it private; bundles and metrics are meant to be shared
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TrainingError(f"model bundle {path.parent}: missing {path.name} ({what})") from exc
    except (OSError, ValueError) as exc:
        raise TrainingError(f"model bundle {path.parent}: {path.name} is unreadable: {exc}") from exc


def make_work_folder(beside: Path) -> Path:
    """A hidden folder next to ``beside`` to assemble it in, renamed into place when complete."""
    work = Path(tempfile.mkdtemp(dir=beside.parent, prefix=f".{beside.name}.partial-"))
    work.chmod(0o755)  # mkdtemp makes it private
    return work
