"""The window's side of storage trouble: what the operator sees while a write waits or fails, no key press taken
as saved while the storage thread is stopped, the way back (restart storage), and quitting with writes not done."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox

from station.ui.colors import ERROR_RED, WARN_ORANGE
from station.workers import StorageWorker

if TYPE_CHECKING:
    from station.ui.main_window import MainWindow

CLOSE_DRAIN_S = 3.0  # on quit, how long writes on their way may take before the operator is asked


class StorageGuard(QObject):
    """Owned by the window; ``watch`` each storage worker it runs (a restart makes a new one)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.down: str | None = None  # why the storage thread stopped, while it is stopped
        self.dialog: QMessageBox | None = None

    def watch(self, storage: StorageWorker) -> None:
        storage.storage_retrying.connect(self._on_retrying)
        storage.storage_recovered.connect(self._on_recovered)
        storage.storage_failed.connect(self._on_failed)
        storage.errored.connect(self._on_stopped)

    def _on_retrying(self, message: str) -> None:
        self.window.video.set_notice(f"Not saved yet: {message}")

    def _on_recovered(self) -> None:
        self.window.video.set_notice(None)

    def _on_failed(self, message: str) -> None:
        self.window.video.flash(message, WARN_ORANGE, 4000)

    def refuse(self) -> bool:
        """No key press is taken as saved while no storage thread runs: it would only sit in a dead queue."""
        if self.down is None:
            return False
        self.window.video.flash(f"NOT saved — storage stopped: {self.down}", ERROR_RED, 4000)
        if self.dialog is not None:
            self.dialog.open()  # the way back: restart storage
        return True

    def _on_stopped(self, message: str) -> None:
        """The storage thread ended on an error: say so at once, refuse decisions, offer a restart."""
        self.down = message
        self.window.video.set_notice(f"Decisions are NOT being saved — {message}", ERROR_RED)
        self.window.statusBar().showMessage(message)
        box = QMessageBox(QMessageBox.Icon.Critical, "Decisions are not being saved",
                          f"Storing decisions stopped:\n{message}\n\nNo decision is taken until storage "
                          "runs again. Fix the cause (see the message), then restart storage.",
                          QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Close, self.window)
        box.button(QMessageBox.StandardButton.Retry).setText("Restart storage")
        box.button(QMessageBox.StandardButton.Retry).clicked.connect(self.restart)
        box.setTextFormat(Qt.TextFormat.PlainText)
        self.dialog = box
        box.open()  # window-modal, never blocks the event loop

    def restart(self) -> None:
        """A new storage worker on the same folder; it takes over the writes the stopped one never ran."""
        old = self.window.storage
        if old.isRunning():
            return
        storage = StorageWorker(old.data_dir, old.station, old.busy_timeout_ms, old.database_url)
        storage.adopt(old)
        self.down = None
        self.window.video.set_notice(None)
        self.window.use_storage(storage)
        storage.start()

    def may_close(self) -> bool:
        """Whether the window may close now: writes on their way are waited for, then the operator is asked."""
        storage = self.window.storage
        # A write on its way (the last key press) is done in milliseconds: wait for it before asking anything.
        pending = 0 if self.down is None and storage.drained(CLOSE_DRAIN_S) else storage.pending
        if not pending:
            return True
        if self.down is not None:  # nothing will save them: never wait for ever
            question = (f"{pending} decision(s) were NOT saved: storage stopped ({self.down}).\n"
                        "Restart storage and save them (recommended), or quit and lose them?")
        else:
            question = (f"{pending} decision(s) are still waiting to be saved.\n"
                        "Wait for them (recommended), or quit and lose them?")
        answer = QMessageBox.question(
            self.window, "Decisions not saved" if self.down is not None else "Decisions not saved yet", question,
            QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Discard, QMessageBox.StandardButton.Retry)
        if answer == QMessageBox.StandardButton.Discard:
            return True
        if self.down is not None:
            self.restart()
        return False
