"""A station stopped by SIGTERM (a service manager, ``kill``) saves the decisions on their way and exits 0,
instead of ending mid-write. A real ``python -m station`` process, deciding by itself in hands-free auto mode."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from station.storage import Storage
from tests.conftest import MINI_DATASET

ROOT = Path(__file__).resolve().parents[2]
START_S = 150.0  # importing TensorFlow and loading a model on a busy 2-core machine


def test_sigterm_saves_the_queued_decisions_and_exits_cleanly(tmp_path: Path, retrainable_bundle: Path) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    for name in ("glass", "metal", "paper"):
        shutil.copy(MINI_DATASET / name / f"{name}1.jpg", camera)
    data_dir = tmp_path / "data"
    log_path = tmp_path / "station.log"
    command = [
        sys.executable, "-m", "station", "--station-name", "line", "--source", str(camera), "--interval", "1",
        "--data-dir", str(data_dir), "--model", str(retrainable_bundle), "--inference-backend", "keras",
        "--mode", "auto", "--auto-threshold", "0", "--auto-delay", "0.2", "--auto-retrain-every", "0",
        "--auto-trust-checks", "0",  # deciding by itself from the first item (no operator here to earn trust)
    ]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # never the user's settings
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_S
        stored = 0
        while stored < 2:  # deciding by itself: the station is up and writing
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, f"no decisions within {START_S:.0f} s\n{log_path.read_text()}"
            time.sleep(0.5)
            if (data_dir / "station.db").exists():
                with Storage(data_dir, "observer", sweep=False) as storage:
                    stored = storage.count()
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text(errors="replace")
    assert code == 0, text  # without a handler SIGTERM ends the process at once (-15)
    assert "SIGTERM: stopping the station, saving the decisions on their way" in text
    assert "storage stopped; 0 write(s) not done" in text, text
    with Storage(data_dir, "observer", sweep=False) as storage:
        after = storage.decisions()
    assert len(after) >= stored and all(r.station == "line" for r in after)
    assert all((data_dir / r.image_path).is_file() for r in after)  # no row without its image
