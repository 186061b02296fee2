"""Station-side retraining: decisions -> candidate -> model version -> promotion; child process; CLI.

Most tests stub ``training.retrain.retrain`` (cheap); two run the real fast retrain on the tiny trained
bundle: one in-process, one in a spawned child process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import station.app
from station.cli import entry
from station.retraining import RetrainJob, child_main, clean_partials, current_model, run_retrain
from station.storage import NewDecision, Storage, StorageError
from tests.conftest import CLASSES
from tests.fixture_outcomes import outcome, paired, report, scores
from training import retrain as core
from training.errors import TrainingError
from training.messages import PartScores, RetrainFailed, RetrainOutcome, RetrainProgress, RetrainStopped
from training.quiet import TENSORFLOW_NOISE

LABELS = ["a", "b", "c"]


# ------------------------------------------------------------------------------------------------ helpers


def site_frames(per_class: int, labels: list[str] = CLASSES, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Another site's photos (as tests/unit/test_retrain.py::site_photos): one flat colour with noise per class."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, name in enumerate(labels):
        colour = np.array([(60 * k) % 256, (140 + 70 * k) % 256, (230 - 40 * k) % 256])
        for _ in range(per_class):
            frames.append((name, np.clip(colour + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)))
    return frames


def store_decisions(
    data_dir: Path, frames: list[tuple[str, np.ndarray]], labels: list[str], model_version: str | None,
    embedding: np.ndarray | None = None,
) -> None:
    """The model was systematically wrong: it always predicted the next class; the operator corrected it."""
    with Storage(data_dir) as storage:
        for label, image in frames:
            wrong = labels[(labels.index(label) + 1) % len(labels)]
            storage.save(NewDecision(image, wrong, 0.9, {wrong: 0.9}, label, model_version, embedding))


def fake_bundle(folder: Path, labels: list[str] = LABELS) -> Path:
    """Enough of a bundle for the station side (the stubbed core never loads the model)."""
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder


class FakeCore:
    """Stands in for ``training.retrain.retrain``: records the request, writes the candidate folder, reports."""

    def __init__(self, gate_passed: bool = True, fail: BaseException | None = None) -> None:
        self.gate_passed, self.fail = gate_passed, fail
        self.requests: list[core.RetrainRequest] = []

    def __call__(self, request: core.RetrainRequest, progress: Any = None, cancelled: Any = lambda: False):
        self.requests.append(request)
        progress(RetrainProgress("fit head", 2, 4, 1.0, 1.0))
        # what the real core leaves while writing: a partial work folder, then the renamed bundle
        partial = request.out.parent / f".{request.out.name}.partial-x1"
        partial.mkdir(parents=True)
        if self.fail is not None:
            raise self.fail
        request.out.mkdir(exist_ok=True)  # the station reserved the name with an empty folder
        (request.out / "model.keras").write_bytes(b"stub")
        shutil.copy(request.parent / "labels.json", request.out / "labels.json")
        shutil.rmtree(partial)
        progress(RetrainProgress("done", 4, 4, 2.0, 0.0))
        counts = {"base_train": 12, "site_train": len(request.samples),
                  "site_judged": sum(s.running_label is not None for s in request.samples)}
        reason = "stub gate passed" if self.gate_passed else "held-out decisions macro-F1 did not rise"
        return report(request.out, self.gate_passed, counts=counts, gate_reason=reason,
                      current=PartScores(scores(0.25, labels=LABELS), scores(0.5, labels=LABELS)),
                      candidate_metrics=PartScores(scores(0.75, labels=LABELS), scores(0.5, labels=LABELS)))


@pytest.fixture
def station_dir(tmp_path: Path) -> tuple[Path, Path]:
    """(data dir with 15 decisions on labels a/b/c, fake default bundle "bundle-a")."""
    data_dir = tmp_path / "station"
    store_decisions(data_dir, site_frames(5, LABELS), LABELS, "bundle-a")
    return data_dir, fake_bundle(tmp_path / "resources" / "bundle-a")


def stub(monkeypatch: pytest.MonkeyPatch, fake: FakeCore | None = None) -> FakeCore:
    fake = fake or FakeCore()
    monkeypatch.setattr(core, "retrain", fake)
    return fake


def versions(data_dir: Path) -> dict[str, str]:
    with Storage(data_dir) as storage:
        return {v.version: v.status for v in storage.versions()}


def leftovers(data_dir: Path) -> list[Path]:
    models = data_dir / "models"
    return sorted(models.iterdir()) if models.is_dir() else []


# ------------------------------------------------------------------------------------------------ job, versions


def test_job_is_picklable_and_bad_options_are_refused(tmp_path: Path) -> None:
    job = RetrainJob(tmp_path / "d", tmp_path / "m", promote="never", base_data_dir=tmp_path / "b")
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(TrainingError, match="unknown retraining mode 'quick'"):
        run_retrain(RetrainJob(tmp_path / "d", tmp_path / "m", mode="quick"))
    with pytest.raises(TrainingError, match="promotion policy"):
        run_retrain(RetrainJob(tmp_path / "d", tmp_path / "m", promote="maybe"))
    assert not (tmp_path / "d").exists()  # refused before touching the data folder


def test_no_decisions_is_a_clear_error(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "bundle-a")
    with pytest.raises(TrainingError, match="no decisions stored yet in") as err:
        run_retrain(RetrainJob(tmp_path / "d", bundle))
    assert str(tmp_path / "d") in str(err.value)
    assert versions(tmp_path / "d") == {}


def test_current_model_registers_the_bundled_model_once(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "resources" / "trashnet-b2")
    with Storage(tmp_path / "d") as storage:
        assert current_model(storage, bundle) == ("trashnet-b2", bundle)
        assert current_model(storage, bundle) == ("trashnet-b2", bundle)
        [row] = storage.versions()
        assert (row.version, row.mode, row.status, row.parent) == ("trashnet-b2", "bundled", "active", None)
        assert storage.version_path(row) == bundle


def test_current_model_keeps_the_version_another_process_activated_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = fake_bundle(tmp_path / "resources" / "trashnet-b2")
    with Storage(tmp_path / "d") as storage, Storage(tmp_path / "d") as other:
        first_read = Storage.active_version

        def nothing_active_yet(self: Storage) -> None:
            # this station finds no active version; another one registers its own right after that read
            other.add_version("r1", other.models_dir / "r1", "fast", status="active")
            monkeypatch.setattr(Storage, "active_version", first_read)

        monkeypatch.setattr(Storage, "active_version", nothing_active_yet)
        assert current_model(storage, bundle) == ("r1", tmp_path / "d" / "models" / "r1")
        assert {v.version: v.status for v in storage.versions()} == {"r1": "active"}  # not retired by the bundle


def test_auto_promotes_only_when_the_gate_passes(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch, FakeCore(gate_passed=False))
    events: list[RetrainProgress] = []
    result = run_retrain(RetrainJob(data_dir, bundle), events.append)
    assert (result.version, result.parent, result.gate_passed, result.promoted) == (
        "r1", "bundle-a", False, False)
    assert versions(data_dir) == {"r1": "candidate", "bundle-a": "active"}  # the running model stays

    stub(monkeypatch, FakeCore(gate_passed=True))
    result = run_retrain(RetrainJob(data_dir, bundle), events.append)
    assert (result.version, result.parent, result.promoted, result.status) == ("r2", "bundle-a", True,
                                                                                            "active")
    assert versions(data_dir) == {"r2": "active", "r1": "candidate", "bundle-a": "retired"}
    assert [e.phase for e in events[:3]] == ["preparing", "fit head", "done"]

    assert RetrainOutcome.from_json(json.loads(json.dumps(result.to_json()))) == result  # JSON and back
    assert result.candidate == str(data_dir / "models" / "r2")
    assert result.current.decisions.accuracy == 0.25
    assert result.candidate_metrics.decisions.recall("a") == 0.75
    # every decision trains; all 15 were judged live by the running model, so all 15 count for the gate
    assert result.counts == {"base_train": 12, "site_train": 15, "site_judged": 15}
    assert result.decisions == 15
    assert result.classes_without_decisions == [] and isinstance(result.seconds, float)
    with Storage(data_dir) as storage:
        row = storage.get_version("r2")
        assert row is not None and row.mode == "fast" and row.path == "models/r2"
        assert row.counts == result.counts and row.metrics["gate_reason"] == "stub gate passed"
        assert row.metrics["candidate_metrics"]["decisions"]["macro_f1"] == 0.75


@pytest.mark.parametrize(("policy", "gate_passed", "promoted"), [
    ("always", False, True), ("never", True, False), ("auto", True, True),
])
def test_promotion_policies(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, policy: str, gate_passed: bool, promoted: bool
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch, FakeCore(gate_passed=gate_passed))
    result = run_retrain(RetrainJob(data_dir, bundle, promote=policy))
    assert result.promoted is promoted
    with Storage(data_dir) as storage:
        assert current_model(storage, bundle)[0] == ("r1" if promoted else "bundle-a")
        assert storage.get_version("r1").status == ("active" if promoted else "candidate")  # type: ignore[union-attr]


def test_rollback_to_an_earlier_version(station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch)
    run_retrain(RetrainJob(data_dir, bundle, promote="always"))
    run_retrain(RetrainJob(data_dir, bundle, promote="always"))
    with Storage(data_dir) as storage:
        assert current_model(storage, bundle) == ("r2", data_dir / "models" / "r2")
        assert storage.get_version("r2").parent == "r1"  # type: ignore[union-attr]
        storage.activate("bundle-a")
        assert current_model(storage, bundle) == ("bundle-a", bundle)
        storage.activate("r1")
        assert current_model(storage, bundle) == ("r1", data_dir / "models" / "r1")
    assert versions(data_dir) == {"r2": "retired", "r1": "active", "bundle-a": "retired"}


def test_embeddings_are_reused_only_from_the_parents_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "station"
    bundle = fake_bundle(tmp_path / "bundle-a")
    with Storage(data_dir) as storage:  # models/ is written with the folder open, as retraining does
        fake_bundle(data_dir / "models" / "r1")
        storage.add_version("bundle-a", bundle, "bundled", status="retired")
        storage.add_version("r1", data_dir / "models" / "r1", "fast", parent="bundle-a", status="active")
        storage.add_version("r2", data_dir / "models" / "r2", "full", parent="r1")  # a new backbone
        storage.add_version("r3", data_dir / "models" / "r3", "fast", parent="r2")
    frames = site_frames(1, LABELS)
    emb = np.arange(4, dtype=np.float32)
    for model_version in ("bundle-a", "r1", "r2", "r3", "elsewhere", None):
        store_decisions(data_dir, frames[:1], LABELS, model_version, emb)
    with Storage(data_dir) as storage:  # a decision whose image file is gone and whose embedding is of no use
        store_decisions(data_dir, frames[1:2], LABELS, "r2", emb)
        storage.image_file(storage.recent(1)[0]).unlink()
    fake = stub(monkeypatch)
    result = run_retrain(RetrainJob(data_dir, bundle, promote="never"))
    reused = [s.embedding is not None for s in fake.requests[0].samples]
    assert reused == [True, True, False, False, False, False]
    np.testing.assert_array_equal(fake.requests[0].samples[0].embedding, emb)
    assert fake.requests[0].parent == data_dir / "models" / "r1"
    assert fake.requests[0].cache_dir == data_dir / "cache"
    assert result.skipped_missing_images == 1 and result.parent == "r1" and result.version == "r4"


def test_classes_without_decisions_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "station"
    store_decisions(data_dir, [f for f in site_frames(3, LABELS) if f[0] != "b"], LABELS, None)
    stub(monkeypatch)
    result = run_retrain(RetrainJob(data_dir, fake_bundle(tmp_path / "bundle-a")))
    assert result.classes_without_decisions == ["b"]


# ------------------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("failure", [core.RetrainCancelled("cancelled"), RuntimeError("boom"), KeyboardInterrupt()],
                         ids=["cancel", "exception", "interrupt"])
def test_failure_inside_retrain_leaves_no_row_and_no_folder(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch, FakeCore(fail=failure))
    with pytest.raises(type(failure)):
        run_retrain(RetrainJob(data_dir, bundle))
    assert leftovers(data_dir) == [] and versions(data_dir) == {}


def test_cancel_after_the_candidate_is_written_registers_nothing(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, bundle = station_dir
    fake = stub(monkeypatch)
    with pytest.raises(core.RetrainCancelled):
        run_retrain(RetrainJob(data_dir, bundle, promote="always"), cancelled=lambda: bool(fake.requests))
    assert leftovers(data_dir) == [] and versions(data_dir) == {}


def test_failed_registration_removes_the_candidate(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch)

    def locked(*args: object, **kwargs: object) -> None:
        raise StorageError("cannot register model version 'r1': database is locked")

    monkeypatch.setattr(Storage, "add_version", locked)
    with pytest.raises(StorageError, match="locked"):
        run_retrain(RetrainJob(data_dir, bundle))
    monkeypatch.undo()
    assert leftovers(data_dir) == [] and "r1" not in versions(data_dir)


def test_real_cancel_before_any_work(station_dir: tuple[Path, Path]) -> None:
    data_dir, bundle = station_dir
    with pytest.raises(core.RetrainCancelled):
        run_retrain(RetrainJob(data_dir, bundle), cancelled=lambda: True)
    assert leftovers(data_dir) == [] and versions(data_dir) == {}


def test_missing_default_bundle(station_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, _ = station_dir
    with pytest.raises(TrainingError, match="model bundle not found"):
        run_retrain(RetrainJob(data_dir, tmp_path / "nowhere"))


def test_clean_partials(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with Storage(tmp_path) as storage:  # the station's own Storage stays open meanwhile
        for name in (".r3.partial-abc", ".r4.partial-x", "r2", ".r2.old", "r5"):
            (models / name).mkdir(parents=True)
        storage.add_version("r5", models / "r5", "fast")
        assert sorted(p.name for p in clean_partials(tmp_path)) == [".r3.partial-abc", ".r4.partial-x", "r2"]
    assert sorted(p.name for p in models.iterdir()) == [".r2.old", "r5"]  # r2 had no version row
    assert clean_partials(tmp_path / "no-such-folder") == []


# ------------------------------------------------------------------------------------------------ child process


def drain(events: queue.Queue) -> list[Any]:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def test_child_main_in_process_emits_progress_then_result(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch)
    events: queue.Queue = queue.Queue()
    child_main(RetrainJob(data_dir, bundle), events, threading.Event())
    got = drain(events)
    assert [type(e) for e in got] == [RetrainProgress] * 3 + [RetrainOutcome]
    assert got[1] == RetrainProgress("fit head", 2, 4, 1.0, 1.0)
    assert got[-1].version == "r1" and got[-1].promoted is True


def test_child_main_reports_cancel_and_errors(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, bundle = station_dir
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    cancel.set()
    stub(monkeypatch)
    child_main(RetrainJob(data_dir, bundle), events, cancel)
    assert drain(events)[-1] == RetrainStopped()

    child_main(RetrainJob(data_dir, bundle, mode="quick"), events, threading.Event())
    assert drain(events) == [RetrainFailed("unknown retraining mode 'quick'; use --mode fast or --mode full")]

    stub(monkeypatch, FakeCore(fail=ValueError("bad shape")))
    with caplog.at_level(logging.ERROR, logger="station.retraining"):
        child_main(RetrainJob(data_dir, bundle), events, threading.Event())
    assert drain(events)[-1] == RetrainFailed("ValueError: bad shape")
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)  # traceback logged
    assert leftovers(data_dir) == [] and versions(data_dir) == {}


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_prints_progress_to_stderr_and_the_json_line_with_json(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch)
    code = entry(["retrain", "--data-dir", str(data_dir), "--model", str(bundle), "--promote", "never", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    [line] = out.strip().splitlines()
    last = json.loads(line)
    assert last["candidate"] == str(data_dir / "models" / "r1") and last["promoted"] is False
    assert isinstance(last["seconds"], float) and last["mode"] == "fast" and last["status"] == "candidate"
    assert last["current"]["decisions"]["accuracy"] == 0.25
    assert last["candidate_metrics"]["base_test"]["macro_f1"] == 0.5
    assert RetrainOutcome.from_json(last).version == "r1"  # the JSON line reads back into the same type
    assert [line.split("  (")[0] for line in err.splitlines()] == ["preparing", "fit head"]  # one line per phase


def test_cli_prints_a_summary_without_json(
    station_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, bundle = station_dir
    stub(monkeypatch)
    assert entry(["retrain", "--data-dir", str(data_dir), "--model", str(bundle), "--promote", "never"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"candidate r1 (fast retrain of {bundle.name}): not promoted: kept as candidate")
    assert "{" not in out
    assert "held-out decisions (4) accuracy" in out and "0.250" in out


def test_cli_errors_exit_2(
    station_dir: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, bundle = station_dir
    assert entry(["retrain", "--data-dir", str(data_dir), "--model", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: model bundle not found: {tmp_path / 'nowhere'} (version nowhere)"
    assert entry(["retrain", "--data-dir", str(tmp_path / "typo"), "--model", str(bundle)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: no station database") and out == "" and not (tmp_path / "typo").exists()
    Storage(tmp_path / "empty").close()
    assert entry(["retrain", "--data-dir", str(tmp_path / "empty"), "--model", str(bundle)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: no decisions stored yet in") and out == ""


def test_entry_sends_anything_else_to_the_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(station.app, "main", lambda argv=None: calls.append(argv) or 0)
    assert entry(["--source", "0"]) == 0
    monkeypatch.setattr("sys.argv", ["station", "--model", "x"])
    assert entry() == 0
    assert calls == [["--source", "0"], None]  # no arguments given: the GUI parses sys.argv itself, as before


# ------------------------------------------------------------------------------------------------ real retraining


def test_real_fast_retrain_learns_the_site_and_becomes_active(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    data_dir = tmp_path / "station"
    store_decisions(data_dir, site_frames(10), CLASSES, run.name)
    events: list[dict] = []
    result = run_retrain(RetrainJob(data_dir, run, promote="always", base_data_dir=data), events.append)

    assert result.counts["site_train"] == result.counts["site_judged"] == 60
    assert result.candidate_metrics.decisions.count == 60  # cross-validated, all of them
    assert result.current.decisions.accuracy == 0.0  # the running model's live predictions were all wrong
    assert result.gate_rule in ("site-better", "base-drop")  # the 1-epoch test model's base score is noise
    assert result.candidate_metrics.decisions.accuracy >= 0.5  # 3x chance; tiny-model features vary by run
    assert result.promoted is True and result.parent == run.name and result.version == "r1"
    assert events[0].phase == "preparing" and events[-1].phase == "done"
    assert RetrainOutcome.from_json(json.loads(json.dumps(result.to_json()))) == result  # real numbers, JSON and back

    from training.model import load_bundle

    assert load_bundle(result.candidate).labels == CLASSES
    assert leftovers(data_dir) == [data_dir / "models" / "r1"]  # no partial folders
    assert versions(data_dir) == {"r1": "active", run.name: "retired"}
    with Storage(data_dir) as storage:
        assert current_model(storage, run) == ("r1", data_dir / "models" / "r1")
        assert storage.get_version("r1").metrics["gate_passed"] == result.gate_passed  # type: ignore[union-attr]

    # r1 keeps the bundled backbone: its retraining uses the embeddings shipped in that bundle, not the base data.
    second = run_retrain(RetrainJob(data_dir, run, promote="never", base_data_dir=tmp_path / "no-base-data"))
    assert second.parent == "r1" and second.counts["base_train"] == result.counts["base_train"]
    assert not (data_dir / "cache").exists()  # nothing had to be computed


def test_real_spawned_child(
    trained_run: tuple[Path, Path, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The GUI's way: a spawned process runs child_main; events come back through a multiprocessing queue."""
    data, run, _ = trained_run
    data_dir = tmp_path / "station"
    store_decisions(data_dir, site_frames(3), CLASSES, run.name)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    cancel = context.Event()
    job = RetrainJob(data_dir, run, promote="never", base_data_dir=data)
    process = context.Process(target=child_main, args=(job, events, cancel), daemon=True)
    process.start()
    got: list[Any] = []
    deadline = time.monotonic() + 180
    try:
        while (not got or isinstance(got[-1], RetrainProgress)) and time.monotonic() < deadline:
            try:
                got.append(events.get(timeout=1.0))
            except queue.Empty:
                if not process.is_alive() and events.empty():
                    break
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
            process.join(5)
    assert got and isinstance(got[-1], RetrainOutcome), got[-1:]
    assert process.exitcode == 0
    assert {type(e) for e in got[:-1]} == {RetrainProgress} and got[-2].phase == "done"
    assert got[-1].promoted is False
    assert versions(data_dir) == {"r1": "candidate", run.name: "active"}
    assert not list((data_dir / "models").glob(".*"))
    printed = capfd.readouterr().err
    assert not [note for note in TENSORFLOW_NOISE if note in printed]  # TensorFlow's and LiteRT's notes stay quiet


def test_retraining_module_does_not_import_tensorflow_or_qt() -> None:
    import subprocess
    import sys

    code = ("import sys, station.retraining, station.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'PySide6') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=root)
    assert out.stdout.strip() == "[]"



def test_learning_trigger_counts_decisions_and_waits_for_a_running_one() -> None:
    from station.retraining import LearningTrigger

    trigger = LearningTrigger(every=2)
    trigger.decision_saved()
    assert not trigger.due(running=False)
    trigger.decision_saved()
    assert trigger.due(running=False) and not trigger.due(running=True)
    trigger.started()
    assert trigger.pending == 0 and not trigger.due(running=False)
    off = LearningTrigger(every=0)
    for _ in range(100):
        off.decision_saved()
    assert not off.due(running=False)


def test_outcome_line_names_the_version_the_verdict_and_the_rule() -> None:
    from station.retraining import outcome_line

    result = outcome(Path("r4"), "r4", gate_rule="site-better", paired=paired(40, 20, 30))
    assert outcome_line(result) == "r4 now running (site-better, site 50% → 75% of 40)"
    declined = outcome(Path("r5"), "r5", promoted=False, gate_rule="no-site-decisions", paired=None)
    assert outcome_line(declined) == "r5 kept as a candidate (no-site-decisions)"
