"""``balance leastconn``: weighted least connections (HAProxy's lb_fwlc.c).

The article's answer for long sessions (LDAP, SQL, WebSocket, streaming):
send the next connection where the fewest are in flight, relative to weight.
The server minimising ``(cur_conns + 1) / weight`` wins; among equals the
scan starts just after the previous winner, so idle servers share the load
in turn instead of the first one taking every short request.

Weights and availability are snapshot by ``update()``; ``cur_conns`` and
``full`` are read live. A pick is one pass over the eligible servers, and a
second one only when the least loaded server is full or excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo


class LeastConn:
    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        self._all = tuple(servers)
        self._count = 0
        self._servers: list[Candidate] = []
        self._weights: list[int] = []
        self._start = 0
        self.update()

    def update(self) -> None:
        servers = eligible(self._all)
        self._count = len(servers)
        # Doubled so that a scan starting anywhere is one slice-free range.
        self._servers = servers * 2
        self._weights = [s.weight for s in servers] * 2
        self._start = self._start % self._count if self._count else 0

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        # Fast path: find the least loaded and check only it for ``full``
        # (a property; reading it for every server would double the cost).
        servers = self._servers
        weights = self._weights
        start = self._start
        best = -1
        best_load = 0
        best_weight = 1
        for i in range(start, start + self._count):
            load = servers[i].cur_conns + 1
            weight = weights[i]
            # load / weight < best_load / best_weight, without division.
            if best < 0 or load * best_weight < best_load * weight:
                best = i
                best_load = load
                best_weight = weight
        if best < 0:
            return None
        server = servers[best]
        if server is exclude or server.full:
            best = self._least_loaded_skipping(exclude)
            if best < 0:
                return None
        self._start = (best + 1) % self._count
        return servers[best]

    def _least_loaded_skipping(self, exclude: Candidate | None) -> int:
        """Index of the least loaded server that is not full, avoiding ``exclude``; -1 if none."""
        servers = self._servers
        weights = self._weights
        start = self._start
        best = -1
        best_load = 0
        best_weight = 1
        excluded = -1
        for i in range(start, start + self._count):
            server = servers[i]
            if server.full:
                continue
            if server is exclude:
                excluded = i
                continue
            load = server.cur_conns + 1
            weight = weights[i]
            if best < 0 or load * best_weight < best_load * weight:
                best = i
                best_load = load
                best_weight = weight
        return best if best >= 0 else excluded
