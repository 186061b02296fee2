"""A folder of labelled images (one sub-folder per class) -> decisions of kind ``imported``. No Qt.

Imported decisions have no prediction (predicted_label and confidence None, empty probabilities, no embedding, no
model version); the folder name is the operator label. Only the running model's classes are accepted: other class
folders are reported and skipped. Each image is stored like a captured frame: decoded to RGB (EXIF orientation
applied), its long side downscaled to at most ``max_side`` px (INTER_AREA), then saved as PNG. The PNG encoding is
deterministic, so its sha256 identifies an image already stored: re-running an import adds nothing twice.
``created_at`` is the file's modification time, so a later export by date selects photos by when they were taken.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from station.retraining import current_model
from station.storage import IMPORTED, NewDecision, Storage, encode_png
from training.data import scan_dataset
from training.errors import TrainingError
from training.files import read_labels
from training.preprocess import load_rgb

MAX_SIDE = 1024  # a 12-megapixel photo stored losslessly at full size would take ~20 MB
IMPORT_STATION = "import"

Progress = Callable[[int, int], None]  # (files done, files to do)


@dataclass(frozen=True)
class ImportResult:
    folder: Path
    added: dict[str, int]  # new decisions per class, every known class found in the folder (0 included)
    duplicates: list[str] = field(default_factory=list)  # files (relative to folder) already stored
    unknown: dict[str, int] = field(default_factory=dict)  # class folder not in the model's labels -> its images
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    downscaled: int = 0  # added images whose long side was larger than max_side

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def active_model_labels(storage: Storage, default_model: Path) -> tuple[str, list[str]]:
    """(name, labels) of the station's active model; ``default_model`` is registered first if none is active yet."""
    if storage.active_version() is None:
        from training.model import load_bundle  # TensorFlow: only when a bundle is about to become active

        load_bundle(default_model)  # never register as active a bundle that does not load (labels or model)
    name, bundle = current_model(storage, default_model)
    return name, read_labels(bundle)


def check_import_folder(folder: Path) -> None:
    """Fail before anything is opened or created when the folder to import is not there."""
    if not folder.is_dir():
        raise TrainingError(f"folder to import not found: {folder}")


def downscale(image: NDArray[np.uint8], max_side: int = MAX_SIDE) -> NDArray[np.uint8]:
    """Shrink so the long side is ``max_side`` px (aspect kept, INTER_AREA: no aliasing); smaller images unchanged."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cast(NDArray[np.uint8], cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def import_folder(
    storage: Storage,
    folder: Path | str,
    labels: list[str],
    *,
    station: str = IMPORT_STATION,
    max_side: int = MAX_SIDE,
    progress: Progress | None = None,
) -> ImportResult:
    """Add every readable image of ``folder``'s known class sub-folders as an imported decision.

    Raises ``TrainingError`` when ``folder`` is missing or has no class sub-folders, ``StorageError`` when a
    decision cannot be stored (the ones already added stay; running the import again skips them).
    """
    folder = Path(folder).expanduser()
    check_import_folder(folder)
    # check_images=False: each photo is decoded once, below, and a failure there is reported the same way.
    dataset = scan_dataset(folder, check_images=False, allow_empty=True)
    known = set(labels)
    counts = dataset.counts()
    unknown = {name: n for name, n in counts.items() if name not in known}
    todo = [(rel, dataset.class_names[i]) for rel, i in dataset.items if dataset.class_names[i] in known]
    bad = [(rel, reason) for rel, reason in dataset.bad_files if rel.split("/", 1)[0] in known]

    added: Counter[str] = Counter()
    duplicates: list[str] = []
    downscaled = 0
    inside = folder.resolve()
    for done, (rel, label) in enumerate(todo, start=1):
        path = folder / rel
        if path.is_symlink() or not path.resolve().is_relative_to(inside):
            bad.append((rel, "a symbolic link (links are not followed)"))
            continue
        try:
            mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            original = load_rgb(path, max_side)  # a JPEG decodes at a reduced scale; a huge other image is refused
        except Exception as exc:  # PIL raises several types for bad data; all mean "unusable", as in scan_dataset
            bad.append((rel, f"cannot decode: {exc}"))
        else:
            image = downscale(original, max_side)
            digest = sha256(encode_png(image)).hexdigest()  # what Storage.save will compute for the same frame
            # Each new image is committed before the next is read, so this also catches repeats within the folder.
            if storage.find_sha256(digest) is not None:
                duplicates.append(rel)
            else:
                storage.save(NewDecision(
                    image=image, predicted_label=None, confidence=None, probabilities={}, operator_label=label,
                    station=station, kind=IMPORTED, created_at=mtime,
                ))
                added[label] += 1
                downscaled += image is not original
        if progress is not None:
            progress(done, len(todo))
    return ImportResult(
        folder=folder,
        added={name: added[name] for name in dataset.class_names if name in known},
        duplicates=duplicates,
        unknown=unknown,
        bad_files=sorted(bad),
        downscaled=downscaled,
    )
