"""Text for matplotlib figures."""

from __future__ import annotations


def plot_text(text: str) -> str:
    """A class name as plain text for matplotlib: ``$`` would start mathtext (and crash on bad math)."""
    return text.replace("$", r"\$")
