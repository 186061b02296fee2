"""Soak: the real station window (offscreen) labelling a folder with ``--interval 0``, driven by key presses
(confirm, correct and undo mixed) while retrainings run one after another; then the data folder is checked.

    python bench/soak.py [--presses 5000] [--bundle DIR] [--seed 0]

Prints decisions/s, the process's RSS after the warm-up and at the end, and the integrity checks:
``PRAGMA integrity_check``, every row's image present with its sha256, every decision reported saved and
not undone stored (and nothing else), nothing left to sweep when the folder is opened again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QEventLoop, QObject, Qt, Slot  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bench.common import bundle_or_exit  # noqa: E402

WAIT_S = 120.0
WARM_UP = 200  # presses before the first RSS reading (model warm, caches filled)


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_photos(folder: Path, count: int, seed: int) -> None:
    """Distinct small photos: noise around one colour per image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        colour = rng.integers(0, 256, 3)
        image = np.clip(colour + rng.normal(0, 20, (120, 160, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def wait_until(app: QApplication, condition: Callable[[], bool], what: str, seconds: float = WAIT_S) -> bool:
    """Process events until ``condition``; False after ``seconds`` when ``what`` is empty, else exit."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            if not what:
                return False
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    return True


class Outcomes(QObject):
    """What the storage thread reported (decisions through the window), collected on the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: set[int] = set()
        self.removed: set[int] = set()
        self.failures: list[str] = []

    @Slot(object)
    def on_saved(self, record: Any) -> None:
        self.saved.add(record.id)

    @Slot(object)
    def on_removed(self, record: Any) -> None:
        self.removed.add(record.id)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.failures.append(message)


def check_folder(data_dir: Path, expected: set[int]) -> list[str]:
    """The fault suite's checks; returns the problems found (empty: all good)."""
    from station.storage import DB_NAME, Storage

    problems = []
    with sqlite3.connect(data_dir / DB_NAME) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchall()
    if result != [("ok",)]:
        problems.append(f"integrity_check: {result[:3]}")
    with Storage(data_dir) as storage:
        swept = storage.swept.removed
        records = storage.decisions()
    problems += [f"left to sweep: {p}" for p in swept]
    for r in records:
        path = data_dir / r.image_path
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != r.sha256:
            problems.append(f"decision {r.id}: image missing or changed")
    stored = {r.id for r in records}
    if stored != expected:
        problems.append(f"stored ids differ from saved-and-not-undone: {len(stored - expected)} extra, "
                        f"{len(expected - stored)} missing")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=5000)
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the bundled model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bundle = bundle_or_exit(args.bundle)

    from station import app as station_app
    from station.inference import Classifier
    from station.retraining import RetrainJob
    from station.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    write_photos(work / "photos", args.presses + 10, args.seed)  # every confirm/correct takes a new photo
    settings = Settings(source=str(work / "photos"), interval=0.0, threshold=0.6, data_dir=work / "data",
                        station_name="soak", model=str(bundle), base_data=None, auto_retrain_every=0,
                        max_base_drop=0.05)
    qt = QApplication.instance() or QApplication([])
    classifier = Classifier.load(bundle)
    factory, _ = station_app.choose_source(settings)
    window = station_app.assemble_window(settings, classifier, factory, None,
                                         retrain_job=lambda mode: RetrainJob(settings.data_dir, bundle, mode=mode))
    outcomes = Outcomes()
    window.decision_saved.connect(outcomes.on_saved)
    window.decision_removed.connect(outcomes.on_removed)
    window.storage.storage_failed.connect(outcomes.on_failed)
    saved, removed, failures = outcomes.saved, outcomes.removed, outcomes.failures
    window.show()
    window.activateWindow()
    wait_until(qt, window.isActiveWindow, "the window")
    station_app.start_workers(window)

    rng = random.Random(args.seed)
    retrains = 0
    focus_lost = 0
    rss_start = 0.0
    started = time.monotonic()
    for press in range(args.presses):
        if press == WARM_UP:
            rss_start = rss_mb()
            started_after_warm_up, saved_at_warm_up = time.monotonic(), len(saved)
        if press >= WARM_UP and window.models.retrain_worker is None:  # a retraining runs through the soak
            window.models.start_retrain("fast")
            retrains += 1
        done = len(saved) + len(removed) + len(failures)
        live = len(saved) - len(removed)
        roll = rng.random()
        if roll < 0.10 and live > 0:
            key = Qt.Key.Key_Backspace
        else:
            wait_until(qt, lambda: window.desk.shown is not None and not window.desk.shown_is_decided,
                       "a new prediction")
            key = Qt.Key.Key_Space if roll < 0.75 else Qt.Key(Qt.Key.Key_1 + rng.randrange(len(classifier.labels)))
        for _ in range(3):  # a press the retraining dialog took (it had the focus) is pressed again
            if not window.isActiveWindow():
                focus_lost += 1
                window.activateWindow()
                wait_until(qt, window.isActiveWindow, "the window")
            QTest.keyClick(window, key)
            if wait_until(qt, lambda d=done: len(saved) + len(removed) + len(failures) > d, "", 20.0):
                break
        else:
            raise SystemExit(f"press {press}: no write after 3 tries ({window.video.flash_text()!r})")
        if press % 500 == 0:
            print(f"press {press}: {len(saved)} saved, {len(removed)} undone, RSS {rss_mb():.0f} MB, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    elapsed = time.monotonic() - started_after_warm_up
    decided = len(saved) - saved_at_warm_up
    rss_end = rss_mb()
    if window.models.retrain_worker is not None:
        window.models.retrain_worker.cancel()
        wait_until(qt, lambda: window.models.retrain_worker is None, "the last retraining to stop")
    window.shutdown()
    problems = check_folder(settings.data_dir, saved - removed)

    print(f"presses: {args.presses} ({len(saved)} saved, {len(removed)} undone, {len(failures)} refused or failed)")
    print(f"retrainings started: {retrains}; {time.monotonic() - started:.0f} s in all; "
          f"window re-activated {focus_lost} times")
    print(f"decisions/s after warm-up: {decided / elapsed:.1f} ({decided} in {elapsed:.1f} s)")
    print(f"RSS: {rss_start:.0f} MB after {WARM_UP} presses, {rss_end:.0f} MB at the end "
          f"({rss_end - rss_start:+.0f} MB)")
    print("integrity: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    for problem in problems[:20]:
        print(f"  {problem}")
    for failure in failures[:5]:
        print(f"  storage said: {failure}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
