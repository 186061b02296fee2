"""The statistics view and the review queue: opened from the toolbar, answered by storage reads, kept current
as decisions are saved, removed and relabelled."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from station import storage_jobs as jobs
from station.decisions import DecisionDesk
from station.statistics import StatsFilter
from station.storage import DecisionRecord
from station.ui.review_dialog import ReviewDialog
from station.ui.statistics_view import StatisticsView
from station.workers import InferenceWorker, StorageWorker

REVIEW_LENGTH = 200  # decisions in the review queue


class Insights(QObject):
    """Owned by the window; its toolbar shows ``actions``."""

    def __init__(
        self,
        window: QWidget,
        desk: DecisionDesk,
        inference: InferenceWorker,
        storage: Callable[[], StorageWorker],
        relabel: Callable[[int, str], None],
    ) -> None:
        super().__init__(window)
        self.window = window  # the views' parent
        self.desk = desk
        self.inference = inference
        self.storage = storage  # the storage worker running now (a restart replaces it)
        self.relabel = relabel  # what the window does for a relabel key, wherever it is pressed
        self.statistics_view: StatisticsView | None = None
        self.review_dialog: ReviewDialog | None = None
        # Many decisions in a row ask once: the timer restarts on each and fires a second after the last.
        self.statistics_timer = QTimer(self, interval=1000, singleShot=True)
        self.statistics_timer.timeout.connect(self._refresh_statistics)
        self.statistics_action = QAction("Statistics… (Ctrl+I)", window, shortcut=QKeySequence("Ctrl+I"))
        self.statistics_action.setToolTip("Decisions per class, model/operator agreement, confusion matrix, trend")
        self.statistics_action.triggered.connect(self.show_statistics)
        self.review_action = QAction("Review queue… (Ctrl+U)", window, shortcut=QKeySequence("Ctrl+U"))
        self.review_action.setToolTip("Stored decisions, least confident first, to check and relabel")
        self.review_action.triggered.connect(self.show_review)
        self.actions = [self.statistics_action, self.review_action]

    # ---- statistics

    def show_statistics(self) -> None:
        if self.statistics_view is None:
            self.statistics_view = StatisticsView(self.window)
            self.statistics_view.refresh_requested.connect(self._request_statistics)
        self.statistics_view.show()
        self.statistics_view.raise_()
        self.statistics_view.refresh()

    def _request_statistics(self, wanted: StatsFilter) -> None:
        self.storage().submit(jobs.statistics(wanted, self.inference.classifier.labels), self._on_statistics,
                              write=False)

    def _on_statistics(self, result: jobs.StatisticsResult) -> None:
        if self.statistics_view is not None:
            self.statistics_view.show_statistics(result.statistics, result.versions, result.stations)

    def _refresh_statistics(self) -> None:
        if self.statistics_view is not None:
            self.statistics_view.refresh()

    def on_decision_changed(self, record: DecisionRecord) -> None:
        if self.statistics_view is not None and self.statistics_view.isVisible():
            self.statistics_timer.start()

    # ---- review queue

    def show_review(self) -> None:
        if self.review_dialog is None:
            self.review_dialog = ReviewDialog(self.desk.labels, self.desk.threshold, self.window)
            self.review_dialog.relabel_requested.connect(self.relabel)
            self.review_dialog.reload_requested.connect(self._request_review)
        self.review_dialog.show()
        self.review_dialog.raise_()
        self._request_review()

    def _request_review(self) -> None:
        self.storage().submit(jobs.review(REVIEW_LENGTH), self._on_review, write=False)

    def _on_review(self, entries: list[jobs.HistoryEntry]) -> None:
        if self.review_dialog is not None:
            self.review_dialog.show_entries(entries)

    def on_decision_removed(self, record: DecisionRecord) -> None:
        if self.review_dialog is not None:
            self.review_dialog.remove(record)
        self.on_decision_changed(record)

    def on_decision_relabelled(self, record: DecisionRecord) -> None:
        if self.review_dialog is not None:
            self.review_dialog.show_relabelled(record)
        self.on_decision_changed(record)

    def stop(self) -> None:
        self.statistics_timer.stop()
