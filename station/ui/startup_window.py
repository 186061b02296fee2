"""The window shown from the first second: what the station is doing until the live view is ready.

Imports nothing heavy (no TensorFlow, no OpenCV), so it can be on screen before they load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from station.ui.screen_fit import fitting_size

log = logging.getLogger("station")

DONE, PENDING = "✔", "…"


class StartupWindow(QWidget):
    """A title, then one line per start-up step: finished ones ticked, the current one with its seconds."""

    cancelled = Signal()  # the operator closed it before the station was ready

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Sorting station — starting")
        self.setMinimumWidth(620)
        title = QLabel("Sorting station is starting")
        title.setStyleSheet("font-size: 20px; font-weight: bold;")
        self.steps = QLabel()
        self.steps.setTextFormat(Qt.TextFormat.PlainText)
        self.steps.setWordWrap(True)
        self.steps.setStyleSheet("font-size: 14px;")
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.steps)
        layout.addStretch(1)
        self.resize(fitting_size(self, QSize(620, 220)))
        self.lines: list[str] = []
        self.finished = False
        # Kept, not only signalled: a close while main() still prepares (no event loop yet) must stop the start too.
        self.given_up = False
        self.step_started = time.monotonic()
        self.timer = QTimer(self, interval=500)  # the seconds tick: it is not stuck
        self.timer.timeout.connect(self._render)
        self.timer.start()

    def add_step(self, text: str) -> None:
        self.lines.append(text)
        self.step_started = time.monotonic()
        self._render()

    def finish(self) -> None:
        """Close it because start-up is over (or failed), not because the operator gave up."""
        self.finished = True
        self.timer.stop()
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        if not self.finished:
            self.given_up = True
            self.cancelled.emit()
        event.accept()

    def steps_text(self) -> str:
        return self.steps.text()

    def _render(self) -> None:
        shown = [f"{DONE} {line}" for line in self.lines[:-1]]
        if self.lines:
            shown.append(f"{PENDING} {self.lines[-1]} ({time.monotonic() - self.step_started:.0f} s)")
        self.steps.setText("\n".join(shown))


class StartupWorker(QThread):
    """Runs ``job(report)`` off the GUI thread: ``step`` per report, then ``ready(result)`` or ``failed(message)``."""

    step = Signal(str)
    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, job: Callable[[Callable[[str], None]], Any], expected: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.job = job
        self.expected = expected  # errors whose message is for the operator as it is

    def report(self, text: str) -> None:
        log.info("%s", text)  # logged here, in order with the job's own log lines
        self.step.emit(text)

    def run(self) -> None:
        try:
            result = self.job(self.report)
        except self.expected as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # reported, never swallowed: the station cannot start without it
            log.exception("start-up failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.ready.emit(result)
