"""Names from data (class names, file paths) shown as plain text: never guessed to be rich text."""

from __future__ import annotations

import html


def tooltip(text: str) -> str:
    """A tooltip that shows ``text`` exactly: Qt guesses rich text for tooltips, so escape it inside <qt>."""
    return f"<qt>{html.escape(text)}</qt>"


def button_text(text: str) -> str:
    """Button text shown exactly: a single ``&`` would make a mnemonic (an underlined Alt shortcut)."""
    return text.replace("&", "&&")
