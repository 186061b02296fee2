"""Hands-free sorting: one decision per item, in the modes manual, assist and auto. No Qt.

- ``manual``: nothing here acts; a key decides the frame on screen, as the station always did.
- ``assist``: every item that settles (``station.arrival``) is queued with its settled frame, classified once,
  and the oldest undecided item is held on screen until the operator confirms or corrects it. Items that settle
  meanwhile wait their turn in order: the next item never replaces the one being decided.
- ``auto``: as assist, but an item whose confidence is at or above ``auto_threshold`` confirms itself
  ``auto_delay`` seconds after it is shown (at once if it has already left the view) unless the operator presses
  a key: a decision key decides it (their own decision), the hold key stops the countdown. Below the threshold it
  waits for the operator, and so does an item of a class the operator's checks have not yet shown the model to be
  right about on this site (``station.trust``).

The window turns the events of arrival, inference and the keys into calls here, and the decisions this returns
into storage writes; ``bench/handsfree.py`` drives the same object.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from station.settings import SORTING_MODES
from station.storage import AUTO, NewDecision
from station.trust import SiteTrust, Standing

if TYPE_CHECKING:  # station.inference imports TensorFlow
    from station.camera import Frame
    from station.inference import Prediction

MANUAL, ASSIST, AUTO_MODE = SORTING_MODES
# What the overlay says about the item on screen.
CLASSIFYING, WAITING, COUNTDOWN = "classifying", "waiting for you", "auto"


@dataclass(eq=False)
class Item:
    """One physical item, from the moment it settled until its decision."""

    number: int  # the arrival detector's item number
    item_id: str  # unique for this station: session start + number (also in the published event)
    frame: Frame  # the settled frame: what is classified, shown and stored
    settled_at: float  # time.monotonic() of the settled frame
    prediction: Prediction | None = None
    due: float | None = None  # auto mode: when it confirms itself
    touches: int = 0  # operator key presses on it so far (hold, decision)
    left: bool = False  # it has left the view (its decision is still owed)

    @property
    def state(self) -> str:
        if self.prediction is None:
            return CLASSIFYING
        return COUNTDOWN if self.due is not None else WAITING


class HandsFree:
    """The queue of undecided items and the rules that decide them (see the module's docstring)."""

    def __init__(
        self,
        mode: str = MANUAL,
        auto_threshold: float = 0.9,
        auto_delay: float = 1.0,
        session: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        trust_checks: int = 0,
        trust_precision: float = 0.8,
    ) -> None:
        check_mode(mode)
        if not 0.0 <= auto_threshold <= 1.0:
            raise ValueError(f"auto_threshold must be between 0 and 1, got {auto_threshold!r}")
        if not 0.0 <= auto_delay <= 60.0:
            raise ValueError(f"auto_delay must be between 0 and 60 seconds, got {auto_delay!r}")
        self.mode = mode
        self.auto_threshold = auto_threshold
        self.auto_delay = auto_delay
        self.session = session or datetime.now().strftime("%Y%m%dT%H%M%S")
        self.clock = clock
        # 0 checks: the threshold alone. The station passes its settings (auto_trust_checks, auto_trust_precision).
        self.trust = SiteTrust(trust_checks, trust_precision, auto_threshold)
        self.queue: deque[Item] = deque()
        self._last_decided: Item | None = None

    # ---- mode

    @property
    def active(self) -> bool:
        return self.mode != MANUAL

    def set_mode(self, mode: str) -> None:
        """Switch modes; manual forgets the queue (the keys decide what is on screen again)."""
        self.mode = check_mode(mode)
        if not self.active:
            self.queue.clear()
        for item in self.queue:
            item.due = None
        self._start_countdown()

    def next_mode(self) -> str:
        """manual -> assist -> auto -> manual (the mode key)."""
        self.set_mode(SORTING_MODES[(SORTING_MODES.index(self.mode) + 1) % len(SORTING_MODES)])
        return self.mode

    # ---- what happens to items

    @property
    def current(self) -> Item | None:
        """The item on screen: the oldest undecided one."""
        return self.queue[0] if self.queue else None

    def item_settled(self, number: int, frame: Frame) -> Item | None:
        """An item settled (``frame`` is the settled frame); queued in the hands-free modes, else None."""
        if not self.active:
            return None
        item = Item(number, f"{self.session}-{number:04d}", frame, frame.timestamp)
        self.queue.append(item)
        return item

    def item_left(self, number: int | None) -> None:
        """The item has left the view: one counting down confirms now (the sorter needs it before it is gone)."""
        for item in self.queue:
            if item.number == number:
                item.left = True
                if item.due is not None:
                    item.due = min(item.due, self.clock())
        self._start_countdown()

    def classified(self, prediction: Prediction) -> Item | None:
        """The model's answer for a frame; the item it belongs to, or None (a live frame, not an item's)."""
        item = next((i for i in self.queue if i.frame is prediction.frame), None)
        if item is not None and item.prediction is None:
            item.prediction = prediction
            self._start_countdown()
        return item

    def hold(self) -> bool:
        """The operator stops the countdown of the item on screen: it waits for them. False: nothing to hold."""
        item = self.current
        if item is None or item.due is None:
            return False
        item.due = None
        item.touches += 1
        return True

    def due_item(self) -> Item | None:
        """The item on screen if its countdown has run out (auto-confirm it now)."""
        item = self.current
        if item is not None and item.due is not None and self.clock() >= item.due:
            return item
        return None

    def next_due(self) -> float | None:
        item = self.current
        return item.due if item is not None else None

    def standing(self, item: Item) -> Standing | None:
        """Where the item's predicted class stands with the operator at the auto threshold (None: not classified)."""
        if item.prediction is None:
            return None
        return self.trust.standing(item.prediction.label)

    def trust_changed(self) -> None:
        """New checks came in: the item on screen may now count down."""
        self._start_countdown()

    def _start_countdown(self) -> None:
        """Auto mode: the item on screen counts down when the model is confident enough, about a trusted class."""
        item = self.current
        if (self.mode != AUTO_MODE or item is None or item.prediction is None or item.due is not None
                or item.touches or item.prediction.confidence < self.auto_threshold
                or not self.trust.trusted(item.prediction.label)):
            return
        item.due = self.clock() + (0.0 if item.left else self.auto_delay)

    # ---- decisions

    def decided(self, decision: NewDecision, by_operator: bool = True) -> NewDecision:
        """Complete the desk's decision on the item on screen with its item fields and take the item off the queue.

        ``by_operator=False`` is the auto-confirmation (kind "auto"). In manual mode the decision is returned as is.
        """
        if not self.active:
            return decision
        item = self.current
        if item is None or item.prediction is None or decision.image is not item.frame.image:
            raise ValueError("no item of this frame is waiting for a decision")
        self.queue.popleft()
        self._last_decided = item
        touches = item.touches + (1 if by_operator else 0)
        settle_ms = (self.clock() - item.settled_at) * 1000.0
        completed = dataclasses.replace(decision, item_id=item.item_id, settle_ms=round(settle_ms, 1),
                                        touches=touches, kind=None if by_operator else AUTO)
        self._start_countdown()
        return completed

    def undone(self, item_id: str | None) -> Item | None:
        """The last decision was undone: its item (if it was the last one decided) is on screen again, waiting."""
        item = self._last_decided
        if item is None or item_id is None or item.item_id != item_id:
            return None
        self._last_decided = None
        for waiting in self.queue:
            waiting.due = None
        item.due = None
        item.touches += 1
        self.queue.appendleft(item)
        return item


def check_mode(mode: str) -> str:
    if mode not in SORTING_MODES:
        raise ValueError(f"mode must be one of {', '.join(SORTING_MODES)}, got {mode!r}")
    return mode
