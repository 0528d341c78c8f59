"""``balance first``: fill servers in order (HAProxy's lb_fas.c).

The first eligible server that is not full takes the request; the next one
only gets traffic once the first reaches its ``maxconn``. HAProxy orders by
server id, Weir by the backend's server list. Meant for farms that power
extra servers on and off with demand (each needs a ``maxconn``; with
``maxconn = 0`` the first server takes everything).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo


class First:
    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        self._all = tuple(servers)
        self._servers: list[Candidate] = []
        self.update()

    def update(self) -> None:
        self._servers = eligible(self._all)

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        excluded = None
        for server in self._servers:
            if server.full:
                continue
            if server is exclude:
                excluded = server
                continue
            return server
        return excluded
