"""The review queue's captions fit their cells with the station's real class names (none elided)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from station.storage_jobs import HistoryEntry
from station.ui.review_dialog import ReviewDialog
from tests.conftest import CLASSES
from tests.gui.test_history_text import record


def test_every_caption_line_fits_its_cell(qtbot) -> None:
    """'operator: cardboard' was drawn as 'operator: ...' (the cell's text width was the first icon's)."""
    labels = (*CLASSES[:-1], "aluminium-cans")  # a site's own class name, longer than TrashNet's
    dialog = ReviewDialog(labels, threshold=0.6)
    qtbot.addWidget(dialog)
    portrait = np.zeros((128, 96, 3), np.uint8)  # TrashNet's photos are 3:4
    base = record("corrected", "paper", "cardboard")
    entries = [HistoryEntry(replace(base, id=i + 1, predicted_label=labels[i], operator_label=labels[-1 - i],
                                    confidence=0.31), portrait) for i in range(len(labels))]
    dialog.show_entries(entries)
    dialog.show()
    qtbot.waitExposed(dialog)
    metrics = dialog.grid.fontMetrics()
    for row in range(dialog.grid.count()):
        item = dialog.grid.item(row)
        cell = dialog.grid.visualItemRect(item)
        widest = max(metrics.horizontalAdvance(line) for line in item.text().splitlines())
        assert widest <= cell.width(), (item.text(), widest, cell.width())
