"""Item arrival on the table or belt: when something enters the view, when it has settled, when it has left. No Qt.

``ArrivalDetector.update(image, t)`` takes every captured RGB frame with its time (seconds, monotonic) and returns
the events that frame caused: ``arriving`` (something entered an empty view), ``settled`` (it has held still for
``settle_s`` seconds: one per item, with the frame to classify), ``left`` (the item's place is empty again).

Why a running-average difference against a learned empty scene and not ``cv2.createBackgroundSubtractorMOG2``:
MOG2 keeps learning, so an item that lies still is absorbed into its background after ``history`` frames and
"leaves" while it is still there. Here the empty scene is learned once (``calibrate``: the per-pixel median of the
frames of ``calibration_s`` seconds, so a hand passing meanwhile is ignored) and then follows slow lighting drift
only while the view is empty; a global brightness change while an item is present is taken out by subtracting the
median difference of the pixels that are not foreground. Work happens on a copy shrunk to ``work_width`` pixels
and blurred (about a millisecond per 640x480 frame), so it runs in the capture thread at the camera's rate.

For image folders, ``PhotoArrivals`` has the same API: every image is one item, settled as it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

# Detector states (what the overlay shows, with the controller's "decided").
CALIBRATING, EMPTY, ARRIVING, SETTLED = "calibrating", "empty", "arriving", "settled"
# Event kinds.
ARRIVED, SETTLED_EVENT, LEFT = "arriving", "settled", "left"

_NO_OUTLINE = np.zeros((0, 2), np.int32)


@dataclass(frozen=True)
class ArrivalSettings:
    """Thresholds of the detector; the defaults suit a 640x480 camera looking down at a table or belt."""

    min_area: float = 0.02  # share of the view that must differ from the empty scene to be an item
    settle_s: float = 0.4  # how long it must hold still to be settled
    diff_threshold: float = 30.0  # per-channel difference (0-255, after blur) that counts as changed
    still_fraction: float = 0.003  # share of the view allowed to change while "still" (noise, a shadow)
    calibration_s: float = 1.0  # seconds of empty view learned as the background
    background_tau_s: float = 5.0  # while empty, the background follows the view with this time constant
    left_overlap: float = 0.5  # the settled item has left when less than this share of its footprint is covered
    # An item settles only when it lies wholly in view, this many work pixels from the picture's edge: an arm
    # reaching in, and an item half out of the view (leaving, or stopped at the edge), never count as items.
    edge_margin: int = 2
    work_width: int = 160  # pixels across the shrunk copy the detector works on
    # The settled event's frame is a square around the item, this share of its longer side added on every side
    # (None: the whole frame). The model learned from photos the item fills; a wide view makes it a speck.
    crop_margin: float | None = 0.15  # None when the station's setting arrival_crop is false

    def __post_init__(self) -> None:
        shares = ("min_area", "still_fraction", "left_overlap")
        for name in shares:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value < 1.0):
                raise ValueError(f"arrival {name} must be a share between 0 and 1 (exclusive), got {value!r}")
        for name in ("settle_s", "calibration_s", "background_tau_s", "diff_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"arrival {name} must be a positive number, got {value!r}")
        if not (isinstance(self.edge_margin, int) and 0 <= self.edge_margin <= 20):
            raise ValueError(f"arrival edge_margin must be a whole number of pixels in 0..20, got {self.edge_margin!r}")
        if self.crop_margin is not None and not (
                isinstance(self.crop_margin, int | float) and 0.0 <= self.crop_margin <= 1.0):
            raise ValueError(f"arrival crop_margin must be a share between 0 and 1, or None, got {self.crop_margin!r}")
        if not (isinstance(self.work_width, int) and 32 <= self.work_width <= 1024):
            raise ValueError(f"arrival work_width must be a whole number of pixels in 32..1024, "
                             f"got {self.work_width!r}")


@dataclass(frozen=True, eq=False)  # eq=False: arrays inside
class ArrivalEvent:
    kind: str  # "arriving" | "settled" | "left"
    t: float  # time of the frame that caused it
    item: int | None  # item number (1, 2, ...) from "settled" on; None for an arrival, and when it never settled
    frame: NDArray[np.uint8] | None = None  # "settled": the image to classify (the item's square, or the frame)
    outline: NDArray[np.int32] = field(default_factory=lambda: _NO_OUTLINE)  # (N, 2) x, y in frame pixels


@dataclass(frozen=True, eq=False)
class ArrivalView:
    """What the overlay draws for the current frame."""

    state: str
    item: int | None
    outline: NDArray[np.int32]  # (N, 2) x, y in frame pixels; empty when nothing is in view


MIN_CROP_SIDE = 64  # pixels: a smaller item is classified from a little more of its surroundings


def item_square(outline: NDArray[np.int32], width: int, height: int, margin: float) -> tuple[int, int, int] | None:
    """The square ``(x, y, side)`` around an outline's bounding box, ``margin`` of its longer side added on each
    side, moved (not cut) to lie inside a ``width`` x ``height`` frame; None without an outline."""
    if len(outline) == 0:
        return None
    x0, y0 = outline.min(axis=0)
    x1, y1 = outline.max(axis=0) + 1
    longer = max(int(x1 - x0), int(y1 - y0))
    side = min(max(round(longer * (1 + 2 * margin)), MIN_CROP_SIDE), width, height)
    x = min(max(round((x0 + x1 - side) / 2), 0), width - side)
    y = min(max(round((y0 + y1 - side) / 2), 0), height - side)
    return int(x), int(y), int(side)


class ArrivalDetector:
    """Detects items entering, settling in and leaving the view; one ``settled`` event per item. Not thread-safe."""

    def __init__(self, settings: ArrivalSettings | None = None) -> None:
        self.settings = settings or ArrivalSettings()
        self.items = 0  # items settled so far (the last item number)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self.calibrate()

    # ---- state

    @property
    def state(self) -> str:
        return self._state

    @property
    def view(self) -> ArrivalView:
        item = self.items if self._state == SETTLED else None
        return ArrivalView(self._state, item, self._outline)

    def calibrate(self) -> None:
        """Learn the empty scene again from the next ``calibration_s`` seconds of frames (an item in view is lost)."""
        self._state = CALIBRATING
        self._samples: list[NDArray[np.float32]] = []
        self._calibration_start: float | None = None
        self._background: NDArray[np.float32] | None = None
        self._mask: NDArray[np.bool_] | None = None
        self._footprint: NDArray[np.bool_] | None = None
        self._still_ref: NDArray[np.float32] | None = None
        self._still_since = 0.0
        self._announced = False  # this visit began in an empty view (so its end is news even if it never settled)
        self._last_t: float | None = None
        self._outline = _NO_OUTLINE
        self._scale = 1.0

    # ---- per frame

    def update(self, image: NDArray[np.uint8], t: float) -> list[ArrivalEvent]:
        """Feed one RGB frame (H x W x 3 uint8) taken at ``t`` seconds; returns the events it caused, in order."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frame must be an RGB uint8 array HxWx3, got {getattr(image, 'dtype', type(image))} "
                             f"{getattr(image, 'shape', '')}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"frame times must not go back: {t} after {self._last_t}")
        dt = 0.0 if self._last_t is None else t - self._last_t
        self._last_t = t
        small = self._shrink(image)
        if self._background is not None and small.shape != self._background.shape:
            self.calibrate()  # a reopened camera with another resolution: the learned scene no longer fits
        if self._state == CALIBRATING:
            self._learn(small, t)
            return []
        assert self._background is not None
        mask = self._foreground(small)
        self._mask = mask
        present = mask.mean() >= self.settings.min_area
        self._outline = self._outline_of(mask) if present or self._state == SETTLED else _NO_OUTLINE
        events: list[ArrivalEvent] = []
        if self._state == EMPTY:
            if present:
                events.append(self._arrive(small, t))
                self._announced = True
            else:
                alpha = 1.0 - math.exp(-dt / self.settings.background_tau_s)
                self._background += alpha * (small - self._background)
        elif self._state == ARRIVING:
            if not present:
                self._state = EMPTY
                if self._announced:  # e.g. a hand passed through; the tail of a leaving item is no news
                    events.append(ArrivalEvent(LEFT, t, None))
            else:
                events += self._settle_if_still(small, image, mask, t)
        elif self._state == SETTLED:
            assert self._footprint is not None
            covered = float((mask & self._footprint).sum()) / max(1, int(self._footprint.sum()))
            if covered < self.settings.left_overlap:
                events.append(ArrivalEvent(LEFT, t, self.items))
                self._footprint = None
                if present:  # the item on its way out, or the next one coming in behind it: watch, say nothing yet
                    self._arrive(small, t)
                    self._announced = False
                else:
                    self._state = EMPTY
                    self._outline = _NO_OUTLINE
        return events

    def _arrive(self, small: NDArray[np.float32], t: float) -> ArrivalEvent:
        self._state = ARRIVING
        self._still_ref, self._still_since = small, t
        return ArrivalEvent(ARRIVED, t, None, outline=self._outline)

    def _settle_if_still(
        self, small: NDArray[np.float32], image: NDArray[np.uint8], mask: NDArray[np.bool_], t: float
    ) -> list[ArrivalEvent]:
        assert self._still_ref is not None
        changed = (np.abs(small - self._still_ref).max(axis=2) > self.settings.diff_threshold).mean()
        if changed > self.settings.still_fraction:  # still moving: stillness starts again from this frame
            self._still_ref, self._still_since = small, t
            return []
        if t - self._still_since < self.settings.settle_s or self._touches_edge(mask):
            return []
        self.items += 1
        self._state = SETTLED
        self._footprint = mask
        return [ArrivalEvent(SETTLED_EVENT, t, self.items, frame=self._item_image(image), outline=self._outline)]

    def _item_image(self, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """What the model classifies: the square around the item (a copy), or the whole frame."""
        if self.settings.crop_margin is None:
            return image
        height, width = image.shape[:2]
        square = item_square(self._outline, width, height, self.settings.crop_margin)
        if square is None:
            return image
        x, y, side = square
        return image[y:y + side, x:x + side].copy()

    # ---- image work

    def _shrink(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        height, width = image.shape[:2]
        work_width = min(self.settings.work_width, width)
        self._scale = width / work_width
        size = (work_width, max(1, round(height * work_width / width)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != (width, height) else image
        return cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)

    def _learn(self, small: NDArray[np.float32], t: float) -> None:
        if self._calibration_start is None:
            self._calibration_start = t
        self._samples.append(small)
        if t - self._calibration_start >= self.settings.calibration_s and len(self._samples) >= 3:
            self._background = np.median(np.stack(self._samples), axis=0).astype(np.float32)
            self._samples = []
            self._state = EMPTY

    def _foreground(self, small: NDArray[np.float32]) -> NDArray[np.bool_]:
        assert self._background is not None
        difference = small - self._background
        # Lighting: the median difference of the pixels that were background last frame is the scene's shift.
        reference = ~self._mask if self._mask is not None else np.ones(small.shape[:2], bool)
        if reference.mean() > 0.1:
            shift = np.median(difference[reference][::3], axis=0)
            difference -= shift
        mask = (np.abs(difference).max(axis=2) > self.settings.diff_threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)  # specks of noise out
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel)
        return mask.astype(bool)

    def _touches_edge(self, mask: NDArray[np.bool_]) -> bool:
        m = self.settings.edge_margin
        if m == 0:
            return False
        return bool(mask[:m].any() or mask[-m:].any() or mask[:, :m].any() or mask[:, -m:].any())

    def _outline_of(self, mask: NDArray[np.bool_]) -> NDArray[np.int32]:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return _NO_OUTLINE
        largest = max(contours, key=cv2.contourArea)
        polygon = cv2.approxPolyDP(largest, 1.0, True).reshape(-1, 2).astype(np.float32)
        return np.round((polygon + 0.5) * self._scale - 0.5).astype(np.int32)


class PhotoArrivals:
    """Image folders: every new image is one item, settled at once (there is no empty scene to learn)."""

    def __init__(self) -> None:
        self.items = 0
        self._view = ArrivalView(EMPTY, None, _NO_OUTLINE)

    @property
    def state(self) -> str:
        return self._view.state

    @property
    def view(self) -> ArrivalView:
        return self._view

    def calibrate(self) -> None:
        """Nothing to learn: kept so both kinds of detector answer the same keys."""

    def update(self, image: NDArray[np.uint8], t: float) -> list[ArrivalEvent]:
        height, width = image.shape[:2]
        whole = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.int32)
        events = [ArrivalEvent(LEFT, t, self.items)] if self.items else []
        self.items += 1
        self._view = ArrivalView(SETTLED, self.items, whole)
        return [*events, ArrivalEvent(ARRIVED, t, None, outline=whole),
                ArrivalEvent(SETTLED_EVENT, t, self.items, frame=image, outline=whole)]
