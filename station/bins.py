"""Which bin each class goes to (the ``bins`` setting). No Qt.

Several classes may share a bin; a class the setting does not name has a bin of its own, named after it, so the
default (an empty table) is one bin per class. A bin named after a class takes that class's colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class Bins:
    def __init__(self, mapping: Mapping[str, str], labels: Sequence[str]) -> None:
        unknown = sorted(set(mapping) - set(labels))
        if unknown:
            raise ValueError(f"bins names classes the model does not have: {', '.join(map(repr, unknown))} "
                             f"(its classes: {', '.join(labels)})")
        self.labels = tuple(labels)
        self._bin = {label: mapping.get(label, label) for label in labels}

    def of(self, label: str) -> str:
        """The bin of ``label``; a class unknown to the running model (an older model's) is its own bin."""
        return self._bin.get(label, label)

    def colour_class(self, bin_name: str) -> str:
        """The class whose colour the bin shows: the class of the same name, else the first class going there."""
        if bin_name in self._bin:
            return bin_name
        return next((label for label, b in self._bin.items() if b == bin_name), bin_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._bin.values()))
