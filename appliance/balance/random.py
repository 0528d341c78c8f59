"""``balance random``: weighted power of two choices (HAProxy's backend.c get_server_rnd).

Draw two distinct servers at random, each with probability proportional to
its weight, and keep the one with fewer requests in flight relative to its
weight (``cur_conns / weight``; the first draw on a tie). Nearly as even as
least connections, yet without its herd effect when several proxies share a
farm, and with no state shared between picks. On an idle farm the choice
follows the weights exactly.

Weights and availability are snapshot by ``update()`` into cumulative sums;
a draw is one ``bisect``. When neither draw is usable (full or excluded) the
pick falls back to a pass over all eligible servers.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo


def _less_loaded(a: Candidate, b: Candidate) -> Candidate:
    """``b`` if it carries strictly less than ``a`` relative to weight, else ``a``."""
    return b if b.cur_conns * a.weight < a.cur_conns * b.weight else a


class Random:
    def __init__(
        self,
        servers: Sequence[Candidate],
        arg: str = "",
        hash_type: str = "map-based",
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._all = tuple(servers)
        self._rng = rng if rng is not None else random.Random()
        self._servers: list[Candidate] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._total = 0
        self.update()

    def update(self) -> None:
        self._servers = eligible(self._all)
        # Server i owns [_starts[i], _ends[i]) of [0, total).
        self._ends = list(accumulate(s.weight for s in self._servers))
        self._starts = [0, *self._ends[:-1]] if self._ends else []
        self._total = self._ends[-1] if self._ends else 0

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        servers = self._servers
        count = len(servers)
        if count == 0:
            return None
        ends = self._ends
        draw = self._rng.random
        last = count - 1
        # min(): random() * total may round up to total itself.
        first_index = min(bisect_right(ends, draw() * self._total), last)
        first = servers[first_index]
        if count == 1:
            return None if first.full else first
        # Second draw without replacement: draw over the other servers' total
        # and skip over the first one's interval.
        first_start = self._starts[first_index]
        first_weight = ends[first_index] - first_start
        point = draw() * (self._total - first_weight)
        if point >= first_start:
            point += first_weight
        second = servers[min(bisect_right(ends, point), last)]
        first_ok = not first.full and first is not exclude
        second_ok = not second.full and second is not exclude
        if first_ok and second_ok:
            return _less_loaded(first, second)
        if first_ok:
            return first
        if second_ok:
            return second
        return self._least_loaded(exclude)

    def _least_loaded(self, exclude: Candidate | None) -> Candidate | None:
        best = None
        excluded = None
        for server in self._servers:
            if server.full:
                continue
            if server is exclude:
                excluded = server
                continue
            best = server if best is None else _less_loaded(best, server)
        return best if best is not None else excluded
