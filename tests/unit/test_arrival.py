"""Arrival detection on synthetic sequences, with the exact events each one must cause.

Frames are drawn at the detector's work size (160x120, so nothing is resized), one every 0.125 s (an exact binary
fraction: times add up without rounding). The first 0.5 s calibrate. Items are 40x40 squares at y = 40; the view
is 160 wide, so an item whose left edge is at x covers columns x .. x+39.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from station.arrival import (
    ARRIVING,
    CALIBRATING,
    EMPTY,
    SETTLED,
    ArrivalDetector,
    ArrivalEvent,
    ArrivalSettings,
    PhotoArrivals,
    item_square,
)

DT = 0.125
WIDTH, HEIGHT = 160, 120
SETTINGS = ArrivalSettings(settle_s=0.5, calibration_s=0.5, work_width=WIDTH)
CALIBRATION_FRAMES = 5  # t = 0 .. 0.5

Thing = tuple[int, int, int, int, tuple[int, int, int]]  # x, y, width, height, colour


def belt(seed: int = 0) -> np.ndarray:
    """A grey, grainy belt texture (static: the same belt in every frame)."""
    rng = np.random.default_rng(seed)
    return rng.integers(70, 170, (HEIGHT, WIDTH, 3)).astype(np.float32)


def render(things: Sequence[Thing], gain: float = 1.0, offset: float = 0.0, noise_seed: int = 0) -> np.ndarray:
    image = belt() * gain + offset
    for x, y, w, h, colour in things:
        x0, x1 = max(0, x), min(WIDTH, x + w)
        if x1 > x0:
            image[y:y + h, x0:x1] = np.array(colour, np.float32) * gain + offset
    image += np.random.default_rng(noise_seed).normal(0.0, 2.0, image.shape)  # sensor noise, new every frame
    return np.clip(image, 0, 255).astype(np.uint8)


def item(x: int | None, colour: tuple[int, int, int] = (220, 40, 40)) -> list[Thing]:
    return [] if x is None else [(x, 40, 40, 40, colour)]


def run(frames: Sequence[Callable[[int], np.ndarray]] | Sequence[np.ndarray], detector: ArrivalDetector | None = None
        ) -> list[tuple[str, float, int | None]]:
    detector = detector or ArrivalDetector(SETTINGS)
    events: list[ArrivalEvent] = []
    for i, frame in enumerate(frames):
        events += detector.update(frame, i * DT)
    for event in events:
        if event.kind == "settled":
            assert event.frame is not None and event.outline.shape[1] == 2 and len(event.outline) >= 4
    return [(e.kind, e.t, e.item) for e in events]


def sequence(positions: Sequence[Sequence[Thing]], **lighting: float) -> list[np.ndarray]:
    return [render(things, noise_seed=i, **lighting) for i, things in enumerate(positions)]


def slide_in_stop_leave(start: int) -> list[list[Thing]]:
    """Frames ``start``.. : in from the left 20 px a frame, stopped at x = 60 for 13 frames, out 15 px a frame."""
    xs = [-20, 0, 20, 40] + [60] * 13 + [75, 90, 105, 120, 135, 150, None]
    return [[] for _ in range(start)] + [item(x) for x in xs] + [[] for _ in range(4)]


def test_an_item_slides_in_stops_and_leaves() -> None:
    # Frame 8 (t = 1.0): 20 columns in view (4 % >= 2 %): arriving. Frame 12 (t = 1.5): stopped at x = 60, the
    # last change; still for 0.5 s at frame 16 (t = 2.0): settled. Frame 25 (t = 3.125): x = 75 still covers 25 of
    # its 40 footprint columns (62 %); frame 26 (t = 3.25): x = 90 covers 10 (25 % < 50 %): left. Its tail
    # crossing the edge is no news.
    assert run(sequence(slide_in_stop_leave(8))) == [
        ("arriving", 1.0, None), ("settled", 2.0, 1), ("left", 3.25, 1),
    ]


def test_two_items_in_quick_succession_never_leave_the_view_empty() -> None:
    # A as above (settled at 2.0, left at 3.25) while B comes in from the left from frame 25 on and stops at
    # x = 60 from frame 29; A leaves the view at frame 31 (t = 3.875), the last change: B settles at 4.375.
    # B goes out from frame 40 (x = 75) and has left at frame 41 (x = 90, t = 5.125).
    a = [-20, 0, 20, 40] + [60] * 13 + [75, 90, 105, 120, 135, 150] + [None] * 17
    b = [None] * 17 + [-20, 0, 20, 40] + [60] * 11 + [75, 90, 105, 120, 135, 150, None, None]
    positions = [[] for _ in range(8)] + [item(x) + item(y, (40, 60, 230)) for x, y in zip(a, b, strict=True)]
    assert run(sequence(positions)) == [
        ("arriving", 1.0, None), ("settled", 2.0, 1), ("left", 3.25, 1), ("settled", 4.375, 2), ("left", 5.125, 2),
    ]


def test_lighting_drift_is_not_an_item() -> None:
    # The light rises by a third and the whole scene by 20 levels over 31 s, with two items passing: exactly their
    # events, no phantom item while the view is empty or while an item lies there.
    positions = slide_in_stop_leave(8) + [[] for _ in range(200)] + slide_in_stop_leave(8)
    count = len(positions)
    frames = [render(things, gain=1.0 + 0.33 * i / count, offset=20.0 * i / count, noise_seed=i)
              for i, things in enumerate(positions)]
    second = (len(slide_in_stop_leave(8)) + 200) * DT  # where the second sequence starts
    assert run(frames) == [
        ("arriving", 1.0, None), ("settled", 2.0, 1), ("left", 3.25, 1),
        ("arriving", second + 1.0, None), ("settled", second + 2.0, 2), ("left", second + 3.25, 2),
    ]


def hand(x: int) -> list[Thing]:
    """A hand: a skin-coloured 50x22 patch, moving through at 15 px a frame."""
    return [(x, 70, 50, 22, (205, 150, 120))]


def test_a_hand_passing_through_is_no_item() -> None:
    # x = -35, -20, ... from frame 6 on. In view (>= 2 % = 384 px, i.e. 18 of its 22-px-high columns) from x = -20
    # (frame 7, t = 0.875: 30 columns) until x = 145 (frame 18, t = 2.25: 15 columns, gone); never still.
    positions = [[] for _ in range(6)] + [hand(x) for x in range(-35, 170, 15)] + [[] for _ in range(4)]
    assert run(sequence(positions)) == [("arriving", 0.875, None), ("left", 2.25, None)]


def test_a_hand_passing_over_a_settled_item_changes_nothing() -> None:
    positions = slide_in_stop_leave(8)
    for i, x in enumerate(range(-35, 170, 15)):  # passes while the item lies there (frames 17 .. 30)
        positions[17 + i] = positions[17 + i] + hand(x)
    assert run(sequence(positions)) == [("arriving", 1.0, None), ("settled", 2.0, 1), ("left", 3.25, 1)]


def test_an_arm_holding_still_at_the_edge_never_settles() -> None:
    arm = [(0, 60, 70, 20, (205, 150, 120))]  # reaches in from the left edge and stays
    positions = [[] for _ in range(8)] + [arm] * 20 + [[] for _ in range(3)]
    assert run(sequence(positions)) == [("arriving", 1.0, None), ("left", 3.5, None)]


def test_states_and_outline_follow_the_item() -> None:
    detector = ArrivalDetector(SETTINGS)
    frames = sequence(slide_in_stop_leave(8))
    states = []
    for i, frame in enumerate(frames):
        detector.update(frame, i * DT)
        states.append(detector.state)
        if i == 16:
            view = detector.view
            assert view.state == SETTLED and view.item == 1
            xs, ys = view.outline[:, 0], view.outline[:, 1]
            assert abs(xs.min() - 60) <= 2 and abs(xs.max() - 99) <= 2 and abs(ys.min() - 40) <= 2
            assert abs(ys.max() - 79) <= 2
    assert states[:5] == [CALIBRATING] * 4 + [EMPTY]
    assert states[8:16] == [ARRIVING] * 8 and states[16:26] == [SETTLED] * 10 and states[-1] == EMPTY


def test_recalibrating_learns_the_scene_again() -> None:
    detector = ArrivalDetector(SETTINGS)
    for i in range(CALIBRATION_FRAMES):
        assert detector.update(render([], noise_seed=i), i * DT) == []
    assert detector.state == EMPTY
    # A box is left on the table for good: recalibrate with it, and it is part of the empty scene.
    box = [(10, 10, 30, 30, (30, 200, 30))]
    assert [e.kind for e in detector.update(render(box), 5 * DT)] == ["arriving"]
    detector.calibrate()
    events = [e for i in range(6, 40) for e in detector.update(render(box, noise_seed=i), i * DT)]
    assert events == [] and detector.state == EMPTY


def test_full_size_frames_are_shrunk_and_the_outline_scaled_back() -> None:
    detector = ArrivalDetector(ArrivalSettings(settle_s=0.5, calibration_s=0.5, work_width=160))
    frames = [np.repeat(np.repeat(frame, 4, axis=0), 4, axis=1) for frame in sequence(slide_in_stop_leave(8))]
    events = [e for i, frame in enumerate(frames) for e in detector.update(frame, i * DT)]
    assert [(e.kind, e.t, e.item) for e in events] == [("arriving", 1.0, None), ("settled", 2.0, 1), ("left", 3.25, 1)]
    settled = events[1]
    assert abs(settled.outline[:, 0].min() - 240) <= 8 and abs(settled.outline[:, 0].max() - 399) <= 8
    # What the model gets: the square around the 160 x 160 item (x 240..399, y 160..319), 15 % of its side added
    # on each side (about 208 px), cut from the full-size frame; the item fills its middle.
    crop = settled.frame
    assert crop is not None and crop.shape[0] == crop.shape[1] and abs(crop.shape[0] - 208) <= 10
    side = crop.shape[0]
    middle = crop[side // 2 - 40:side // 2 + 40, side // 2 - 40:side // 2 + 40].reshape(-1, 3).mean(axis=0)
    assert middle[0] > 200 and middle[1] < 60  # the red item
    assert any(np.array_equal(crop, frames[16][y:y + side, x:x + side])
               for y in range(125, 150) for x in range(205, 230))  # cut from the settled frame itself

    whole = ArrivalDetector(ArrivalSettings(settle_s=0.5, calibration_s=0.5, work_width=160, crop_margin=None))
    settled = [e for i, frame in enumerate(frames) for e in whole.update(frame, i * DT) if e.kind == "settled"]
    assert settled[0].frame is frames[16]  # arrival_crop = false: the caller's own frame, full size


@pytest.mark.parametrize(("outline", "square"), [
    ([(240, 160), (399, 319)], (216, 136, 208)),  # 160 px item in the middle: 15 % more on each side
    ([(0, 0), (99, 49)], (0, 0, 130)),  # at the corner: moved inside the frame, not cut
    ([(600, 400), (639, 479)], (536, 376, 104)),  # at the other corner (80 px tall: 104 px square)
    ([(300, 200), (309, 209)], (273, 173, 64)),  # a 10 px speck: at least 64 px
    ([(0, 0), (639, 479)], (80, 0, 480)),  # larger than the frame's height: as tall as the frame
])
def test_the_item_square_surrounds_the_outline_inside_the_frame(
    outline: list[tuple[int, int]], square: tuple[int, int, int]
) -> None:
    assert item_square(np.array(outline, np.int32), 640, 480, 0.15) == square


def test_no_outline_gives_no_square_and_a_bad_margin_is_refused() -> None:
    assert item_square(np.zeros((0, 2), np.int32), 640, 480, 0.15) is None
    with pytest.raises(ValueError, match="crop_margin must be a share"):
        ArrivalSettings(crop_margin=-0.1)


def test_photo_arrivals_make_every_image_one_settled_item() -> None:
    photos = PhotoArrivals()
    images = [np.full((30, 40, 3), v, np.uint8) for v in (10, 20, 30)]
    events = [e for i, image in enumerate(images) for e in photos.update(image, float(i))]
    assert [(e.kind, e.t, e.item) for e in events] == [
        ("arriving", 0.0, None), ("settled", 0.0, 1),
        ("left", 1.0, 1), ("arriving", 1.0, None), ("settled", 1.0, 2),
        ("left", 2.0, 2), ("arriving", 2.0, None), ("settled", 2.0, 3),
    ]
    assert events[-1].frame is images[2] and photos.view.state == SETTLED and photos.view.item == 3


def test_bad_input_is_refused_with_a_clear_message() -> None:
    detector = ArrivalDetector(SETTINGS)
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.update(np.zeros((10, 10), np.uint8), 0.0)
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.update(np.zeros((10, 10, 3), np.float32), 0.0)
    detector.update(render([]), 1.0)
    with pytest.raises(ValueError, match="must not go back"):
        detector.update(render([]), 0.5)
    with pytest.raises(ValueError, match="min_area must be a share"):
        ArrivalSettings(min_area=2.0)
    with pytest.raises(ValueError, match="settle_s must be a positive number"):
        ArrivalSettings(settle_s=-1)
