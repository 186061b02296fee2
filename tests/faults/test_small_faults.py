"""The smaller faults: file modes, mistyped data folders, unprintable names, dialogs without a screen, import."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from station import cli
from station.export import export_decisions
from station.storage import DB_NAME, Storage
from tests.faults.helpers import bomb_png, fill
from training.preprocess import load_rgb

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_images_get_the_database_mode_also_when_exported(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fill(tmp_path / "data", 2)
        with Storage(tmp_path / "data") as storage:
            export_decisions(storage, tmp_path / "out")
            images = [storage.image_file(r) for r in storage.decisions()]
    finally:
        os.umask(old)
    assert mode(tmp_path / "data" / DB_NAME) == 0o644
    assert {mode(p) for p in images} == {0o644}
    assert {mode(p) for p in (tmp_path / "out").rglob("*.png")} == {0o644}


def test_retrain_with_a_mistyped_data_dir_creates_nothing(tmp_path: Path, capsys) -> None:
    typo = tmp_path / "statoin-data"
    assert cli.entry(["retrain", "--data-dir", str(typo)]) == 2
    assert "no station database" in capsys.readouterr().err
    assert not typo.exists()


def test_import_summary_prints_non_utf8_folder_names(tmp_path: Path, six_class_bundle: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse non-UTF-8 names")
    source = tmp_path / "source"
    weird = os.fsdecode(b"gl\xe4ss")  # a Latin-1 folder name: not UTF-8
    for name in ("glass", weird):
        (source / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 99 if name == weird else 7, np.uint8)).save(source / name / "x.png")
    (source / "glass" / os.fsdecode(b"\xff.png")).write_bytes(b"not a png")
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, like a UTF-8 terminal
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.entry(["import", "--data-dir", str(tmp_path / "data"), str(source),
                          "--model", str(six_class_bundle)])
    out.flush()
    err.flush()
    assert code == 0
    printed = out.buffer.getvalue().decode() + err.buffer.getvalue().decode()
    assert "gl\\xe4ss" in printed and "\\xff.png" in printed


def test_settings_error_without_a_screen_exits_with_a_message(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "station", "--threshold", "7"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "threshold" in run.stderr


def test_import_never_activates_a_bundle_it_cannot_load(tmp_path: Path, six_class_bundle: Path, capsys) -> None:
    broken = Path(shutil.copytree(six_class_bundle, tmp_path / "broken-v1"))
    (broken / "model.keras").write_bytes(b"not a keras file")
    source = tmp_path / "source" / "glass"
    source.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source / "x.png")
    code = cli.entry(["import", "--data-dir", str(tmp_path / "data"), str(source.parent), "--model", str(broken)])
    assert code == 2 and "corrupt" in capsys.readouterr().err
    with Storage(tmp_path / "data") as storage:
        assert storage.versions() == [] and storage.count() == 0


def test_import_refuses_links_and_hostile_files(tmp_path: Path, six_class_bundle: Path, capsys) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(outside / "secret.png")
    root = tmp_path / "source"
    glass = root / "glass"
    glass.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 5, np.uint8)).save(glass / "ok.png")
    (glass / "link.png").symlink_to(outside / "secret.png")
    (root / "metal").symlink_to(outside, target_is_directory=True)
    (glass / "empty.png").write_bytes(b"")
    bomb_png(glass / "bomb.png")
    os.mkfifo(glass / "fifo.png")  # opening it would block for ever
    (glass / "..png").write_bytes(b"traversal-like name")
    code = cli.entry(["import", "--data-dir", str(tmp_path / "data"), str(root), "--model", str(six_class_bundle)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "imported 1 image(s)" in out
    assert "glass/link.png skipped: a symbolic link" in err and "metal/secret.png skipped: a symbolic link" in err
    assert "bomb.png skipped" in err and "empty.png skipped" in err
    with Storage(tmp_path / "data") as storage:
        assert storage.count() == 1


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 4000), (30, 60, 90)).save(path, quality=50)
    assert load_rgb(path, max_side=1024).shape == (2000, 3000, 3)  # 1/2 scale: the smallest with both sides >= 1024
    header_only = bomb_png(tmp_path / "huge.png", side=9000)  # 81 megapixels, no JPEG draft possible
    with pytest.raises(ValueError, match="too large"):
        load_rgb(header_only, max_side=1024)
