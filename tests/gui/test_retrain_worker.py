"""The retrain worker against child processes that crash or get cancelled (no TensorFlow in the child)."""

from __future__ import annotations

from pathlib import Path

from station.retraining import RetrainJob
from station.workers import RetrainWorker
from tests.child_targets import crashing_child, slow_child

WAIT_MS = 60_000


def test_a_crashed_child_is_reported_and_its_partial_files_removed(qtbot, tmp_path: Path) -> None:
    worker = RetrainWorker(RetrainJob(tmp_path, tmp_path / "model"), target=crashing_child)
    with qtbot.waitSignal(worker.retrain_failed, timeout=WAIT_MS) as failed:
        worker.start()
    assert "ended unexpectedly (exit code 3)" in failed.args[0]
    assert worker.wait(10_000)
    assert list((tmp_path / "models").iterdir()) == []


def test_cancel_stops_the_child(qtbot, tmp_path: Path) -> None:
    worker = RetrainWorker(RetrainJob(tmp_path, tmp_path / "model"), target=slow_child)
    with qtbot.waitSignal(worker.retrain_progress, timeout=WAIT_MS):
        worker.start()
    with qtbot.waitSignal(worker.retrain_cancelled, timeout=WAIT_MS):
        worker.cancel()
    assert worker.wait(10_000)
