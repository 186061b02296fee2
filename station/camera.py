"""Frame sources (OpenCV camera / video file / stream URL, image folder) and the capture loop.

No Qt here: the GUI worker wraps :class:`CaptureLoop` and turns its callbacks into signals.
Frames are RGB from the moment they are captured (OpenCV's BGR is converted exactly once,
in :class:`OpenCVSource`), so the display, the classifier and storage all see the same pixels.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from station.rate_meter import RateMeter
from training.preprocess import IMAGE_EXTENSIONS, load_rgb

DOCUMENT_EXTENSIONS = {".md", ".txt"}  # notes beside the photos: skipped without a word

log = logging.getLogger(__name__)

# Every capture state the loop reports through ``on_state(state, detail)``.
OPENING, LIVE, LOST, STOPPED, ENDED = "opening", "live", "lost", "stopped", "ended"


# eq=False: frames compare and hash by identity (comparing pixel arrays is neither cheap nor meaningful).
@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image. Shared between threads: treat ``image`` as read-only, copy before drawing on it."""

    image: NDArray[np.uint8]  # RGB, H x W x 3
    index: int  # increasing per source instance (restarts when the source is reopened)
    timestamp: float  # time.monotonic() at capture
    name: str  # file name for folder sources, else the source spec


class CameraError(Exception):
    """A source cannot be opened or has failed; the message says which source and why."""


class FrameSource(ABC):
    """Something that yields frames. Not thread-safe except :meth:`advance`."""

    description: str
    # True for continuous feeds (camera, stream, video file): a long silence or a frozen image means
    # the feed is lost. False for folder sources, where no new frame for a while is normal.
    is_live: bool

    @abstractmethod
    def open(self) -> None:
        """Acquire the device/file; raises :class:`CameraError` if that is impossible."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when there is no new frame right now. May raise CameraError."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice or without open()."""

    def advance(self) -> bool:
        """Step to the next item after the operator's decision; False if the source does not step."""
        return False

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def to_rgb(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """OpenCV BGR / BGRA / grayscale -> RGB H x W x 3 (the one colour conversion in the station)."""
    if image.ndim == 2:
        return cast(NDArray[np.uint8], cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    if image.shape[2] == 4:
        return cast(NDArray[np.uint8], cv2.cvtColor(image, cv2.COLOR_BGRA2RGB))
    return cast(NDArray[np.uint8], cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def is_url(spec: str) -> bool:
    return "://" in spec


class OpenCVSource(FrameSource):
    """A camera index, a video file or a stream URL read with ``cv2.VideoCapture``.

    Video files are paced at their own frame rate (OpenCV would otherwise decode them as fast as
    it can) and loop: at their end they rewind in place. A file that yields no frame raises
    :class:`CameraError`. Stale (frozen) images are detected by :class:`CaptureLoop`, not here.
    """

    is_live = True

    # Bounded waits for streams: an unreachable URL would otherwise block open()/read() for ~30 s
    # and a stop request with it.
    STREAM_TIMEOUT_MS = 5000

    def __init__(self, spec: str | int) -> None:
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec.strip())
        self.spec: str | int = spec
        self.description = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self.is_file = False  # a regular video file (set by open(); /dev/video0 is a device, not a file)
        self._capture: cv2.VideoCapture | None = None
        self._index = 0
        self._frame_period = 0.0  # video files only: seconds between frames
        self._next_due = 0.0

    def open(self) -> None:
        self.close()
        spec = self.spec
        if isinstance(spec, int):
            capture = cv2.VideoCapture(spec)
        elif is_url(spec):
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.STREAM_TIMEOUT_MS,
            ]
            capture = cv2.VideoCapture(spec, cv2.CAP_ANY, params)
        else:
            path = Path(spec)
            if not path.exists():
                raise CameraError(f"no such camera, video file or folder: {spec}")
            self.is_file = path.is_file()
            capture = cv2.VideoCapture(spec)
        if not capture.isOpened():
            capture.release()
            if isinstance(spec, int):
                raise CameraError(f"cannot open camera {spec}: no such device, or it is in use by another program")
            what = "video file (unsupported format or corrupt?)" if self.is_file else "video source"
            raise CameraError(f"cannot open {what}: {spec}")
        if not self.is_file:
            # a device's internal queue would hand us old frames; not every backend honours this
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            fps = capture.get(cv2.CAP_PROP_FPS)
            self._frame_period = 1.0 / fps if 1.0 <= fps <= 240.0 else 1.0 / 30.0
            self._next_due = time.monotonic()
        self._capture = capture
        self._index = 0

    def read(self) -> Frame | None:
        if self._capture is None:
            raise CameraError(f"{self.description}: read() before open()")
        if self.is_file:
            now = time.monotonic()
            if now < self._next_due:
                return None
            # catch up after a slow consumer instead of bursting frames
            self._next_due = max(self._next_due + self._frame_period, now)
        ok, image = self._capture.read()
        if (not ok or image is None) and self.is_file and self._index > 0:
            # End of the video: rewind in place and go on (frame numbers keep counting), so a looping
            # demo clip never looks like a lost camera.
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok or image is None:
            if self.is_file:
                raise CameraError(f"{self.description}: no frame could be decoded after frame {self._index}")
            return None
        self._index += 1
        return Frame(to_rgb(cast(NDArray[np.uint8], image)), self._index, time.monotonic(), str(self.spec))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FolderSource(FrameSource):
    """Images of a folder in file-name order: a demo camera and a way to label a folder of photos.

    With ``interval > 0`` a new image is served every ``interval`` seconds (and on :meth:`advance`),
    a slideshow that starts again at the first image (logged the first time). With ``interval == 0`` only on
    :meth:`advance`, i.e. after the operator's decision, and each image once: after the last one the
    source has ``ended`` and serves nothing more, so no image is decided twice. Every step serves a
    new :class:`Frame`; reads between steps return None. Non-image files and files that fail to decode
    (whatever the error: truncated, not an image, a decompression bomb) are skipped and logged once.
    Reopening the same instance (after a loss) resumes after the image served last, never at the start.
    """

    is_live = False

    def __init__(self, folder: str | Path, interval: float = 0.0) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.folder = Path(folder)
        self.interval = interval
        self.description = f"folder {self.folder}"
        self.skipped: list[Path] = []  # non-image or unreadable files, each once
        self._paths: list[Path] = []
        self._position = -1  # index in _paths of the image served last
        self._index = 0
        self._served_at = 0.0
        self._preloaded: tuple[int, NDArray[np.uint8]] | None = None
        self._lock = threading.Lock()  # advance() comes from the GUI thread
        self._step_requested = False
        self.loops = interval > 0
        self.ended = False  # interval 0: every image has been served
        self.served = 0  # images served since the first open
        self.laps = 0  # times a slideshow went back to its first image
        self._last_name: str | None = None  # the image served last, to resume after a reopen

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"image folder not found: {self.folder}")
        files = sorted((p for p in self.folder.iterdir() if p.is_file()), key=lambda p: p.name)
        self._paths = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        self.skipped = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        unexpected = [p for p in self.skipped if p.suffix.lower() not in DOCUMENT_EXTENSIONS]
        if unexpected:  # a README beside the photos (the demo folder has one) is no news
            log.info("%s: skipping %d non-image files", self.description, len(unexpected))
        # Resume just after the image served last (by name: the listing may have changed meanwhile).
        last = self._last_name
        self._position = -1 if last is None else sum(p.name <= last for p in self._paths) - 1
        self._index = 0
        # decoding the next image now is the only honest "can I open this?"; read() serves it
        self._preloaded = self._next_readable()
        if self._preloaded is None and not (last is not None and not self.loops):
            raise CameraError(f"no readable images in {self.folder} ({len(self.skipped)} files skipped)")
        with self._lock:
            self._step_requested = True  # serve the next image on the first read

    def advance(self) -> bool:
        with self._lock:
            self._step_requested = True
        return not self.ended

    def read(self) -> Frame | None:
        if not self._paths:
            raise CameraError(f"{self.description}: read() before open()")
        now = time.monotonic()
        with self._lock:
            due = self._step_requested or (self.interval > 0 and now - self._served_at >= self.interval)
            self._step_requested = False
        if not due or self.ended:
            return None
        found, self._preloaded = self._preloaded or self._next_readable(), None
        if found is None:
            if not self.loops and self._last_name is not None:
                self.ended = True
                log.info("%s: end of the folder, %d images served, %d files skipped",
                         self.description, self.served, len(self.skipped))
                return None
            raise CameraError(f"no readable images left in {self.folder}")  # deleted while running
        position, image = found
        self._position = position
        self._last_name = self._paths[position].name
        self._served_at = now
        self._index += 1
        self.served += 1
        return Frame(image, self._index, time.monotonic(), self._paths[position].name)

    def _next_readable(self) -> tuple[int, NDArray[np.uint8]] | None:
        """Decode the first readable image after the one served last; drop (and log) the ones that fail.

        A slideshow wraps to the first image (logged at INFO the first time); otherwise None at the end of the folder.
        """
        i = self._position + 1
        while self._paths:
            if i >= len(self._paths):
                if not self.loops:
                    return None
                self.laps += 1
                # Said once: a demo slideshow of 30 images would repeat it every minute.
                log.log(logging.INFO if self.laps == 1 else logging.DEBUG, "%s: back to the first image (lap %d)",
                        self.description, self.laps + 1)
                i = 0
            try:
                return i, load_rgb(self._paths[i])
            except Exception as exc:  # Pillow raises many types, e.g. DecompressionBombError
                log.warning("%s: skipping unreadable image %s: %s: %s",
                            self.description, self._paths[i].name, type(exc).__name__, exc)
                self.skipped.append(self._paths.pop(i))
                if i <= self._position:
                    self._position -= 1  # keep pointing just before the next image to serve
                # the following file moved into slot i
        return None

    def close(self) -> None:
        self._paths = []
        self._preloaded = None


def open_source(spec: str, interval: float = 0.0) -> FrameSource:
    """A source for what the user typed: a folder, a camera index ("0"), a video file or a URL.

    The source is not opened yet (the capture loop opens it, and reopens it after a loss).
    """
    spec = spec.strip()
    if not spec:
        raise CameraError("no camera given: use a camera index (0), a video file, a stream URL or an image folder")
    if Path(spec).is_dir():
        return FolderSource(spec, interval)
    if spec.isdigit():
        return OpenCVSource(int(spec))
    return OpenCVSource(spec)


class LatestFrameSlot:
    """A one-frame buffer between a producer and a slower consumer: the newest frame wins.

    ``put`` replaces a frame nobody took yet (counted in ``dropped``); ``take`` hands each frame
    out at most once. Never a growing queue, so the consumer is never behind by more than one frame.
    ``put(frame, pin=True)`` is for an item's settled frame, which must be classified: it goes before any
    other frame and is never replaced (items settle seconds apart, so pinned frames never pile up).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: Frame | None = None
        self._pinned: deque[Frame] = deque()
        self._dropped = 0
        self._closed = False

    @property
    def dropped(self) -> int:
        with self._condition:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed

    def put(self, frame: Frame, pin: bool = False) -> None:
        with self._condition:
            if self._closed:
                return
            if pin:
                self._pinned.append(frame)
                self._condition.notify_all()
                return
            if self._frame is not None:
                self._dropped += 1
            self._frame = frame
            self._condition.notify_all()

    def offer(self, frame: Frame) -> bool:
        """Put ``frame`` only if the slot is empty: a newer frame already waiting wins."""
        with self._condition:
            if self._closed or self._frame is not None:
                return False
            self._frame = frame
            self._condition.notify_all()
            return True

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken; None on timeout or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._frame is not None or self._pinned or self._closed, timeout)
            if self._closed:
                return None
            if self._pinned:
                return self._pinned.popleft()
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        """Wake every waiter; later puts are ignored and takes return None."""
        with self._condition:
            self._closed = True
            self._frame = None
            self._pinned.clear()
            self._condition.notify_all()


class StaleDetector:
    """Flags a feed whose image content has not changed for ``stale_after`` seconds.

    A frozen driver or a dead stream keeps returning the very same buffer; real sensor noise changes
    at least a few bytes. A CRC of a strided sample (~1/64 of the pixels) costs microseconds per frame.
    """

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._checksum: int | None = None
        self._changed_at = 0.0

    def update(self, frame: Frame) -> bool:
        """Record ``frame``; True if the content has been unchanged for ``stale_after`` seconds."""
        sample = np.ascontiguousarray(frame.image[::8, ::8])
        checksum = zlib.crc32(sample.data)
        if checksum != self._checksum:
            self._checksum = checksum
            self._changed_at = frame.timestamp
            return False
        return frame.timestamp - self._changed_at >= self.stale_after


class CaptureLoop:
    """Drives a frame source on the calling thread until ``stop`` is set; reopens it after a loss.

    ``on_frame(frame)`` gets every new frame; ``on_state(state, detail)`` gets "opening", "live"
    (detail: source description), "lost" (detail: reason and the retry delay) and "stopped".
    A live source is lost when it yields no frame for ``grace`` seconds (``first_frame_timeout``
    right after opening: cameras take a moment to start), when its image is frozen for
    ``stale_after`` seconds, or when it raises. Then it is closed and a fresh one from
    ``source_factory`` is opened after the next ``backoff`` delay (the last delay repeats).
    Exceptions raised by the callbacks are bugs, not camera trouble: they end ``run()``.
    """

    def __init__(
        self,
        source_factory: Callable[[], FrameSource],
        on_frame: Callable[[Frame], None],
        on_state: Callable[[str, str], None],
        backoff: Sequence[float] = (0.5, 1.0, 2.0, 5.0),
        stale_after: float = 3.0,
        grace: float = 1.0,
        first_frame_timeout: float = 5.0,
        poll_interval: float = 0.005,
        fps_window: float = 2.0,
    ) -> None:
        if not backoff:
            raise ValueError("backoff needs at least one delay")
        self._source_factory = source_factory
        self._on_frame = on_frame
        self._on_state = on_state
        self.backoff = tuple(backoff)
        self.stale_after = stale_after
        self.grace = grace
        self.first_frame_timeout = max(first_frame_timeout, grace)
        self.poll_interval = poll_interval
        self.rate = RateMeter(fps_window)  # frames per second, measured as the inference rate is
        self._lock = threading.Lock()  # guards _source and _state (read from other threads)
        self._source: FrameSource | None = None
        self._state = STOPPED
        self._detail = ""
        self._failures = 0

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def detail(self) -> str:
        with self._lock:
            return self._detail

    @property
    def fps(self) -> float:
        """Capture rate over the last ``fps_window`` seconds (0 when frames stopped)."""
        return self.rate.rate()

    def advance(self) -> bool:
        """Forward the operator's "next item" to the current source (folder sources step)."""
        with self._lock:
            source = self._source
        return source.advance() if source is not None else False

    def run(self, stop: threading.Event) -> None:
        self._failures = 0
        self._set_state(OPENING, "")
        try:
            while not stop.is_set():
                reason = self._run_source(stop)
                if stop.is_set():
                    break
                delay = self.backoff[min(self._failures, len(self.backoff) - 1)]
                self._failures += 1
                self._set_state(LOST, f"{reason}; retrying in {delay:g} s")
                stop.wait(delay)  # interruptible backoff
        except BaseException as exc:
            self._set_state(STOPPED, f"capture failed: {exc!r}", quiet=True)
            raise
        self._set_state(STOPPED, "")

    def _run_source(self, stop: threading.Event) -> str:
        """Open one source and pump its frames; returns why it was lost (or "" when stopped)."""
        source: FrameSource | None = None
        try:
            try:
                source = self._source_factory()
                source.open()
            except Exception as exc:  # CameraError or anything a driver throws: a loss, reported
                log.warning("capture: open failed: %s", exc)
                return describe(exc)
            with self._lock:
                self._source = source
            return self._pump(source, stop)
        finally:
            with self._lock:
                self._source = None
            self.rate.reset()
            if source is not None:
                try:
                    source.close()
                except Exception:  # a failing close must not stop the reopen; the loss is reported anyway
                    log.warning("capture: closing %s failed", source.description, exc_info=True)

    def _pump(self, source: FrameSource, stop: threading.Event) -> str:
        stale = StaleDetector(self.stale_after)
        last_frame_at = time.monotonic()
        silence_limit = self.first_frame_timeout
        live = False
        while not stop.is_set():
            try:
                frame = source.read()
            except Exception as exc:
                log.warning("capture: %s failed: %s", source.description, exc)
                return describe(exc)
            now = time.monotonic()
            if frame is None:
                if getattr(source, "ended", False) and self.state != ENDED:
                    self._set_state(ENDED, f"{source.description}: every image has been shown")
                if source.is_live and now - last_frame_at > silence_limit:
                    return f"{source.description}: no frames for {silence_limit:g} s"
                stop.wait(self.poll_interval)  # no busy spin while the source has nothing new
                continue
            last_frame_at = now
            silence_limit = self.grace
            if source.is_live and stale.update(frame):
                return f"{source.description}: image frozen for {self.stale_after:g} s"
            self.rate.tick(now)
            if not live:
                live = True
                self._failures = 0
                self._set_state(LIVE, source.description)
            self._on_frame(frame)
        return ""

    def _set_state(self, state: str, detail: str, quiet: bool = False) -> None:
        with self._lock:
            self._state, self._detail = state, detail
        if quiet:  # already failing: report, but never mask the original exception
            try:
                self._on_state(state, detail)
            except Exception:
                log.exception("capture: on_state failed while stopping")
        else:
            self._on_state(state, detail)


def describe(exc: BaseException) -> str:
    """A reason for the UI: CameraError messages as written, anything else with its type."""
    return str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
