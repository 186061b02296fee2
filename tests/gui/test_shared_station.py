"""The real window of one station among several on a PostgreSQL database."""

from __future__ import annotations

from PySide6.QtCore import Qt

from station.storage import NewDecision, Storage
from tests import fixture_decisions as fx
from tests.gui.test_main_window import WAIT_MS, press, start_window, wait_for_prediction


def test_the_history_and_today_count_are_this_stations_own(
    qtbot, windows, make_settings, image_folder, tiny_classifier, pg_url
) -> None:
    """Another line's decisions are not this operator's to see, relabel or delete, nor to count as theirs."""
    url = pg_url.render_as_string(hide_password=False)
    settings = make_settings(database_url=url)
    with Storage(settings.data_dir, "line-2", database_url=url) as other:
        for seed in range(3):
            other.save(NewDecision(image=fx.image(seed), predicted_label="a", confidence=0.9, probabilities={},
                                   operator_label="a", model_version="tiny-v1"))
    window = start_window(qtbot, windows, settings, tiny_classifier)
    wait_for_prediction(qtbot, window)
    press(qtbot, window, Qt.Key.Key_Space)
    with Storage(settings.data_dir, database_url=url) as storage:
        mine = [r.id for r in storage.decisions(station="test-station")]
        assert len(mine) == 1 and storage.count() == 4
    qtbot.waitUntil(lambda: window.history.ids() == mine, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.status.labels["today"].text().startswith("today 1 "), timeout=WAIT_MS)
