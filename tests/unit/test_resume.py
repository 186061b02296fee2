"""A training run killed between epochs continues where it stood with --resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import MINI_DATASET, run_cli
from training.errors import TrainingError
from training.train import TrainConfig, train


class KilledError(Exception):
    pass


def small_config(out: Path) -> TrainConfig:
    return TrainConfig(data_dir=str(MINI_DATASET), out=str(out), weights="none", image_size=32, epochs=3,
                       stages=1, fine_tune_epochs=1, batch_size=8, warmup_epochs=1, base_embeddings=False)


def test_a_killed_run_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = small_config(out)

    def die_in_epoch_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise KilledError  # reported before the epoch's checkpoint: the saved state is epoch 1

    with pytest.raises(KilledError):
        train(config, die_in_epoch_two)
    assert not out.exists()
    assert (tmp_path / "run.resume" / "state.json").is_file()

    with pytest.raises(TrainingError, match="--resume"):
        train(small_config(out))  # a fresh start would throw the saved epochs away: refused
    changed = small_config(out)
    changed.learning_rate = 0.5
    with pytest.raises(TrainingError, match="learning_rate"):
        train(changed, resume=True)

    seen: list[int] = []
    train(small_config(out), lambda row: seen.append(row["epoch"]), resume=True)
    assert seen == [2, 3, 4]  # epoch 1 is not run again
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [r["phase"] for r in rows] == ["stage 1"] * 3 + ["polish"]
    assert not (tmp_path / "run.resume").exists()


def test_resume_without_a_saved_run_is_one_clear_error(tmp_path: Path) -> None:
    code, _, err = run_cli(["train", str(MINI_DATASET), "--out", str(tmp_path / "x"), "--weights", "none",
                            "--resume"])
    assert code == 2
    assert "nothing to resume" in err


def test_restore_puts_back_the_optimizer_state(tmp_path: Path) -> None:
    import keras
    import numpy as np

    from training.resume import RunState, restore, save_weights

    def compiled() -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss="mse")
        return model

    first = compiled()
    first.fit(np.ones((8, 4)), np.zeros((8, 2)), batch_size=4, epochs=3, verbose=0)
    save_weights(first, tmp_path / "epoch.weights.h5")
    second = compiled()
    restore(second, tmp_path, RunState({}, phase_epoch=3, epoch_files="epoch.weights.h5"), continue_phase=True)
    assert int(second.optimizer.iterations.numpy()) == 6
    for a, b in zip(first.optimizer.variables, second.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
