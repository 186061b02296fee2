"""Qt for Python itself: a signal from a worker thread to a Python slot must not leak references.

PySide6 6.12.0 drops one reference to ``True`` per queued delivery; on Python < 3.12 (where True and None
are not immortal) the station then aborts with "deallocating True or False" after a few thousand frames.
"""

from __future__ import annotations

import sys
import threading

import pytest
from PySide6.QtCore import QObject, Signal, Slot

DELIVERIES = 300  # few enough to fail cleanly instead of aborting the test run


class Emitter(QObject):
    happened = Signal(object)


class Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @Slot(object)
    def on_happened(self, _: object) -> None:
        self.count += 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True, False and None are immortal from Python 3.12")
def test_queued_signals_do_not_leak_references_to_builtins(qtbot) -> None:
    emitter, receiver = Emitter(), Receiver()
    emitter.happened.connect(receiver.on_happened)
    before = {name: sys.getrefcount(value) for name, value in (("True", True), ("False", False), ("None", None))}
    worker = threading.Thread(target=lambda: [emitter.happened.emit(i) for i in range(DELIVERIES)])
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: receiver.count == DELIVERIES)
    after = {name: sys.getrefcount(value) for name, value in (("True", True), ("False", False), ("None", None))}
    lost = {name: before[name] - after[name] for name in before}
    assert all(n < DELIVERIES // 2 for n in lost.values()), f"references lost per {DELIVERIES} signals: {lost}"
