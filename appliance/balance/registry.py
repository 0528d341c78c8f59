"""``make_balancer``: from a backend's ``balance`` and ``hash_type`` to a balancer.

The configuration stores ``balance = "hdr:NAME"`` as algorithm ``hdr`` with
argument ``NAME`` (likewise ``url_param``); the other algorithms take none.
``hash_type`` matters to the hashed algorithms only, which reject an unknown
one; the others ignore it, as HAProxy does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.first import First
from appliance.balance.hashed import Header, Source, Uri, UrlParam
from appliance.balance.leastconn import LeastConn
from appliance.balance.random import Random
from appliance.balance.roundrobin import RoundRobin
from appliance.balance.static_rr import StaticRoundRobin

if TYPE_CHECKING:
    from appliance.balance import Balancer, Candidate

BALANCERS: dict[str, type[Balancer]] = {
    "roundrobin": RoundRobin,
    "static-rr": StaticRoundRobin,
    "leastconn": LeastConn,
    "first": First,
    "source": Source,
    "uri": Uri,
    "hdr": Header,
    "url_param": UrlParam,
    "random": Random,
}
_TAKES_ARG = ("hdr", "url_param")


def make_balancer(
    algorithm: str, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
) -> Balancer:
    """A balancer for ``servers``; ValueError naming the problem for a bad combination."""
    cls = BALANCERS.get(algorithm)
    if cls is None:
        raise ValueError(
            f"unknown balance algorithm {algorithm!r}: expected one of {', '.join(BALANCERS)}"
        )
    if arg and algorithm not in _TAKES_ARG:
        raise ValueError(f"balance {algorithm} takes no argument, got {arg!r}")
    return cls(servers, arg, hash_type)
