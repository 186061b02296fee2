"""Shared fixtures: a small real dataset with bad files mixed in, and one tiny trained run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Before Keras is imported: an empty Keras home, so no test can use a cached ImageNet
# download, and no TensorFlow start-up chatter.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras-home-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from sqlalchemy.engine import URL

from tests.pg import Cluster, find_bin_dir

MINI_DATASET = Path(__file__).parent / "data" / "trashnet-mini"  # 4 TrashNet photos per class, downscaled
CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
TINY_LABELS = ["a", "b", "c"]
TINY_SIZE = 32


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the PostgreSQL cluster is marked ``postgres`` (``-m "not postgres"`` leaves them out)."""
    for item in items:
        if "pg_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole session (tests/pg.py); removed at the end."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed: no initdb on PATH nor in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    cluster = Cluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[URL]:
    """A fresh, empty database of the session's cluster for one test."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


THREAD_GRACE_S = 2.0  # a thread told to stop at the end of a test gets this long to finish


@pytest.fixture(autouse=True)
def no_thread_left_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a thread running (napari's ``_dangling_qthreads``; DESIGN principle 10).

    Records every ``threading.Thread`` and, when Qt is already loaded, every ``QThread`` the test starts;
    at the end each gets ``THREAD_GRACE_S`` to finish. Never add an exception here without a reason.
    """
    started: list[Any] = []
    patch_start(monkeypatch, threading.Thread, started)
    qt_core = sys.modules.get("PySide6.QtCore")
    if qt_core is not None:
        patch_start(monkeypatch, qt_core.QThread, started)
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    running = [name for name in (still_running(thread, deadline) for thread in started) if name]
    if running:
        pytest.fail(f"the test left {len(running)} thread(s) running: {', '.join(running)}", pytrace=False)


def patch_start(monkeypatch: pytest.MonkeyPatch, cls: type, started: list[Any]) -> None:
    original = cls.start

    def start(self: Any, *args: Any, **kwargs: Any) -> None:
        started.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "start", start)


def still_running(thread: Any, deadline: float) -> str | None:
    """The thread's description if it is still running at ``deadline``, else None."""
    wait_s = max(0.0, deadline - time.monotonic())
    if isinstance(thread, threading.Thread):
        thread.join(wait_s)
        return f"{thread.name} ({thread.__class__.__name__})" if thread.is_alive() else None
    try:  # a QThread
        if thread.wait(int(wait_s * 1000)):
            return None
        return f"{thread.objectName() or 'unnamed'} ({thread.__class__.__name__})"
    except RuntimeError:  # its C++ object was deleted, which Qt allows only for a finished thread
        return None


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


@pytest.fixture(scope="session")
def retrainable_bundle(six_class_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six-class bundle plus the split manifest fast retraining finds its base data by (``MINI_DATASET``).

    Like a bundle assembled outside ``training.train``, it has no config.json.
    """
    from training.data import save_split, scan_dataset, stratified_split

    bundle = Path(shutil.copytree(six_class_bundle, tmp_path_factory.mktemp("bundles") / "site-v1"))
    save_split(stratified_split(scan_dataset(MINI_DATASET), seed=0), bundle / "split.json")
    return bundle
