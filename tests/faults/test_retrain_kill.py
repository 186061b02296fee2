"""kill -9 of a real retraining child at a phase: the models folder and the database stay as they were."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from station.retraining import RetrainJob, child_main, clean_partials
from station.settings import bundled_model_dir
from station.storage import Storage
from tests.conftest import CLASSES
from tests.faults.helpers import assert_data_folder_intact, decision
from training.messages import RetrainProgress

TIMEOUT_S = 300


# Every phase a fast retraining reports, in order: before TensorFlow, while embedding, while fitting, and
# after the candidate is complete but before it is registered.
@pytest.mark.parametrize("phase", ["preparing", "base embeddings", "site embeddings", "fit head", "done"])
def test_killed_retraining_leaves_models_and_database_as_they_were(tmp_path: Path, phase: str) -> None:
    with Storage(tmp_path) as storage:
        saved = [storage.save(decision(i, CLASSES[i % len(CLASSES)])).id for i in range(18)]
    context = multiprocessing.get_context("spawn")
    events, cancel = context.Queue(), context.Event()
    child = context.Process(target=child_main, args=(RetrainJob(tmp_path, bundled_model_dir()), events, cancel))
    child.start()
    try:
        while True:
            event = events.get(timeout=TIMEOUT_S)
            assert isinstance(event, RetrainProgress), event
            if event.phase == phase:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    clean_partials(tmp_path)  # what the window does once its retraining child has ended
    with Storage(tmp_path) as storage:
        registered = {storage.version_path(v).name for v in storage.versions() if v.mode != "bundled"}
    left = {p.name for p in (tmp_path / "models").iterdir()} if (tmp_path / "models").is_dir() else set()
    assert left == registered  # no partial folder, no unregistered candidate
    assert_data_folder_intact(tmp_path, saved)
