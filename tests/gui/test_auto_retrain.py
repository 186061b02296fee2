"""Learning without a click: a background retraining after every N decisions, one at a time."""

from __future__ import annotations

from station import app
from station.retraining import RetrainJob
from station.storage import Storage
from tests.child_targets import crashing_child, declined_child, slow_child
from tests.gui.test_main_window import WAIT_MS, wait_for_prediction


def auto_window(qtbot, windows, make_settings, classifier, every: int, target):
    """The real window with retraining on, its child process played by ``target``."""
    settings = make_settings(auto_retrain_every=every)
    factory, demo_reason = app.choose_source(settings)
    window = app.assemble_window(settings, classifier, factory, demo_reason, retrain_job=lambda mode: RetrainJob(
        settings.data_dir, classifier.bundle.path, mode=mode))
    window.models.retrain_target = target
    windows.append(window)
    qtbot.addWidget(window)
    window.show()
    app.start_workers(window)
    return window, settings


def decide(qtbot, window) -> None:
    """Confirm the next prediction (a frame takes one decision: wait for one not decided yet)."""
    wait_for_prediction(qtbot, window, after=getattr(window, "decided_in_test", None))
    window.decided_in_test = window.desk.shown
    with qtbot.waitSignal(window.decision_saved, timeout=WAIT_MS):
        window.confirm()


def learning_text(window) -> str:
    return window.status.labels["learning"].text()


def test_every_n_decisions_a_background_retraining_runs_and_its_outcome_is_shown(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    window, _ = auto_window(qtbot, windows, make_settings, tiny_classifier, 3, declined_child)
    decide(qtbot, window)
    decide(qtbot, window)
    assert window.models.retrain_worker is None and learning_text(window) == ""
    decide(qtbot, window)
    worker = window.models.retrain_worker
    assert worker is not None
    assert not window.models.retrain_dialog.isVisible()  # in the background: no dialog in the operator's way
    assert learning_text(window).startswith("learning…")
    qtbot.waitUntil(lambda: window.models.retrain_worker is None, timeout=WAIT_MS)  # a quick child: no signal to catch
    assert learning_text(window) == "learned: r1 kept as a candidate (site-worse, site 60% → 30% of 20)"
    assert window.inference.classifier.version == "tiny-v1"  # declined: the running model stays
    window.models.retrain_action.trigger()  # the Retrain button stays, with its dialog
    assert window.models.retrain_worker is not None and window.models.retrain_dialog.isVisible()
    qtbot.waitUntil(lambda: window.models.retrain_worker is None, timeout=WAIT_MS)


def test_two_triggers_never_run_two_retrainings(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    window, _ = auto_window(qtbot, windows, make_settings, tiny_classifier, 1, slow_child)
    decide(qtbot, window)
    first = window.models.retrain_worker
    assert first is not None
    decide(qtbot, window)  # due again, but one is running: it waits its turn
    decide(qtbot, window)
    assert window.models.retrain_worker is first and window.models.learning.pending == 2
    with qtbot.waitSignal(first.finished, timeout=WAIT_MS):
        first.cancel()
    qtbot.waitUntil(lambda: window.models.retrain_worker not in (None, first), timeout=WAIT_MS)  # the next one
    assert window.models.learning.pending == 0
    second = window.models.retrain_worker
    with qtbot.waitSignal(second.finished, timeout=WAIT_MS):
        second.cancel()


def test_a_failed_background_retraining_leaves_model_and_database_as_they_were(
    qtbot, windows, make_settings, image_folder, tiny_classifier
) -> None:
    window, settings = auto_window(qtbot, windows, make_settings, tiny_classifier, 1, crashing_child)
    with Storage(settings.data_dir) as storage:
        before = [(v.version, v.status) for v in storage.versions()]
    decide(qtbot, window)
    assert window.models.retrain_worker is not None
    qtbot.waitUntil(lambda: learning_text(window).startswith("learning failed"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.models.retrain_worker is None, timeout=WAIT_MS)
    assert window.inference.classifier.version == "tiny-v1"
    with Storage(settings.data_dir) as storage:
        assert [(v.version, v.status) for v in storage.versions()] == before
    assert not list((settings.data_dir / "models").glob(".*partial*"))
