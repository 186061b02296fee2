"""Crashes: kill -9 while saving, leftovers of interrupted writes and retrainings swept at the next open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from station.retraining import clean_partials
from station.storage import Storage
from tests.faults.helpers import assert_data_folder_intact, decision, fill

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_while_saving_loses_nothing_reported_and_leaves_nothing(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    saved: list[int] = []
    for _ in range(3):  # a few kills, at whatever point each save happens to be
        saver = subprocess.Popen([sys.executable, "-m", "tests.faults.saver", str(tmp_path)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        for _ in range(15):
            saved.append(int(saver.stdout.readline()))
        os.kill(saver.pid, signal.SIGKILL)
        saver.wait(10)
        saver.stdout.close()
    with Storage(tmp_path) as storage:
        report = storage.swept
        referenced = {r.image_path for r in storage.decisions()}
    assert report.skipped is None
    for path in report.removed:  # whatever the kill left: temporaries or a file whose row never came
        assert path.relative_to(tmp_path).as_posix() not in referenced
    assert_data_folder_intact(tmp_path, saved)
    on_disk = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").rglob("*") if p.is_file()}
    assert on_disk == referenced  # no temporary, no orphan
    with Storage(tmp_path) as storage:
        assert storage.swept.removed == []  # nothing left to sweep after reopening


def test_open_sweeps_leftovers_and_never_a_file_a_row_points_to(tmp_path: Path) -> None:
    with Storage(tmp_path) as storage:
        kept = storage.save(decision(1))
        storage.add_version("r1", storage.models_dir / "r1", "fast")
    day = (tmp_path / kept.image_path).parent
    temp = day / ".123456-abc.tmp"
    temp.write_bytes(b"half a png")
    orphan = day / "235959-0000.png"
    orphan.write_bytes(b"a png whose row was never committed")
    models = tmp_path / "models"
    for name in ("r1", "r2", ".r3.partial-x1"):
        (models / name).mkdir(parents=True, exist_ok=True)
        (models / name / "model.keras").write_bytes(b"0" * 1000)
    old_orphan = tmp_path / "images" / "2001-01-01" / "000000-old.png"  # older than the first decision
    old_orphan.parent.mkdir()
    old_orphan.write_bytes(b"from a database moved aside")
    os.utime(old_orphan, (time.time() - 86400 * 365, time.time() - 86400 * 365))

    with Storage(tmp_path) as storage:
        report = storage.swept
    assert sorted(p.relative_to(tmp_path).as_posix() for p in report.removed) == sorted(
        [temp.relative_to(tmp_path).as_posix(), orphan.relative_to(tmp_path).as_posix(), "models/r2",
         "models/.r3.partial-x1"])
    assert report.bytes > 2000
    assert (tmp_path / kept.image_path).is_file() and (models / "r1" / "model.keras").is_file()
    assert old_orphan.is_file()
    assert_data_folder_intact(tmp_path, [kept.id])


def test_nothing_is_swept_while_another_process_has_the_folder_open(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from station.storage import Storage; s = Storage(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        (tmp_path / "models" / ".r9.partial-run").mkdir(parents=True)  # that process's retraining at work
        with Storage(tmp_path) as storage:
            assert storage.swept.removed == [] and "in use" in storage.swept.skipped
        assert (tmp_path / "models" / ".r9.partial-run").is_dir()
    finally:
        holder.stdin.close()
        holder.wait(10)


def test_a_retraining_killed_before_registering_leaves_the_models_folder_as_it_was(tmp_path: Path) -> None:
    """What the window does after its retraining child died: the folder is back to its registered versions."""
    with Storage(tmp_path) as storage:  # the station's storage thread keeps the folder open
        storage.add_version("r1", storage.models_dir / "r1", "fast")
        (storage.models_dir / "r1").mkdir(parents=True)
        (storage.models_dir / "r2").mkdir()  # complete but never registered: killed just before add_version
        (storage.models_dir / ".r2.partial-abc").mkdir()
        removed = clean_partials(tmp_path)
        assert sorted(p.name for p in removed) == [".r2.partial-abc", "r2"]
        assert sorted(p.name for p in storage.models_dir.iterdir()) == ["r1"]
