"""The rate meter behind the status bar's capture and inference fps."""

from __future__ import annotations

import threading

import pytest

from station.rate_meter import RateMeter


def test_a_steady_stream_reads_its_rate() -> None:
    meter = RateMeter(window=2.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)  # 10 per second
    assert meter.rate(101.0) == pytest.approx(10.0)


def test_only_the_last_window_counts_so_a_change_shows_within_it() -> None:
    meter = RateMeter(window=2.0)
    for i in range(40):
        meter.tick(i * 0.05)  # 20 per second for 2 s
    for i in range(1, 9):
        meter.tick(1.95 + i * 0.25)  # then 4 per second
    assert meter.rate(3.95) == pytest.approx(4.0)


def test_fewer_than_two_events_in_the_window_read_zero_not_the_old_rate() -> None:
    meter = RateMeter(window=1.0)
    assert meter.rate(0.0) == 0.0
    meter.tick(0.0)
    assert meter.rate(0.5) == 0.0
    meter.tick(0.5)
    assert meter.rate(0.5) == pytest.approx(2.0)
    assert meter.rate(5.0) == 0.0  # stalled: the source stopped
    meter.tick(5.0)
    meter.tick(5.2)
    meter.reset()
    assert meter.rate(5.2) == 0.0


def test_capture_and_inference_read_the_same_for_the_same_events() -> None:
    """The point of one meter: two streams of the same pace give the same number."""
    capture, inference = RateMeter(), RateMeter()
    for i in range(30):
        capture.tick(i / 15)
        inference.tick(i / 15 + 0.03)  # the same pace, each a little later
    assert capture.rate(2.0) == pytest.approx(inference.rate(2.03))


def test_ticks_from_another_thread_are_all_counted() -> None:
    meter = RateMeter(window=1000.0)
    threads = [threading.Thread(target=lambda k=k: [meter.tick(k + i / 1000) for i in range(500)]) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.rate(4.0) == pytest.approx(1999 / (3.499 - 0.0))


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        RateMeter(window=0)
