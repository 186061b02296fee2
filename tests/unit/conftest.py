"""Fixtures for the station's core unit tests (no Qt)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_LABELS = ["a", "b", "c"]
TINY_SIZE = 32


@pytest.fixture(scope="session")
def tiny_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real EfficientNetV2B2 bundle (random weights, 32 px, 3 classes): a few seconds to build, once."""
    from training.model import build_model, save_bundle_files

    folder = tmp_path_factory.mktemp("bundles") / "tiny-v1"
    model = build_model(len(TINY_LABELS), None, TINY_SIZE, freeze_backbone=False)
    save_bundle_files(model, TINY_LABELS, folder)
    return folder
