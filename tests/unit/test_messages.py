"""Retraining messages: picklable for the child process's queue, JSON and back for the CLI and the registry."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fixture_outcomes import outcome, paired
from training.messages import Mode, RetrainOutcome, RetrainProgress, RetrainReport, SkippedImage


def test_outcome_survives_pickle_and_json() -> None:
    sent = replace(outcome(Path("/data/models/r2"), "r2", paired=paired(40, 20, 30)), mode=Mode.FULL,
                   skipped_unreadable_images=[SkippedImage(7, "x.png", "bad")])
    assert pickle.loads(pickle.dumps(sent)) == sent
    text = json.dumps(sent.to_json())
    assert json.loads(text)["mode"] == "full"  # enums are their plain values in JSON
    back = RetrainOutcome.from_json(json.loads(text))
    assert back == sent and back.mode is Mode.FULL and back.paired == sent.paired
    assert back.candidate_metrics.decisions.recall("a") == 0.75


def test_progress_is_picklable_and_immutable() -> None:
    event = RetrainProgress("fit head", 2, 4, 1.5, eta=3.0)
    assert pickle.loads(pickle.dumps(event)) == event
    with pytest.raises(AttributeError):
        event.done = 3  # type: ignore[misc]


def test_a_stored_report_in_another_shape_is_refused_not_half_read() -> None:
    stored = outcome(Path("r1")).to_json()
    assert RetrainReport.from_json(stored).gate_rule == "site-better"
    del stored["current"]["base_test"]
    with pytest.raises(KeyError):
        RetrainReport.from_json(stored)


def test_unknown_mode_is_refused() -> None:
    data = outcome(Path("r1")).to_json()
    data["mode"] = "quick"
    with pytest.raises(ValueError, match="quick"):
        RetrainOutcome.from_json(data)
