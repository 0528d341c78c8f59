"""Balancing algorithms: one module per algorithm, as in HAProxy's lb_*.c.

The article's "Load balancing algorithms" section: round robin (plain and
weighted), least connections, hashing of the source address, URI, a header
or a URL parameter, and consistent hashing when the farm changes often.

Every algorithm implements the ``Balancer`` protocol below. A balancer sees
servers through the small ``Candidate`` protocol, so it can be driven by the
proxy's live ``Server`` objects or by plain test doubles.

A balancer snapshots the servers' weights and availability in ``update()``
and picks from that snapshot: the proxy must call ``update()`` after every
change of a server's weight or availability (state change, drain, slow-start
step, ``set server ... weight``). Only ``cur_conns`` and ``full``, which change
with every request, are read live in ``pick()``. ``make_balancer`` builds the
balancer a backend's ``balance`` and ``hash_type`` name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from appliance.balance.registry import make_balancer

__all__ = ["Balancer", "Candidate", "RequestInfo", "make_balancer"]


class Candidate(Protocol):
    """What a balancer may read of a server."""

    name: str
    weight: int  # effective weight now, 0..256; 0 = takes no new traffic
    available: bool  # up and not in maintenance/drain: may take new traffic
    cur_conns: int  # requests in flight on it (for leastconn/random/first)
    maxconn: int  # 0 = unlimited

    @property
    def full(self) -> bool: ...


class RequestInfo(Protocol):
    """What a hashing balancer may read of a request."""

    client_ip: str
    path: bytes  # the request target as received, e.g. b"/a/b?x=1"

    def header(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (lower-case), or None."""


class Balancer(Protocol):
    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None: ...

    def update(self) -> None:
        """Weights or availability of the servers changed: rebuild what depends on them.

        Must be called after every such change; ``pick()`` does not re-read them.
        """

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        """Choose a server for ``req``.

        Non-hashing algorithms skip unavailable, zero-weight and full servers and
        return None when none is left. Hashing algorithms return the server the
        key maps to among available, non-zero-weight servers even when it is full
        (the caller queues for it); with no key (header or parameter absent) they
        fall back to round robin. ``exclude`` is avoided when another server can
        be chosen (redispatch after a failed connect).
        """
