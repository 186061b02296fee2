"""The supervisor's view: counts per class, agreement, confusion matrix and agreement over time."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import cast

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QDate, QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.statistics import Statistics, StatsFilter
from station.ui.screen_fit import fitting_size
from training.evaluate import draw_confusion

ALL_VERSIONS = "All versions"
ALL_STATIONS = "All stations"
RANGES = ("All time", "Today", "Last 7 days", "Last 30 days", "Custom")
COLUMNS = ("class", "today", "in range", "agreement")
# Two-line headers keep the table narrow (one-line ones were cut: "ouches/item").
THROUGHPUT_COLUMNS = ("hour", "items", "items\nper min", "auto", "touches\nper item", "settle→\ndecision")
MAX_TICK_LABELS = 12


def fit_columns(table: QTableWidget) -> None:
    """Columns as wide as their header and values (never cut; a scrollbar on a narrow screen), the last
    one taking the room left."""
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)


def bucket_label(start: datetime, bucket: str, with_day: bool = False) -> str:
    """The span a timeline point covers: an hour ("14–15 h", "26 Nov 14–15 h" over several days) or a day."""
    if bucket == "hour":
        hours = f"{start:%H}–{(start + timedelta(hours=1)):%H} h"
        return f"{start:%d %b} {hours}" if with_day else hours
    return f"{start:%d %b}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def range_dates(choice: str, today: date, custom: tuple[date, date]) -> tuple[date | None, date | None]:
    """The (since, until) days of a range choice; both included."""
    if choice == "Today":
        return today, today
    if choice == "Last 7 days":
        return today - timedelta(days=6), today
    if choice == "Last 30 days":
        return today - timedelta(days=29), today
    if choice == "Custom":
        return custom
    return None, None


def offer(box: QComboBox, everything: str, names: list[str]) -> None:
    """Fill a filter box with ``everything`` (no filter) then ``names``, keeping the current choice if still there.

    Each item carries its name as data and the first one None, so a station or version that happens to be
    called like the first item still filters.
    """
    current = box.currentData()
    box.blockSignals(True)  # refilling is not the user's choice: it must not ask for statistics again
    box.clear()
    box.addItem(everything, None)
    for name in names:
        box.addItem(name, name)
    box.setCurrentIndex(max(0, box.findData(current)) if current is not None else 0)
    box.blockSignals(False)


class StatisticsView(QDialog):
    """Asks for statistics with ``refresh_requested`` and shows what ``show_statistics`` receives."""

    refresh_requested = Signal(object)  # StatsFilter

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Statistics")
        self.resize(fitting_size(self, QSize(1200, 820)))
        self.statistics: Statistics | None = None

        self.version_box = QComboBox()
        offer(self.version_box, ALL_VERSIONS, [])
        self.station_box = QComboBox()
        offer(self.station_box, ALL_STATIONS, [])
        self.station_box.setToolTip("Decisions made at one station (several stations can share one database)")
        self.range_box = QComboBox()
        self.range_box.addItems(RANGES)
        today = QDate.currentDate()
        self.since_edit = QDateEdit(today.addDays(-6))
        self.until_edit = QDateEdit(today)
        for edit in (self.since_edit, self.until_edit):
            edit.setCalendarPopup(True)
        refresh = QPushButton("Refresh (F5)")
        refresh.clicked.connect(self.refresh)
        for box in (self.version_box, self.station_box, self.range_box):
            box.currentIndexChanged.connect(self.refresh)
        for edit in (self.since_edit, self.until_edit):
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.dateChanged.connect(self.refresh)
        self.range_box.currentIndexChanged.connect(self._enable_dates)
        filters = QHBoxLayout()
        for widget in (QLabel("Model version"), self.version_box, QLabel("Station"), self.station_box,
                       QLabel("Dates"), self.range_box, self.since_edit, QLabel("to"), self.until_edit):
            filters.addWidget(widget)
        filters.addStretch(1)
        filters.addWidget(refresh)

        self.summary = QLabel("Loading…")
        self.summary.setStyleSheet("font-size: 16px; padding: 4px;")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        fit_columns(self.table)
        self.table.setToolTip("agreement: share of the class's decisions where the model predicted that class")
        self.confusion_figure = Figure(figsize=(5.5, 4.5), layout="constrained")
        self.confusion_canvas = FigureCanvasQTAgg(self.confusion_figure)
        self.timeline_figure = Figure(figsize=(11, 3), layout="constrained")
        self.timeline_canvas = FigureCanvasQTAgg(self.timeline_figure)

        self.throughput = QTableWidget(0, len(THROUGHPUT_COLUMNS))
        self.throughput.setHorizontalHeaderLabels(THROUGHPUT_COLUMNS)
        self.throughput.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.throughput.verticalHeader().setVisible(False)
        fit_columns(self.throughput)
        self.throughput.setToolTip("Sorting pace per hour: items per minute between the hour's first and last "
                                   "decision, share decided by the station alone (auto mode), operator key presses "
                                   "per item, median time from the item settling to its decision")
        classes = QSplitter(Qt.Orientation.Vertical)
        classes.addWidget(self.table)
        classes.addWidget(self.throughput)
        top = QSplitter()
        top.addWidget(classes)
        top.addWidget(self.confusion_canvas)
        top.setSizes([450, 700])
        column = QSplitter(Qt.Orientation.Vertical)
        column.addWidget(top)
        column.addWidget(self.timeline_canvas)
        column.setSizes([480, 280])
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.summary)
        layout.addWidget(column, 1)
        QShortcut(QKeySequence(Qt.Key.Key_F5), self).activated.connect(self.refresh)
        self._enable_dates()

    def current_filter(self) -> StatsFilter:
        # QDate.toPython() returns a datetime.date, typed object
        custom = cast("tuple[date, date]", (self.since_edit.date().toPython(), self.until_edit.date().toPython()))
        since, until = range_dates(self.range_box.currentText(), date.today(), custom)
        # currentData() is typed object: offer() stores a name or None
        version = cast("str | None", self.version_box.currentData())
        station = cast("str | None", self.station_box.currentData())
        return StatsFilter(version, since, until, station)

    def refresh(self) -> None:
        self.summary.setText("Loading…")
        self.refresh_requested.emit(self.current_filter())

    def _enable_dates(self) -> None:
        custom = self.range_box.currentText() == "Custom"
        self.since_edit.setEnabled(custom)
        self.until_edit.setEnabled(custom)

    def show_statistics(self, stats: Statistics, versions: list[str], stations: list[str]) -> None:
        """Show ``stats`` and offer every known model version and station in the filters."""
        self.statistics = stats
        offer(self.version_box, ALL_VERSIONS, versions)
        offer(self.station_box, ALL_STATIONS, stations)
        imported = f" · imported {stats.imported} (not counted)" if stats.imported else ""
        if stats.auto:
            imported += f" · auto-confirmed {stats.auto} (not judged: not counted)"
        self.summary.setText(
            f"Today <b>{stats.today}</b> · in range <b>{stats.overall}</b> decisions · "
            f"model/operator agreement <b>{percent(stats.agreement)}</b> ({stats.agreed}/{stats.overall}){imported}")
        self.table.setRowCount(len(stats.classes))
        for row, c in enumerate(stats.classes):
            for col, value in enumerate((c.name, str(c.today), str(c.overall), percent(c.agreement))):
                item = QTableWidgetItem(value)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self._show_throughput(stats)
        self._draw_confusion(stats)
        self._draw_timeline(stats)

    def _show_throughput(self, stats: Statistics) -> None:
        self.throughput.setRowCount(len(stats.throughput))
        several_days = len({h.start.date() for h in stats.throughput}) > 1
        for row, h in enumerate(reversed(stats.throughput)):  # newest hour first
            values = (bucket_label(h.start, "hour", several_days), str(h.items),
                      "—" if h.items_per_minute is None else f"{h.items_per_minute:.1f}", percent(h.auto_share),
                      f"{h.touches_per_item:.2f}",
                      "—" if h.median_settle_ms is None else f"{h.median_settle_ms:.0f} ms")
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.throughput.setItem(row, col, item)

    def _draw_confusion(self, stats: Statistics) -> None:
        self.confusion_figure.clear()
        draw_confusion(self.confusion_figure, stats.confusion, list(stats.labels), "operator label", "model prediction")
        self.confusion_canvas.draw_idle()

    def _draw_timeline(self, stats: Statistics) -> None:
        fig = self.timeline_figure
        fig.clear()
        ax = fig.add_subplot()
        ax.set_title(f"Model/operator agreement per {stats.bucket} (dotted lines: first decision of a model version)")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("agreement")
        ax.grid(alpha=0.3)
        if not stats.timeline:
            ax.text(0.5, 0.5, "no decisions in this range", ha="center", va="center", transform=ax.transAxes)
        else:
            # Naive local times (matplotlib would label the axis in UTC), each point in the middle of its bucket.
            span = timedelta(hours=1) if stats.bucket == "hour" else timedelta(days=1)
            times = [b.start.replace(tzinfo=None) + span / 2 for b in stats.timeline]
            # The type ignores below: matplotlib converts datetimes and timedeltas (its date units);
            # its stubs take numbers only.
            ax.plot(times, [b.agreement for b in stats.timeline],  # type: ignore[arg-type]  # see above
                    marker="o", color="#2c7fb8", zorder=3)
            bars = ax.twinx()
            decisions = [b.decisions for b in stats.timeline]
            bars.bar(times, decisions, width=span * 0.9,  # type: ignore[arg-type]  # see above
                     alpha=0.15, color="grey")
            bars.set_ylabel("decisions (grey bars)")
            ax.set_zorder(bars.get_zorder() + 1)  # the agreement line over the bars
            ax.patch.set_visible(False)
            # Each point stands for its whole bucket: label the bucket ("14–15 h", "26 Nov"), not an instant.
            every = max(1, math.ceil(len(times) / MAX_TICK_LABELS))
            several_days = len({b.start.date() for b in stats.timeline}) > 1
            labels = [bucket_label(b.start, stats.bucket, several_days) for b in stats.timeline]
            ax.set_xticks(times[::every], labels[::every], fontsize=8)  # type: ignore[arg-type]  # see above
            ax.set_xlim(times[0] - span, times[-1] + span)  # type: ignore[arg-type]  # see above
            for mark in stats.marks:
                moment = mark.first_decision.replace(tzinfo=None)
                ax.axvline(moment, color="#e67e22", linestyle=":")  # type: ignore[arg-type]  # see above
                # beside its line, not on it
                ax.annotate(mark.version, (moment, 0.03), xycoords=("data", "axes fraction"), xytext=(3, 0),
                            textcoords="offset points", ha="left", rotation=90, fontsize=8, color="#e67e22")
        self.timeline_canvas.draw_idle()
