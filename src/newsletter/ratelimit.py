"""Hold the sending rate under what the relay allows, and back off when it says we are too fast."""

from __future__ import annotations

import math
import threading
from collections import deque

from .clock import Clock

BURST_SECONDS = 0.25  # lost time that may be made up back to back: a quarter second's slots, at least one


class RateLimiter:
    """Spaces messages evenly at `per_second`, keeps any rolling hour under `per_hour`, and pauses
    everyone after a policy reply (421 4.7.0 and the like), longer each time until a message gets through.

    Each slot is scheduled from the previous slot, not from when a sender asked: time lost while every
    connection was busy is made up, with at most `burst` messages back to back, so the rate holds over any
    window and never runs ahead of the schedule. Each sender asks acquire() (or reserve()) before handing a message to the relay.
    """

    def __init__(self, clock: Clock, per_second: float = 0, per_hour: float = 0,
                 backoff_start: float = 5.0, backoff_max: float = 600.0) -> None:
        self.clock = clock
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.burst = max(1, math.ceil(per_second * BURST_SECONDS)) if per_second > 0 else 0
        self.per_hour = int(per_hour)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self._lock = threading.Lock()
        self._next_slot: float | None = None  # the first acquire starts the schedule
        self._hour: deque[float] = deque()
        self._paused_until = 0.0
        self._backoff = 0.0

    def acquire(self) -> None:
        """Wait (on the clock) until this caller may send one message."""
        while (wait := self.reserve()) > 0:
            self.clock.sleep(wait)

    def reserve(self) -> float:
        """Take the next slot if it has come (0.0), else say how many seconds until it does, taking
        nothing: what an event loop asks instead of waiting in acquire()."""
        with self._lock:
            now = self.clock.monotonic()
            if self._next_slot is None:
                self._next_slot = now
            # a slot that passed unused stays usable for a short while (the burst), then is lost
            slot = max(self._next_slot, now - self.burst * self.interval, self._paused_until)
            if self.per_hour:
                while self._hour and self._hour[0] <= now - 3600:
                    self._hour.popleft()
                if len(self._hour) >= self.per_hour:
                    slot = max(slot, self._hour[0] + 3600)
            if slot > now:
                return slot - now
            self._next_slot = slot + self.interval
            if self.per_hour:
                self._hour.append(now)
            return 0.0

    def slow_down(self) -> float:
        """The relay pushed back: pause every sender, doubling the pause on each push-back in a row."""
        with self._lock:
            self._backoff = min(self.backoff_max, self._backoff * 2 if self._backoff else self.backoff_start)
            self._paused_until = max(self._paused_until, self.clock.monotonic() + self._backoff)
            if self._next_slot is not None:  # no burst to make up the pause: the relay asked for it
                self._next_slot = max(self._next_slot, self._paused_until)
            return self._backoff

    def succeeded(self) -> None:
        with self._lock:
            self._backoff = 0.0
