"""Label image files with a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import predict_probabilities
from training.model import Bundle
from training.preprocess import load_prepared


def predict_files(bundle: Bundle, paths: list[str | Path]) -> list[dict[str, Any]]:
    """One result per file: label, confidence and every class probability, or the error."""
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            image = load_prepared(path, bundle.image_size)
        except Exception as exc:  # reported per file, the other files still get labels
            results.append({"path": str(path), "error": f"cannot read image: {exc}"})
            continue
        probs = predict_probabilities(bundle, image[np.newaxis])[0]
        best = int(np.argmax(probs))
        results.append({
            "path": str(path),
            "label": bundle.labels[best],
            "confidence": float(probs[best]),
            "probabilities": {name: float(p) for name, p in zip(bundle.labels, probs, strict=True)},
        })
    return results
