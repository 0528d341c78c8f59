"""``balance roundrobin``: smooth weighted round robin (HAProxy's lb_fwrr.c).

The article's weighted round robin, with the dynamic weights HAProxy's
lb_fwrr.c allows. The spread is nginx's "smooth weighted round robin": on
each pick every candidate's current value grows by its weight, the largest
wins and gives back the total. Over any cycle of ``sum(weights)`` picks each
server is chosen exactly ``weight`` times, and picks are interleaved (weights
5,1,1 give a a b a c a a, not a a a a a b c).

Weights and availability are snapshot by ``update()``, which the proxy calls
on every change; current values survive it (clamped to one cycle), so a
slow-start ramp (many small weight changes) does not restart the sequence
and favour the heaviest server.

A full or excluded server is skipped for that pick. To keep the common case
to one pass without reading ``full`` (a property) on every server, all
servers are credited first and only the winner is checked; if it cannot take
the request the credit is taken back and nginx's loop runs, skipping full and
excluded servers. A server that stays full so keeps at most the leader's
credit, and gets the first pick once it has room again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo


class RoundRobin:
    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        self._all = tuple(servers)
        self._servers: list[Candidate] = []
        self._weights: list[int] = []
        self._current: list[int] = []
        self._total = 0
        self._uniform = True
        self._next = 0
        self.update()

    def update(self) -> None:
        previous = {id(s): c for s, c in zip(self._servers, self._current, strict=True)}
        self._servers = eligible(self._all)
        self._weights = [s.weight for s in self._servers]
        self._total = sum(self._weights)
        # Keep each server's current value, so frequent updates (slow start)
        # do not restart the sequence; but clamp it to one cycle's worth, so a
        # debt or credit run up under the old weights is settled within a cycle.
        total = self._total
        current = [max(-total, min(total, previous.get(id(s), 0))) for s in self._servers]
        # Servers that left or were clamped took some value with them: spread
        # the difference back so that the values sum to zero again (smooth
        # round robin's invariant), or they would drift with every change.
        if current:
            shift, rest = divmod(sum(current), len(current))
            current = [c - shift - (i < rest) for i, c in enumerate(current)]
        self._current = current
        # Equal weights (the usual farm) make smooth round robin a plain
        # rotation: pick() then needs no pass over the servers.
        self._uniform = len(set(self._weights)) <= 1

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        if self._uniform:
            return self._rotate(exclude)
        # Fast path: credit everyone and check only the winner (reading
        # ``full``, a property, for every server would double the cost).
        weights = self._weights
        current = self._current
        best = -1
        best_value = 0
        for i, weight in enumerate(weights):
            value = current[i] + weight
            current[i] = value
            if best < 0 or value > best_value:
                best = i
                best_value = value
        if best < 0:
            return None
        server = self._servers[best]
        if server is not exclude and not server.full:
            current[best] = best_value - self._total
            return server
        for i, weight in enumerate(weights):
            current[i] -= weight
        return self._pick_skipping(exclude)

    def _rotate(self, exclude: Candidate | None) -> Candidate | None:
        """Equal weights: the next server in turn that is neither full nor excluded."""
        servers = self._servers
        count = len(servers)
        excluded = None
        for _ in range(count):
            i = self._next
            if i >= count:
                i = 0
            self._next = i + 1
            server = servers[i]
            if server is exclude:
                excluded = server
            elif not server.full:
                return server
        return excluded if excluded is not None and not excluded.full else None

    def _pick_skipping(self, exclude: Candidate | None) -> Candidate | None:
        """nginx's loop: full and excluded servers take no part and get no credit."""
        weights = self._weights
        current = self._current
        best = -1
        best_value = 0
        total = 0
        excluded = None
        for i, server in enumerate(self._servers):
            if server.full:
                continue
            if server is exclude:
                excluded = server
                continue
            weight = weights[i]
            value = current[i] + weight
            current[i] = value
            total += weight
            if best < 0 or value > best_value:
                best = i
                best_value = value
        if best < 0:
            return excluded
        current[best] = best_value - total
        return self._servers[best]
