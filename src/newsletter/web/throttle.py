"""A sliding-window limit on how often one key (an address, an IP) may do something, in this process.

The subscribe form sends a mail to whatever address it is given; without a limit it is a tool for mail
bombing somebody else's inbox. State lives in memory: a restart forgets it, which is acceptable for a
limit measured in hours.
"""

from __future__ import annotations

import threading
from collections import deque

from ..clock import Clock


class Throttle:
    def __init__(self, clock: Clock, limit: int = 3, window_seconds: float = 3600.0) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window_seconds
        self._lock = threading.Lock()
        self._events: dict[str, deque[float]] = {}

    def allow(self, *keys: str) -> bool:
        """True, and counted against every key, only when each key is under its limit."""
        with self._lock:
            now = self.clock.monotonic()
            self._forget_before(now - self.window)
            if any(len(self._events.get(key, ())) >= self.limit for key in keys):
                return False
            for key in keys:
                self._events.setdefault(key, deque()).append(now)
            return True

    def _forget_before(self, horizon: float) -> None:
        for key in list(self._events):
            events = self._events[key]
            while events and events[0] <= horizon:
                events.popleft()
            if not events:
                del self._events[key]
