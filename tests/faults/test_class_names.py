"""Class names are data: shown as plain text everywhere, safe in plots, and checked when labels.json is read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PySide6.QtGui import QKeySequence, QTextDocument

from station.ui.class_buttons import ClassButtons
from station.ui.review_dialog import ReviewDialog
from training.errors import TrainingError
from training.evaluate import draw_confusion
from training.explore import plot_counts
from training.files import read_labels

HOSTILE = ("<h1>big</h1>", "<a href='x'>link</a>", "a&b", "$x^$", "<img src='/etc/passwd'>")


def shown(tooltip_or_html: str) -> str:
    """What Qt shows for a tooltip (it guesses rich text)."""
    document = QTextDocument()
    document.setHtml(tooltip_or_html) if "<" in tooltip_or_html else document.setPlainText(tooltip_or_html)
    return document.toPlainText()


def test_class_buttons_show_names_exactly(qtbot) -> None:
    buttons = ClassButtons(HOSTILE)
    qtbot.addWidget(buttons)
    for index, (button, name) in enumerate(zip(buttons.buttons, HOSTILE, strict=True)):
        assert shown(button.toolTip()) == f"Label as {name} (key {index + 1})"
        assert QKeySequence.mnemonic(button.text()).isEmpty()  # "a&b" is no Alt+B shortcut
        assert button.text().replace("&&", "&") == f"{index + 1}   {name}"


def test_review_queue_help_and_status_are_plain_text(qtbot) -> None:
    from PySide6.QtCore import Qt

    dialog = ReviewDialog(HOSTILE, 0.6)
    qtbot.addWidget(dialog)
    assert dialog.help.textFormat() == Qt.TextFormat.PlainText
    assert dialog.status.textFormat() == Qt.TextFormat.PlainText
    assert "1 <h1>big</h1>" in dialog.help.text()


@pytest.mark.parametrize("name", ["$x^$", "$\\frac{$", "cost $5"])
def test_plots_take_dollar_signs_as_text(tmp_path: Path, name: str) -> None:
    figure = Figure()
    draw_confusion(figure, np.array([[1, 0], [0, 1]]), [name, "ok"])
    figure.savefig(io.BytesIO(), format="png")  # mathtext would fail here, after a whole training run
    plot_counts({name: 3, "ok": 4}, tmp_path / "counts.png")


@pytest.mark.parametrize(("labels", "problem"), [
    (["a", "b", "a"], "twice"), (["a", ""], "empty"), (["a", "   "], "empty"), (["a", 3], "list of class names"),
])
def test_labels_json_with_duplicate_or_empty_names_is_refused(tmp_path: Path, labels: list, problem: str) -> None:
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(TrainingError, match=problem):
        read_labels(tmp_path)
