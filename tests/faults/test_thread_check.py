"""The autouse check of tests/conftest.py: a thread still running after its grace is named; a finished one is not."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from tests.conftest import patch_start, still_running


def test_a_lingering_thread_is_named_and_a_finished_one_is_not() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="lingering")
    thread.start()
    try:
        assert still_running(thread, time.monotonic() + 0.1) == "lingering (Thread)"
    finally:
        stop.set()
    assert still_running(thread, time.monotonic() + 1.0) is None  # it finishes within the grace


def test_a_lingering_qthread_is_named_and_a_finished_one_is_not() -> None:
    stop = threading.Event()

    class Waiting(QThread):
        def run(self) -> None:
            stop.wait()

    thread = Waiting()
    thread.setObjectName("waiting")
    thread.start()
    try:
        assert still_running(thread, time.monotonic() + 0.1) == "waiting (Waiting)"
    finally:
        stop.set()
    assert still_running(thread, time.monotonic() + 1.0) is None


def test_every_start_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    patch_start(monkeypatch, threading.Thread, started)
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    assert started == [thread]
