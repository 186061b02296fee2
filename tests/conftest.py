"""Shared fixtures: a small real dataset with bad files mixed in, and one tiny trained run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

# Before Keras is imported: an empty Keras home, so no test can use a cached ImageNet
# download, and no TensorFlow start-up chatter.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras-home-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

MINI_DATASET = Path(__file__).parent / "data" / "trashnet-mini"  # 4 TrashNet photos per class, downscaled
CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
TINY_LABELS = ["a", "b", "c"]
TINY_SIZE = 32


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run ``python -m training`` in-process; returns (exit code, stdout, stderr)."""
    from training.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def make_dirty_dataset(root: Path) -> Path:
    """The mini dataset plus a truncated JPEG, a zero-byte file, a text file and a stray file."""
    shutil.copytree(MINI_DATASET, root, ignore=shutil.ignore_patterns("LICENSE"))
    good = (root / "metal" / "metal1.jpg").read_bytes()
    (root / "metal" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "paper" / "empty.jpg").write_bytes(b"")
    (root / "glass" / "notes.txt").write_text("not an image")
    (root / "README.txt").write_text("a stray file beside the class folders")
    return root


@pytest.fixture
def dirty_dataset(tmp_path: Path) -> Path:
    return make_dirty_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One short from-scratch run on the dirty dataset: (data dir, run dir, stdout)."""
    base = tmp_path_factory.mktemp("trained")
    data = make_dirty_dataset(base / "data")
    run = base / "run"
    code, out, err = run_cli([
        "train", str(data), "--out", str(run), "--weights", "none", "--image-size", "64",
        "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "8",
    ])
    assert code == 0, err
    return data, run, out


@pytest.fixture(scope="session")
def tiny_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real EfficientNetV2B2 bundle (random weights, 32 px, 3 classes): a few seconds to build, once."""
    from training.model import build_model, save_bundle_files

    folder = tmp_path_factory.mktemp("bundles") / "tiny-v1"
    model = build_model(len(TINY_LABELS), None, TINY_SIZE, freeze_backbone=False)
    save_bundle_files(model, TINY_LABELS, folder)
    return folder


@pytest.fixture(scope="session")
def six_class_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle on the station's six classes (random weights, 32 px)."""
    from training.model import build_model, save_bundle_files

    folder = tmp_path_factory.mktemp("bundles") / "six-classes"
    save_bundle_files(build_model(len(CLASSES), None, 32, freeze_backbone=False), CLASSES, folder)
    return folder
