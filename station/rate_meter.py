"""Events per second over a sliding window: one meter for the capture rate and one for the inference rate,
so the two numbers in the status bar are measured the same way and can be compared. No Qt."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateMeter:
    """``tick()`` once per event (in the thread that does the work); ``rate()`` from any thread.

    The rate is (events - 1) / the time between the first and the last event still inside the last
    ``window`` seconds: 0 when fewer than two events are left, so a stalled source reads 0, not its old rate.
    """

    def __init__(self, window: float = 2.0) -> None:
        if window <= 0:
            raise ValueError("the window must be longer than 0 s")
        self.window = window
        self._lock = threading.Lock()
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self._prune(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now)
            if len(self._times) < 2 or self._times[-1] <= self._times[0]:
                return 0.0
            return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def reset(self) -> None:
        """Forget every event (a source closed: its old frames say nothing about the next one)."""
        with self._lock:
            self._times.clear()

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
