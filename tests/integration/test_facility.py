"""Issue #17's "done when", end to end with real processes: two station windows (``python -m station``), each
with its own name and camera folder, sort into one PostgreSQL database; ``station retrain`` from a third process
learns from both stations' decisions and promotes its model; both running stations take it up without a restart.

Everything is observed from outside, through the database: a station runs the new model once the decisions it
writes carry the new version's name (its classifier stamps each prediction). The windows are offscreen; on a real
display server: ``QT_QPA_PLATFORM=xcb xvfb-run -a python -m pytest tests/integration/test_facility.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from station.storage import Storage
from tests.conftest import MINI_DATASET

ROOT = Path(__file__).resolve().parents[2]
# Each station's camera: a few TrashNet photos of its own classes (a folder source is a slideshow with interval > 0).
CAMERAS = {"line-1": ("cardboard", "glass", "metal"), "line-2": ("paper", "plastic", "trash")}
# Auto mode confirms an item AUTO_DELAY_S after it is shown and the folder then serves the next photo at once: about
# two decisions a second per station. The slideshow's own pace (SLIDE_S) is slower, so items never pile up.
AUTO_DELAY_S = "0.5"
SLIDE_S = "2"
BEFORE_RETRAIN = 3  # decisions each station has written before the retraining starts
START_S = 150.0  # two processes importing TensorFlow and loading a model side by side on a busy 2-core CI box
RETRAIN_S = 180.0
SWAP_S = 90.0  # POLL_S, then loading and warming up the new model beside the live view (busy CI box)


def camera_folder(folder: Path, classes: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True)
    for name in classes:
        shutil.copy(MINI_DATASET / name / f"{name}1.jpg", folder)
    return folder


@pytest.fixture
def site_env(tmp_path: Path) -> dict[str, str]:
    """Every process's environment: the site's own settings file, never the user's, and this checkout's code.

    ``learn_from_auto`` has no command-line option; the site's station.toml is where it is set. The stations decide
    in auto mode, so without it the retraining would have nothing to learn from.
    """
    config = tmp_path / "config" / "sorting-station"
    config.mkdir(parents=True)
    (config / "station.toml").write_text("learn_from_auto = true\n")
    return {**os.environ, "XDG_CONFIG_HOME": str(config.parent), "PYTHONPATH": str(ROOT),
            # offscreen unless the run asks for a real display (QT_QPA_PLATFORM=xcb under Xvfb)
            "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}


def station_command(name: str, camera: Path, data_dir: Path, url: str, bundle: Path) -> list[str]:
    return [
        sys.executable, "-m", "station", "--station-name", name, "--source", str(camera), "--interval", SLIDE_S,
        "--data-dir", str(data_dir), "--database-url", url, "--model", str(bundle),
        # hands-free: every photo is an item, confirmed by the station whatever its confidence; no key needed
        "--mode", "auto", "--auto-threshold", "0", "--auto-delay", AUTO_DELAY_S,
        "--auto-trust-checks", "0",  # no operator here to earn the trust: every item goes alone
        # the stations must not retrain by themselves: the retraining here is the third process's
        "--auto-retrain-every", "0",
        # Keras only: converting each model to LiteRT would double the CPU time and is not what this test is about
        "--inference-backend", "keras",
    ]


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


Seen = Counter[tuple[str, str | None]]  # decisions per (station, model version)


class Facility:
    """The running station processes and a reader of the shared database."""

    def __init__(self, storage: Storage, processes: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]) -> None:
        self.storage = storage
        self.processes = processes
        self.logs = logs

    def check_running(self) -> None:
        """Each station is still the process started first: nothing restarted it, nothing ended it."""
        for name, process in self.processes.items():
            assert process.poll() is None, f"station {name} exited ({process.returncode}):\n{tail(self.logs[name])}"

    def decisions(self) -> Seen:
        return Counter((r.station, r.model_version) for r in self.storage.decisions())

    def wait_until(self, done: Callable[[Seen], bool], timeout_s: float, what: str) -> Seen:
        """Poll the database until ``done(decisions)`` holds; the stations must keep running meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_running()
            seen = self.decisions()
            if done(seen):
                return seen
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {name}\n{tail(path)}" for name, path in self.logs.items())
                pytest.fail(f"{what} within {timeout_s:.0f} s; decisions {dict(seen)}\n{logs}")
            time.sleep(0.5)


@pytest.fixture
def facility(tmp_path: Path, pg_url: URL, retrainable_bundle: Path, site_env: dict[str, str]) -> Iterator[Facility]:
    url = pg_url.render_as_string(hide_password=False)
    data_dir = tmp_path / "shared"  # the folder every station mounts
    logs = {name: tmp_path / f"{name}.log" for name in CAMERAS}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, classes in CAMERAS.items():
            camera = camera_folder(tmp_path / f"camera-{name}", classes)
            with logs[name].open("wb") as log:  # the child keeps its own descriptor
                processes[name] = subprocess.Popen(station_command(name, camera, data_dir, url, retrainable_bundle),
                                                   cwd=ROOT, env=site_env, stdout=log, stderr=subprocess.STDOUT)
        # The stations and this reader open the new database at about the same moment: the write lock lets one
        # of them create the schema.
        with Storage(data_dir, "observer", sweep=False, database_url=url) as storage:
            yield Facility(storage, processes, logs)
    finally:
        for process in processes.values():
            process.terminate()  # SIGTERM: the station saves what is queued and exits (test_stop_signal.py)
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_two_stations_learn_together_and_both_take_up_the_promoted_model(
    facility: Facility, retrainable_bundle: Path, pg_url: URL, tmp_path: Path, site_env: dict[str, str]
) -> None:
    base = retrainable_bundle.name  # the version name the stations start with
    before = facility.wait_until(
        lambda seen: all(seen[(name, base)] >= BEFORE_RETRAIN for name in CAMERAS), START_S,
        f"each station writes {BEFORE_RETRAIN} decisions")
    assert {station for station, _ in before} == set(CAMERAS)

    retrain = subprocess.run(
        [sys.executable, "-m", "station", "retrain", "--data-dir", str(tmp_path / "shared"),
         "--database-url", pg_url.render_as_string(hide_password=False), "--model", str(retrainable_bundle),
         "--base-data", str(MINI_DATASET), "--mode", "fast", "--promote", "always", "--json"],
        cwd=ROOT, env=site_env, capture_output=True, text=True, timeout=RETRAIN_S)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    outcome = json.loads(retrain.stdout.splitlines()[-1])
    after_retrain = facility.decisions()
    # It read every decision stored when it started (both stations', all auto-confirmed: learn_from_auto reached
    # it through the site's settings) and no more than were stored when it ended.
    assert sum(before.values()) <= outcome["decisions"] <= sum(after_retrain.values())
    assert outcome["counts"]["site_train"] == outcome["decisions"]
    assert outcome["promoted"] and outcome["parent"] == base
    new = outcome["version"]
    assert facility.storage.active_version().version == new  # type: ignore[union-attr]

    # Both stations, still the processes started above (wait_until checks), now decide with the promoted model.
    facility.wait_until(lambda seen: all(seen[(name, new)] >= 1 for name in CAMERAS), SWAP_S,
                        f"both stations run {new}")
