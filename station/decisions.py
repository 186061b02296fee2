"""Which frame a key press decides, and the one-decision-per-frame rule. No Qt."""

from __future__ import annotations

from station.inference import Prediction
from station.storage import NewDecision


class DecisionRefusedError(Exception):
    """The key press cannot become a decision; the message is a hint for the operator."""


class DecisionDesk:
    """Holds the prediction on screen and turns the operator's key into a ``NewDecision``.

    The decision always carries the exact frame the shown prediction was made from; a frame
    takes at most one decision until a new prediction is shown (or the decision is undone).
    """

    def __init__(self, labels: tuple[str, ...] | list[str], station: str, threshold: float) -> None:
        self.labels = tuple(labels)
        self.station = station
        self.threshold = threshold
        self.shown: Prediction | None = None
        self._decided: Prediction | None = None

    def show(self, prediction: Prediction) -> None:
        self.shown = prediction

    def is_uncertain(self, prediction: Prediction) -> bool:
        return prediction.confidence < self.threshold

    @property
    def shown_is_decided(self) -> bool:
        return self.shown is not None and self.shown is self._decided

    def decide(self, label_index: int | None) -> NewDecision:
        """``None`` confirms the prediction; an index sets the operator's label (a correction if it differs)."""
        if self.shown is None:
            raise DecisionRefusedError("No prediction on screen yet — wait for the model")
        if self.shown_is_decided:
            raise DecisionRefusedError("Already saved — waiting for the next item (Backspace undoes)")
        prediction = self.shown
        if label_index is None:
            label = prediction.label
        elif 0 <= label_index < len(self.labels):
            label = self.labels[label_index]
        else:
            raise DecisionRefusedError(f"No class on key {label_index + 1}")
        self._decided = prediction
        return NewDecision(
            image=prediction.frame.image,
            predicted_label=prediction.label,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities_dict(),
            operator_label=label,
            model_version=prediction.model_version,
            embedding=prediction.embedding,
            station=self.station,
        )

    def undone(self) -> None:
        """The last decision was removed: the frame on screen may be decided again."""
        self._decided = None
