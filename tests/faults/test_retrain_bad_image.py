"""One corrupt stored image never blocks retraining: it is skipped and named (decision id and path)."""

from __future__ import annotations

import pytest

from station.retraining import RetrainJob, run_retrain
from station.storage import Storage
from tests.unit.test_retraining import FakeCore, station_dir, stub  # noqa: F401 (station_dir: a fixture)
from training.preprocess import load_prepared


class DecodingCore(FakeCore):
    """The stub core, decoding every image it is given as the real one does (embedding missing or full mode)."""

    def __call__(self, request, progress=None, cancelled=lambda: False):
        for sample in request.samples:
            if sample.embedding is None or request.mode == "full":
                load_prepared(sample.image, 32)
        return super().__call__(request, progress, cancelled)


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_truncated_image_is_skipped_and_named(station_dir, monkeypatch, mode: str) -> None:  # noqa: F811
    data_dir, bundle = station_dir
    stub(monkeypatch, DecodingCore())
    with Storage(data_dir) as storage:
        victim = storage.decisions()[3]
        path = storage.image_file(victim)
    path.write_bytes(path.read_bytes()[:200])  # truncated on disk
    events: list[dict] = []
    result = run_retrain(RetrainJob(data_dir, bundle, mode=mode), events.append)
    assert result.decisions == 14
    [bad] = result.skipped_unreadable_images
    assert bad.id == victim.id and bad.path == str(path) and bad.reason
    assert any(str(victim.id) in e.phase and str(path) in e.phase for e in events)
