"""Frame sources, the newest-frame slot and the capture loop, without a real camera."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from station.camera import (
    CameraError,
    CaptureLoop,
    FolderSource,
    Frame,
    FrameSource,
    LatestFrameSlot,
    OpenCVSource,
    StaleDetector,
    open_source,
)

WAIT = 5.0  # upper bound for any event in these tests; they normally finish in milliseconds


def solid(value: int, shape: tuple[int, int] = (8, 8)) -> NDArray[np.uint8]:
    return np.full((*shape, 3), value, np.uint8)


def make_frame(index: int, value: int = 0) -> Frame:
    return Frame(solid(value), index, time.monotonic(), "test")


class FakeSource(FrameSource):
    """A live feed scripted by ``script(read_number) -> Frame | None | Exception``; counts opens."""

    is_live = True

    def __init__(self, script: Callable[[int], object], log: list[str]) -> None:
        self.description = "fake"
        self.script = script
        self.log = log
        self.reads = 0

    def open(self) -> None:
        self.log.append("open")

    def read(self) -> Frame | None:
        self.reads += 1
        result = self.script(self.reads)
        if isinstance(result, Exception):
            raise result
        assert result is None or isinstance(result, Frame)
        return result

    def close(self) -> None:
        self.log.append("close")


class Recorder:
    """Collects loop callbacks and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.states: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def on_frame(self, frame: Frame) -> None:
        with self._changed:
            self.frames.append(frame)
            self._changed.notify_all()

    def on_state(self, state: str, detail: str) -> None:
        with self._changed:
            self.states.append((state, detail))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(predicate, WAIT), f"timed out; states={self.states}"

    def state_names(self) -> list[str]:
        return [s for s, _ in self.states]


def start_loop(loop: CaptureLoop) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def stop_loop(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(WAIT)
    assert not thread.is_alive(), "capture loop did not stop"


# --- CaptureLoop -------------------------------------------------------------------------------


def test_loop_reports_loss_reopens_and_frames_resume() -> None:
    opens: list[str] = []
    counter = iter(range(1, 10**6))
    failing = threading.Event()

    def script(_: int) -> object:
        # distinct content per frame, so only the scripted failure can make the feed "lost"
        return None if failing.is_set() else make_frame(next(counter), next(counter) % 256)

    sources: list[FakeSource] = []

    def factory() -> FakeSource:
        sources.append(FakeSource(script, opens))
        return sources[-1]

    rec = Recorder()
    loop = CaptureLoop(factory, rec.on_frame, rec.on_state, backoff=(0.01,), grace=0.05, first_frame_timeout=0.05)
    stop, thread = start_loop(loop)
    try:
        rec.wait_for(lambda: len(rec.frames) >= 3)
        assert loop.state == "live"
        failing.set()
        rec.wait_for(lambda: "lost" in rec.state_names())
        lost_at = len(rec.frames)
        failing.clear()
        rec.wait_for(lambda: len(rec.frames) >= lost_at + 3)
        assert rec.state_names()[-1] == "live"
        assert loop.fps > 0
    finally:
        stop_loop(stop, thread)
    names = rec.state_names()
    assert names[0] == "opening"
    assert names[-1] == "stopped"
    # live -> lost -> live, in that order
    first_live = names.index("live")
    first_lost = names.index("lost", first_live)
    assert "live" in names[first_lost:]
    assert "no frames for 0.05 s" in dict(rec.states)["lost"]
    assert len(sources) >= 2, "a lost source is replaced by a fresh one from the factory"
    assert opens.count("open") == opens.count("close"), "every opened source is closed"


def test_loop_treats_source_exceptions_as_loss_and_backs_off() -> None:
    calls = {"n": 0}

    class Boom(FakeSource):
        def open(self) -> None:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise CameraError("cannot open camera 7")

    rec = Recorder()
    counter = iter(range(1, 10**6))

    def script(n: int) -> object:
        return RuntimeError("driver crashed") if n == 3 else make_frame(next(counter), n)

    loop = CaptureLoop(lambda: Boom(script, []), rec.on_frame, rec.on_state, backoff=(0.01, 0.02))
    stop, thread = start_loop(loop)
    try:
        rec.wait_for(lambda: any("driver crashed" in d for _, d in rec.states))
        rec.wait_for(lambda: rec.state_names()[-1] == "live")
    finally:
        stop_loop(stop, thread)
    lost = [d for s, d in rec.states if s == "lost"]
    assert lost[0] == "cannot open camera 7; retrying in 0.01 s"
    assert lost[1] == "cannot open camera 7; retrying in 0.02 s"
    assert lost[2].startswith("RuntimeError: driver crashed")
    assert lost[2].endswith("retrying in 0.01 s"), "backoff restarts once frames flowed"


def test_loop_detects_frozen_image() -> None:
    counter = iter(range(1, 10**6))
    rec = Recorder()
    loop = CaptureLoop(
        lambda: FakeSource(lambda _: make_frame(next(counter), 42), []),
        rec.on_frame,
        rec.on_state,
        backoff=(0.01,),
        stale_after=0.1,
    )
    stop, thread = start_loop(loop)
    try:
        rec.wait_for(lambda: "lost" in rec.state_names())
    finally:
        stop_loop(stop, thread)
    assert "image frozen for 0.1 s" in dict(rec.states)["lost"]
    assert rec.frames, "identical frames are delivered until the stale limit"


def test_stale_detector_ignores_changing_content() -> None:
    detector = StaleDetector(stale_after=1.0)
    image = solid(0, (64, 64))
    assert not detector.update(Frame(image, 1, 100.0, "t"))
    assert not detector.update(Frame(image, 2, 100.5, "t"))
    assert detector.update(Frame(image, 3, 101.0, "t"))
    changed = image.copy()
    changed[0, 0, 0] = 1  # a single sampled pixel differing is enough
    assert not detector.update(Frame(changed, 4, 101.1, "t"))


def test_loop_stop_interrupts_backoff() -> None:
    def factory() -> FrameSource:
        raise CameraError("no camera")

    rec = Recorder()
    loop = CaptureLoop(factory, rec.on_frame, rec.on_state, backoff=(60.0,))
    stop, thread = start_loop(loop)
    rec.wait_for(lambda: "lost" in rec.state_names())
    started = time.monotonic()
    stop_loop(stop, thread)
    assert time.monotonic() - started < 1.0
    assert rec.state_names() == ["opening", "lost", "stopped"]


def test_loop_callback_errors_are_not_swallowed() -> None:
    counter = iter(range(1, 10**6))

    def on_frame(_: Frame) -> None:
        raise ValueError("bug in consumer")

    states: list[str] = []
    loop = CaptureLoop(
        lambda: FakeSource(lambda n: make_frame(next(counter), n), []), on_frame, lambda s, _: states.append(s)
    )
    with pytest.raises(ValueError, match="bug in consumer"):
        loop.run(threading.Event())
    assert states == ["opening", "live", "stopped"]


def test_loop_advance_reaches_folder_source(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(solid(i * 50)).save(tmp_path / f"{i}.png")
    rec = Recorder()
    loop = CaptureLoop(lambda: FolderSource(tmp_path, 0), rec.on_frame, rec.on_state)
    assert loop.advance() is False, "no source yet"
    stop, thread = start_loop(loop)
    try:
        rec.wait_for(lambda: len(rec.frames) == 1)
        assert loop.advance() is True
        rec.wait_for(lambda: len(rec.frames) == 2)
    finally:
        stop_loop(stop, thread)
    assert [f.name for f in rec.frames] == ["0.png", "1.png"]
    assert "lost" not in rec.state_names(), "a folder waiting for the operator is not a lost camera"


# --- LatestFrameSlot ---------------------------------------------------------------------------


def test_slot_keeps_newest_and_counts_drops() -> None:
    slot = LatestFrameSlot()
    frames = [make_frame(i) for i in range(5)]
    for frame in frames:
        slot.put(frame)
    assert slot.dropped == 4
    assert slot.take(0) is frames[-1]
    assert slot.take(0.01) is None, "each frame is handed out at most once"
    slot.put(frames[0])
    assert slot.take(0) is frames[0]
    assert slot.dropped == 4


def test_slot_take_waits_for_put_and_close_wakes_waiters() -> None:
    slot = LatestFrameSlot()
    frame = make_frame(1)
    results: list[Frame | None] = []
    waiting = threading.Event()

    def consumer() -> None:
        waiting.set()
        results.append(slot.take(WAIT))
        results.append(slot.take(WAIT))

    thread = threading.Thread(target=consumer)
    thread.start()
    waiting.wait(WAIT)
    slot.put(frame)
    while not results:  # the first take returned; now the second one is waiting
        time.sleep(0.001)
    started = time.monotonic()
    slot.close()
    thread.join(WAIT)
    assert results == [frame, None]
    assert time.monotonic() - started < 1.0, "close() woke the waiting consumer"
    slot.put(frame)
    assert slot.take(0) is None


# --- FolderSource ------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    Image.fromarray(solid(10)).save(tmp_path / "b.png")
    Image.fromarray(solid(20)).save(tmp_path / "a.jpg")
    Image.fromarray(solid(30)).save(tmp_path / "c.bmp")
    (tmp_path / "bb_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_folder_order_skips_and_end(image_folder: Path) -> None:
    source = FolderSource(image_folder, interval=0)
    source.open()
    names = []
    for _ in range(3):
        frame = source.read()
        assert frame is not None
        assert frame.image.shape == (8, 8, 3)
        names.append(frame.name)
        assert source.read() is None, "no new frame until advance()"
        assert source.advance() is True
    assert names == ["a.jpg", "b.png", "c.bmp"]
    assert source.read() is None and source.ended  # interval 0: each image once, never back to a.jpg
    assert source.advance() is False
    assert sorted(p.name for p in source.skipped) == ["bb_corrupt.png", "notes.txt"]
    source.close()


def test_folder_slideshow_loops(image_folder: Path) -> None:
    source = FolderSource(image_folder, interval=60)
    source.open()
    names = []
    for _ in range(4):
        frame = source.read()
        assert frame is not None
        names.append(frame.name)
        source.advance()
    assert names == ["a.jpg", "b.png", "c.bmp", "a.jpg"]
    assert not source.ended


def test_folder_slideshow_says_its_first_lap_only(image_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = FolderSource(image_folder, interval=60)
    source.open()
    with caplog.at_level(logging.INFO, logger="station.camera"):
        for _ in range(3 * 3 + 1):  # three laps of three images
            assert source.read() is not None
            source.advance()
    laps = [r for r in caplog.records if "back to the first image" in r.getMessage()]
    assert len(laps) == 1 and laps[0].getMessage().endswith("(lap 2)")
    assert source.laps == 3


def test_folder_frames_are_new_per_step(image_folder: Path) -> None:
    source = FolderSource(image_folder, interval=0)
    source.open()
    first = source.read()
    for _ in range(3):
        assert source.read() is None
    source.advance()
    source.advance()  # two presses before the next read still step once: no image goes unseen
    second = source.read()
    assert first is not None and second is not None
    assert (first.index, second.index) == (1, 2)
    assert second.timestamp >= first.timestamp
    assert int(second.image[0, 0, 0]) == 10  # b.png, decoded as RGB by load_rgb


def test_folder_interval_steps_by_time(image_folder: Path) -> None:
    source = FolderSource(image_folder, interval=0.05)
    source.open()
    assert source.read() is not None
    assert source.read() is None
    time.sleep(0.06)
    frame = source.read()
    assert frame is not None and frame.name == "b.png"


def test_folder_without_images_raises(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(CameraError, match="no readable images"):
        FolderSource(tmp_path).open()
    with pytest.raises(CameraError, match="not found"):
        FolderSource(tmp_path / "missing").open()


# --- OpenCVSource / open_source ----------------------------------------------------------------


def write_red_video(path: Path, frames: int = 4) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 100.0, (64, 48))
    assert writer.isOpened()
    bgr_red = np.zeros((48, 64, 3), np.uint8)
    bgr_red[..., 2] = 255  # OpenCV writes BGR: channel 2 is red
    for _ in range(frames):
        writer.write(bgr_red)
    writer.release()


def test_opencv_video_frames_are_rgb_and_the_file_loops_in_place(tmp_path: Path) -> None:
    video = tmp_path / "red.avi"
    write_red_video(video)
    source = OpenCVSource(str(video))
    source.open()
    frames: list[Frame] = []
    deadline = time.monotonic() + WAIT
    while len(frames) < 10 and time.monotonic() < deadline:  # 4 frames long: plays it 2.5 times
        frame = source.read()  # no CameraError at the end: it rewinds
        if frame is None:
            time.sleep(0.002)  # files are paced at their own fps (100 here)
        else:
            frames.append(frame)
    source.close()
    assert [f.index for f in frames] == list(range(1, 11))  # numbering goes on across the loop
    image = frames[0].image
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    red, green, blue = (float(image[..., c].mean()) for c in range(3))
    assert red > 200 and green < 50 and blue < 50, (red, green, blue)
    np.testing.assert_array_equal(frames[4].image, frames[0].image)  # frame 5 is the first frame again
    assert frames[0].name == str(video)


def test_opencv_unopenable_sources_raise() -> None:
    with pytest.raises(CameraError, match="cannot open camera 99"):
        OpenCVSource("99").open()
    with pytest.raises(CameraError, match="no such camera, video file or folder"):
        OpenCVSource("/nonexistent/clip.mp4").open()


def test_opencv_unreadable_file_raises(tmp_path: Path) -> None:
    bogus = tmp_path / "clip.avi"
    bogus.write_bytes(b"not a video")
    with pytest.raises(CameraError, match="cannot open video file"):
        OpenCVSource(str(bogus)).open()


def test_open_source_dispatch(image_folder: Path) -> None:
    folder = open_source(str(image_folder), 0.5)
    assert isinstance(folder, FolderSource) and folder.interval == 0.5 and not folder.is_live
    camera = open_source(" 2 ", 0)
    assert isinstance(camera, OpenCVSource) and camera.spec == 2 and camera.is_live
    url = open_source("rtsp://host/stream", 0)
    assert isinstance(url, OpenCVSource) and url.spec == "rtsp://host/stream"
    with pytest.raises(CameraError):
        open_source("  ", 0)


def test_offer_fills_an_empty_slot_but_never_replaces_a_newer_frame() -> None:
    slot = LatestFrameSlot()
    old, new = (Frame(np.zeros((2, 2, 3), np.uint8), i, 0.0, "t") for i in range(2))
    assert slot.offer(old)
    assert slot.take(0) is old
    slot.put(new)
    assert not slot.offer(old)
    assert slot.take(0) is new and slot.dropped == 0
