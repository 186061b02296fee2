"""Which model the station should run, as the database says: a version promoted elsewhere (another station on the
shared database, ``station retrain`` on a training machine) reaches this station without a restart. No Qt.

The window asks its storage worker for the active version every ``POLL_S`` and hands each answer to
``ModelWatcher.seen``; a version it returns is loaded off the GUI thread and swapped in as a promotion made here.
Answers read before this station changed its own model are stale (the activation it queued may not have run yet)
and are ignored: each question carries the generation it was asked in.
"""

from __future__ import annotations

from station.storage import VersionRecord

POLL_S = 3.0  # "within a few seconds"; one indexed one-row read per poll


class ModelWatcher:
    """Decides whether an active version read from the database is one to load now."""

    def __init__(self, running: str) -> None:
        self.running = running
        self._asked_for: str | None = None  # the last version loading was started for (here or by a poll)
        self._generation = 0

    @property
    def generation(self) -> int:
        """Tag a question with this; answers to older questions are ignored."""
        return self._generation

    def loading(self, version: str) -> None:
        """This station started loading ``version`` (a poll's or the operator's): not to be asked for again."""
        self._asked_for = version
        self._generation += 1

    def now_running(self, version: str) -> None:
        """``version`` was swapped in: reads made before may predate the activation it leads to."""
        self.running = version
        self._generation += 1

    def seen(self, generation: int, active: VersionRecord | None) -> VersionRecord | None:
        """The version to load, if ``active`` (read for a question of ``generation``) is a new one; else None.

        A version that failed to load is not tried again at every poll: only a newer promotion is loaded.
        """
        if generation != self._generation or active is None:
            return None
        if active.version in (self.running, self._asked_for):
            return None
        self.loading(active.version)
        return active
