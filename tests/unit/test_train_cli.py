"""The training CLI end to end on tiny real images: artifacts, evaluate, predict, errors."""

from __future__ import annotations

import json
import shutil
import socket
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest

from tests.conftest import CLASSES, MINI_DATASET, run_cli
from training.train import TrainConfig, plan_phases

BUNDLE_FILES = ["model.keras", "labels.json", "metrics.json", "history.csv", "curves.png",
                "confusion.png", "report.txt", "split.json", "config.json"]


def test_train_writes_a_complete_bundle(trained_run: tuple[Path, Path, str]) -> None:
    _, run, out = trained_run
    for name in BUNDLE_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.parent.glob(".run.partial-*")), "the temporary run folder is removed"
    assert json.loads((run / "labels.json").read_text()) == CLASSES

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(CLASSES)
    assert set(metrics["per_class"]["trash"]) == {"precision", "recall", "f1", "support"}
    assert len(metrics["confusion"]) == 6 and all(len(row) == 6 for row in metrics["confusion"])
    assert metrics["image_size"] == 64 and metrics["weights"] == "none"
    assert metrics["split_counts"] == {"train": 12, "val": 6, "test": 6}
    assert sum(map(sum, metrics["confusion"])) == 6
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0

    split = json.loads((run / "split.json").read_text())
    assert sorted(split) == ["test", "train", "val"]
    assert all(sum(p.startswith(f"{c}/") for p in split["test"]) == 1 for c in CLASSES)
    assert "metal/metal1.jpg" in split["train"] + split["val"] + split["test"]

    config = json.loads((run / "config.json").read_text())
    rerun = TrainConfig(**{f.name: config[f.name] for f in fields(TrainConfig)})
    assert rerun.weights == "none" and rerun.image_size == 64 and rerun.seed == 42

    with zipfile.ZipFile(run / "model.keras") as archive:
        saved = json.loads(archive.read("config.json"))
    assert not saved.get("compile_config"), "no optimizer or compile state in the bundle"
    assert "class weights: all 1.000 (6 classes, equally frequent)" in out  # 4 usable photos of each class


def test_bad_files_are_named_and_left_out(trained_run: tuple[Path, Path, str]) -> None:
    _, run, out = trained_run
    assert "left out 3 unusable file(s)" in out
    for name in ["metal/truncated.jpg", "paper/empty.jpg", "glass/notes.txt"]:
        assert name in out
    split = json.loads((run / "split.json").read_text())
    used = {path for paths in split.values() for path in paths}
    assert not {"metal/truncated.jpg", "paper/empty.jpg", "glass/notes.txt"} & used


def test_evaluate_reproduces_metrics_json(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    code, out, err = run_cli(["evaluate", str(run), str(data), "--out", str(tmp_path)])
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == json.loads((run / "metrics.json").read_text())
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "report.txt").is_file()


def test_evaluate_all_counts_every_usable_image(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    code, out, err = run_cli(["evaluate", str(run), str(data), "--split", "all", "--out", str(tmp_path)])
    assert code == 0, err
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["split_counts"] == {"all": 24}
    assert sum(map(sum, metrics["confusion"])) == 24


def test_predict_prints_one_json_line_per_image(trained_run: tuple[Path, Path, str]) -> None:
    data, run, _ = trained_run
    images = [data / "glass" / "glass1.jpg", data / "trash" / "trash2.jpg"]
    code, out, err = run_cli(["predict", str(run), *map(str, images)])
    assert code == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert line["label"] in CLASSES
        assert set(line["probabilities"]) == set(CLASSES)
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert line["confidence"] == max(line["probabilities"].values())


def test_predict_reports_an_unreadable_file_and_labels_the_rest(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, run, _ = trained_run
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code, out, _ = run_cli(["predict", str(run), str(broken), str(data / "glass" / "glass1.jpg")])
    first, second = (json.loads(line) for line in out.strip().splitlines())
    assert code == 1 and "cannot read image" in first["error"] and second["label"] in CLASSES


def test_imagenet_offline_fails_with_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    code, out, err = run_cli(["train", str(MINI_DATASET), "--out", str(tmp_path / "run"),
                              "--image-size", "32", "--epochs", "1"])
    assert code == 2
    assert "--weights PATH" in err and "--weights none" in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "run").exists()


def test_data_errors_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    code, _, err = run_cli(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--weights", "none"])
    assert code == 2 and "data folder not found" in err


def test_progressive_resizing_plan_grows_to_the_target_size() -> None:
    plan = plan_phases(TrainConfig("d", "o", weights="none", image_size=128, epochs=10, fine_tune_epochs=2, stages=4))
    sizes = [p.image_size for p in plan]
    assert sizes == sorted(sizes) and sizes[0] == 64 and sizes[-1] == 128
    assert sum(p.epochs for p in plan) == 12
    assert plan[-1].learning_rate < plan[0].learning_rate
    transfer = plan_phases(TrainConfig("d", "o", weights="imagenet", epochs=3, fine_tune_epochs=2))
    assert [(p.name, p.epochs) for p in transfer] == [("head", 3), ("fine-tune", 2)]


def test_two_phase_transfer_from_a_local_weights_file(tmp_path: Path) -> None:
    """The ImageNet recipe with a weights file made here: head phase, then fine-tuning."""
    from training.model import build_backbone

    weights = tmp_path / "efficientnetv2-b2_notop.weights.h5"
    build_backbone(None, 32).save_weights(weights)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", str(MINI_DATASET), "--out", str(run), "--weights", str(weights),
                              "--image-size", "32", "--epochs", "1", "--fine-tune-epochs", "1", "--batch-size", "8"])
    assert code == 0, err
    assert "== head: 1 epoch(s) at 32 px" in out and "== fine-tune: 1 epoch(s)" in out
    assert "BatchNorm stays frozen" in out
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["head", "fine-tune"]
    assert json.loads((run / "metrics.json").read_text())["weights"] == str(weights)


def test_demo_images_come_only_from_the_test_split(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    code, _, err = run_cli(["demo-images", str(run), str(data), "--out", str(tmp_path / "demo"), "--per-class", "1"])
    assert code == 0, err
    test = json.loads((run / "split.json").read_text())["test"]
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert len(names) == 6 and {n.split("-")[1] for n in names} == set(CLASSES)
    for name in names:
        _, label, original = name.split("-", 2)
        assert f"{label}/{original}" in test
    code, _, err = run_cli(["demo-images", str(run), str(data), "--out", str(tmp_path / "demo")])
    assert code == 2 and "not empty" in err


@pytest.mark.parametrize("command", [
    ["evaluate", "{bundle}", "{missing}", "--split", "test"],
    ["embed", "{bundle}", "{missing}"],
    ["explore", "{missing}", "--out", "{out}"],
    ["demo-images", "{bundle}", "{missing}", "--out", "{out}"],
])
def test_a_missing_data_folder_is_one_line_with_its_absolute_path(
    trained_run: tuple[Path, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    _, run, _ = trained_run
    monkeypatch.chdir(tmp_path)
    values = {"bundle": str(run), "missing": "../shared/datasets/trashnet", "out": str(tmp_path / "out")}
    code, out, err = run_cli([part.format(**values) for part in command])
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: data folder not found: {(tmp_path / '../shared/datasets/trashnet').resolve()} "
        "(TrashNet: see 'Datasets' in the README)"]


def test_a_missing_split_file_is_one_line(trained_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    data, run, _ = trained_run
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    first_test = json.loads((run / "split.json").read_text())["test"][0]
    (copy / first_test).unlink()
    for command in (["evaluate", str(run), str(copy)], ["embed", str(run), str(copy)]):
        code, _, err = run_cli(command)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"(first: {first_test})" in err and str(copy) in err


def test_tensorflow_start_up_notes_are_filtered_and_other_lines_kept(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from training.quiet import _filtered_stderr

    with _filtered_stderr(("oneDNN custom operations are on",)):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_an_exported_backbone_starts_a_new_training_with_its_weights(tiny_bundle_path: Path, tmp_path: Path) -> None:
    """Pretrain, export the backbone, train on it: the new model's backbone starts as the exported one."""
    import numpy as np

    from training.model import backbone_of, build_backbone, load_bundle

    weights = tmp_path / "pretrained" / "backbone.weights.h5"
    code, out, err = run_cli(["export-backbone", str(tiny_bundle_path), str(weights)])
    assert code == 0, err
    assert f"--weights {weights}" in out
    assert [p.name for p in weights.parent.iterdir()] == ["backbone.weights.h5"]  # no partial file left
    exported = backbone_of(load_bundle(tiny_bundle_path).model).get_weights()
    loaded = build_backbone(str(weights), 32).get_weights()
    assert len(loaded) == len(exported)
    assert all(np.array_equal(a, b) for a, b in zip(loaded, exported, strict=True))
    assert not np.array_equal(build_backbone(None, 32).get_weights()[0], exported[0])  # a fresh one differs


def test_export_backbone_wants_a_keras_weights_file_name(tiny_bundle_path: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(["export-backbone", str(tiny_bundle_path), str(tmp_path / "backbone.h5")])
    assert code == 2 and "must end in .weights.h5" in err
    assert not list(tmp_path.iterdir())


def test_a_bundle_of_other_classes_starts_a_run_with_its_backbone_and_a_new_head(
    tiny_bundle_path: Path, six_class_bundle: Path
) -> None:
    """--init-from a six-class bundle into a three-class run: the backbone is copied, the head is not."""
    import numpy as np

    from training.model import OUTPUT_LAYER, backbone_of, build_model, load_bundle
    from training.train import start_from_bundle

    model = build_model(3, None, 32, freeze_backbone=False)
    head_before = model.get_layer(OUTPUT_LAYER).get_weights()
    start_from_bundle(model, str(six_class_bundle))
    source = backbone_of(load_bundle(six_class_bundle).model).get_weights()
    copied = backbone_of(model).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(copied, source, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_layer(OUTPUT_LAYER).get_weights(), head_before,
                                                    strict=True))

    same_classes = build_model(3, None, 32, freeze_backbone=False)
    start_from_bundle(same_classes, str(tiny_bundle_path))  # same classes: every weight, head included
    tiny = load_bundle(tiny_bundle_path).model
    assert all(np.array_equal(a, b) for a, b in zip(same_classes.get_weights(), tiny.get_weights(), strict=True))
