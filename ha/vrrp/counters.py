"""Counters of dropped packets and notices, logged at a limited rate.

Bad input must never flood the log (architecture.md: bad input is dropped, counted and
the process carries on): every event is counted by kind, and each kind is logged at most
once per ``LOG_INTERVAL``, the next line saying how many were not logged in between.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

LOG_INTERVAL = 10.0  # seconds between two log lines of one kind

log = logging.getLogger("weir.ha")


class RateLimitedCounter:
    """Counts by kind; logs ``PREFIX: WHAT: reason`` at most once per kind and interval."""

    def __init__(self, prefix: str, what: str, interval: float = LOG_INTERVAL) -> None:
        self.prefix = prefix
        self.what = what
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def add(self, kind: str, reason: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        last = self._logged.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] += 1
            return
        self._logged[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        log.warning("%s: %s: %s%s", self.prefix, self.what, reason, more)
