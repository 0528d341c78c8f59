"""``balance static-rr``: weighted round robin over a fixed table (HAProxy's lb_map.c).

The article's plain weighted round robin. The table of eligible servers
(``map.weighted_table``: interleaved, weights 3,1 give a a b a) is computed
once per change in ``update()`` and walked in order, so a pick costs one
step. Unlike ``roundrobin``, a weight change rebuilds the whole table and
restarts the spread, which is why HAProxy meant it for static weights.

A full or excluded server is skipped for one pick. When every server is
full the walk visits the whole table once before giving up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible
from appliance.balance.map import weighted_table

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo


class StaticRoundRobin:
    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        self._all = tuple(servers)
        self._table: list[Candidate] = []
        self._position = 0
        self.update()

    def update(self) -> None:
        self._table = weighted_table(eligible(self._all))
        # Keep the position rather than restarting at the table's head, which
        # would favour the first servers when updates come often.
        self._position = self._position % len(self._table) if self._table else 0

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        table = self._table
        size = len(table)
        position = self._position
        excluded = None
        for _ in range(size):
            server = table[position]
            position += 1
            if position == size:
                position = 0
            if server.full:
                continue
            if server is exclude:
                excluded = server
                continue
            self._position = position
            return server
        return excluded
