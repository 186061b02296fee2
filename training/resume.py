"""A training run that survives being killed: state saved after every epoch, resumed on request.

The run folder ``OUT.resume/`` (beside the bundle's ``OUT``) holds, after each finished epoch,
the model weights with the optimizer state (Keras saves both in one ``.weights.h5``: Adam's
moments and step count continue where they were), the weights with the best validation loss so far and
``state.json`` (which phase, how many of its epochs are done, the history rows). Each file is
written under a new name and renamed into place, and ``state.json`` is written last and names
the files it belongs to, so a kill at any instant leaves the previous epoch's state whole.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from training.errors import TrainingError
from training.files import read_json, write_json

STATE = "state.json"
BEST = "best.weights.h5"


def resume_folder(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


@dataclass
class RunState:
    """Where a run stands: ``phase`` index, epochs done in it, and every history row so far."""

    config: dict[str, Any]
    phase: int = 0
    phase_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = math.inf
    epoch_files: str = ""  # the last epoch's weights file

    def rows_of(self, phase_name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["phase"] == phase_name]


def start_run(folder: Path, config: dict[str, Any], resume: bool) -> RunState:
    """A fresh state, or the saved one when ``resume``; refuses to silently discard or mix runs."""
    saved = folder / STATE
    if resume:
        if not saved.is_file():
            raise TrainingError(f"nothing to resume: {saved} does not exist")
        data = read_json(saved, "training state")
        if data["config"] != config:
            changed = sorted(k for k in config if data["config"].get(k) != config[k])
            raise TrainingError(
                f"{folder} belongs to a run with other settings ({', '.join(changed)}); "
                "give the same options to resume it, or delete the folder to start again")
        return RunState(**data)
    if saved.is_file():
        done = len(read_json(saved, "training state")["rows"])
        raise TrainingError(
            f"{folder} holds an unfinished run ({done} epoch(s) done): add --resume to continue it, "
            "or delete the folder to start again")
    shutil.rmtree(folder, ignore_errors=True)  # killed before its first epoch: nothing worth keeping
    folder.mkdir(parents=True)
    return RunState(config)


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the run's state after every epoch of one phase (see the module docstring)."""

    def __init__(self, folder: Path, state: RunState, phase_index: int, phase_name: str,
                 rows_before: list[dict[str, Any]], phase_rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.folder, self.state = folder, state
        self.phase_index, self.phase_name = phase_index, phase_name
        self.rows_before, self.phase_rows = rows_before, phase_rows  # phase_rows: the phase's live history

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        val_loss = float((logs or {}).get("val_loss", math.nan))
        if val_loss < self.state.best_val_loss:
            self.state.best_val_loss = val_loss
            save_weights(self.model, self.folder / BEST)
        self._save(self.phase_index, epoch + 1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._save(self.phase_index + 1, 0)  # early stopping may end a phase before its last epoch

    def _save(self, phase: int, phase_epoch: int) -> None:
        name = f"epoch-{len(self.rows_before) + len(self.phase_rows):04d}-{phase}.weights.h5"
        previous = self.state.epoch_files
        save_weights(self.model, self.folder / name)
        self.state.phase, self.state.phase_epoch = phase, phase_epoch
        self.state.rows = self.rows_before + self.phase_rows
        self.state.epoch_files = name
        write_json(self.folder / STATE, self.state.__dict__)
        if previous and previous != name:
            (self.folder / previous).unlink(missing_ok=True)


def save_weights(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(tmp)
    os.replace(tmp, path)


def restore(model: keras.Model, folder: Path, state: RunState, continue_phase: bool) -> None:
    """The last saved epoch's weights; with ``continue_phase`` its optimizer state too (a phase
    starting afresh starts with a fresh optimizer, as an uninterrupted run does)."""
    if not state.epoch_files:
        return
    if continue_phase:
        model.optimizer.build(model.trainable_variables)  # an unbuilt optimizer cannot take the saved state
    load_weights(model, folder / state.epoch_files)


def load_best(model: keras.Model, folder: Path) -> None:
    if (folder / BEST).is_file():
        load_weights(model, folder / BEST)


def load_weights(model: keras.Model, path: Path) -> None:
    """Model weights from ``path``; the optimizer state in it is loaded only where it fits."""
    with warnings.catch_warnings():
        # A file saved in another phase holds another optimizer's state; its weights are what matter.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)
