"""Statistics view and review queue in the real window, on the hand-computed fixture history."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from PySide6.QtCore import Qt

from station.storage import NewDecision, Storage
from tests import fixture_decisions as fx
from tests.gui.test_main_window import WAIT_MS, start_window, storage_done


def open_with_key(qtbot, window, key_sequence: str) -> None:
    """Open a view with its key and wait until the storage thread's answer is shown in it."""
    qtbot.keyClick(window, key_sequence, Qt.KeyboardModifier.ControlModifier)
    storage_done(qtbot, window)


def box_items(box) -> list[str]:
    return [box.itemText(i) for i in range(box.count())]


def table(view) -> list[list[str]]:
    return [[view.table.item(r, c).text() for c in range(view.table.columnCount())]
            for r in range(view.table.rowCount())]


def cut_headers(table_widget) -> list[str]:
    """Column headers wider than their column (Qt elides them: "touches/item" was shown as "ouches/item")."""
    header = table_widget.horizontalHeader()
    metrics = header.fontMetrics()
    cut = []
    for col in range(table_widget.columnCount()):
        text = table_widget.horizontalHeaderItem(col).text()
        if max(metrics.horizontalAdvance(line) for line in text.split("\n")) > header.sectionSize(col):
            cut.append(text)
    return cut


def test_statistics_view_shows_the_fixture_numbers(qtbot, windows, make_settings, image_folder, tiny_classifier):
    settings = make_settings()
    fx.fill(settings.data_dir)
    window = start_window(qtbot, windows, settings, tiny_classifier, capture=False)
    open_with_key(qtbot, window, "I")
    view = window.insights.statistics_view
    assert view.isVisible()
    # "today" follows the real clock here; the fixture's days are in the past, so 0 today.
    assert table(view) == [["a", "0", "3", "67%"], ["b", "0", "3", "67%"], ["c", "0", "1", "100%"]]
    assert "agreement <b>71%</b> (5/7)" in view.summary.text() and "imported 1" in view.summary.text()
    np.testing.assert_array_equal(view.statistics.confusion, [[2, 0, 1], [1, 2, 0], [0, 0, 1]])
    drawn = [t.get_text() for t in view.confusion_figure.axes[0].texts]
    assert drawn == ["2", "0", "1", "1", "2", "0", "0", "0", "1"]  # the counts painted on the matrix
    timeline = view.timeline_figure.axes[0]
    assert [t.get_text() for t in timeline.texts] == ["v1", "r1"]  # version marks on the trend
    assert box_items(view.version_box) == ["All versions", "r1", "v1"]
    assert cut_headers(view.table) == [] and cut_headers(view.throughput) == []

    view.version_box.setCurrentText("r1")  # the filter asks again by itself
    storage_done(qtbot, window)
    assert table(view) == [["a", "0", "1", "100%"], ["b", "0", "1", "100%"], ["c", "0", "1", "100%"]]
    assert [t.get_text() for t in view.timeline_figure.axes[0].texts] == ["r1"]

    view.range_box.setCurrentText("Today")
    storage_done(qtbot, window)
    assert view.statistics.overall == 0 and "no decisions" in view.timeline_figure.axes[0].texts[0].get_text()


def test_statistics_filter_by_station(qtbot, windows, make_settings, image_folder, tiny_classifier):
    """Stations sharing a database are listed in the station box; choosing one shows its decisions only."""
    settings = make_settings()
    fx.fill(settings.data_dir)  # station "fixture"
    with Storage(settings.data_dir, station="line-2") as other:
        for seed in range(2):  # both wrong: model a, operator c
            other.save(NewDecision(
                image=fx.image(70 + seed), predicted_label="a", confidence=0.5, probabilities={},
                operator_label="c", model_version="r1", created_at=datetime(2026, 3, 3, 10, seed)))
    window = start_window(qtbot, windows, settings, tiny_classifier, capture=False)
    open_with_key(qtbot, window, "I")
    view = window.insights.statistics_view
    assert box_items(view.station_box) == ["All stations", "fixture", "line-2"]
    assert table(view) == [["a", "0", "3", "67%"], ["b", "0", "3", "67%"], ["c", "0", "3", "33%"]]
    assert "(5/9)" in view.summary.text()

    view.station_box.setCurrentText("line-2")  # the filter asks again by itself
    storage_done(qtbot, window)
    assert table(view) == [["a", "0", "0", "—"], ["b", "0", "0", "—"], ["c", "0", "2", "0%"]]
    assert "(0/2)" in view.summary.text() and "imported" not in view.summary.text()
    assert view.station_box.currentText() == "line-2"  # the refilled box keeps the choice

    view.station_box.setCurrentText("fixture")
    storage_done(qtbot, window)
    assert table(view) == [["a", "0", "3", "67%"], ["b", "0", "3", "67%"], ["c", "0", "1", "100%"]]
    assert "(5/7)" in view.summary.text() and "imported 1" in view.summary.text()


def test_review_queue_relabels_with_the_live_keys(qtbot, windows, make_settings, image_folder, tiny_classifier):
    settings = make_settings()  # uncertainty threshold 0.6
    fx.fill(settings.data_dir)
    window = start_window(qtbot, windows, settings, tiny_classifier, capture=False)
    open_with_key(qtbot, window, "U")
    dialog = window.insights.review_dialog
    qtbot.waitExposed(dialog)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    captions = [dialog.grid.item(i).text() for i in range(dialog.grid.count())]
    confidences = sorted(c for *_, c in fx.ROWS)
    assert len(captions) == len(fx.ROWS)  # the import has no prediction: not in the queue
    assert [f"{c:.0%}" in text for c, text in zip(confidences, captions, strict=True)] == [True] * len(fx.ROWS)
    assert ["⚠" in text for text in captions] == [c < 0.6 for c in confidences]  # uncertain ones flagged

    first = dialog.selected_record()  # 35 %: model said c, operator said a
    with qtbot.waitSignal(window.decision_relabelled, timeout=WAIT_MS):
        qtbot.keyClick(dialog, "2")  # the live view's key for class 2 ("b")
    with Storage(settings.data_dir) as storage:
        row = storage.get(first.id)
    assert (row.operator_label, row.kind) == ("b", "corrected")
    assert dialog.grid.currentRow() == 1 and "✔ b" in dialog.grid.item(0).text()

    second = dialog.selected_record()  # 42 %: model said a, operator said b
    with qtbot.waitSignal(window.decision_relabelled, timeout=WAIT_MS):
        qtbot.keyClick(dialog, Qt.Key.Key_Space)  # the model was right after all
    with Storage(settings.data_dir) as storage:
        row = storage.get(second.id)
        assert (row.operator_label, row.kind) == ("a", "confirmed")
        stats_rows = storage.decisions()
    assert len(stats_rows) == len(fx.ROWS) + 1  # relabelled in place, nothing added or lost
    assert "2 reviewed" in dialog.status.text()


def test_status_bar_today_counts_decisions_not_imported_photos(
    qtbot, windows, make_settings, image_folder, tiny_classifier, tmp_path
):
    """Photos imported today are no decisions of today: the status bar agrees with the statistics."""
    from station.import_folder import import_folder
    from tests.gui.conftest import write_images
    from tests.gui.test_main_window import wait_for_prediction

    settings = make_settings()
    photos = tmp_path / "labelled"
    write_images(photos / tiny_classifier.labels[0], 6)  # six distinct photos, files written now: dated today
    with Storage(settings.data_dir) as storage:
        assert import_folder(storage, photos, list(tiny_classifier.labels)).total_added == 6
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    with qtbot.waitSignal(window.storage.history_changed, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.status.labels["today"].text().startswith("today 1 "), timeout=WAIT_MS)

    open_with_key(qtbot, window, "I")
    summary = window.insights.statistics_view.summary.text()
    assert "Today <b>1</b>" in summary and "imported 6 (not counted)" in summary
