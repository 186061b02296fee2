"""The one exception type whose message is meant for the person running a command."""

from __future__ import annotations


class TrainingError(Exception):
    """A problem with the user's data, files or options; the message says what to do."""
