"""``balance source | uri | hdr:NAME | url_param:NAME``: the hashed algorithms.

The article's persistence without state: hash something the request carries
and map the hash to a server, so that the same client, object or session
always lands on the same server (cache affinity, sessions held in a server's
memory) with nothing to store or replicate. The key comes from
``hashing.py``; the mapping is chosen by the backend's ``hash_type``:
``map-based`` (``map.py``, exact weights, most keys move when the farm
changes) or ``consistent`` (``chash.py``, ~1/N of keys move).

As in HAProxy, the mapped server is returned even when it is full (the proxy
queues for it: persistence wins over spreading), and a request without a key
(header or parameter absent or empty) is balanced by round robin instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.chash import ConsistentHash
from appliance.balance.hashing import (
    header_key,
    key_hash,
    source_key,
    uri_key,
    url_param_key,
)
from appliance.balance.map import MapHash
from appliance.balance.roundrobin import RoundRobin

if TYPE_CHECKING:
    from appliance.balance import Candidate, RequestInfo

HASH_TYPES = ("map-based", "consistent")


class HashBalancer:
    """Key extraction (``key()``, in subclasses) + a hash mapper + round robin fallback."""

    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        if hash_type == "map-based":
            self._mapper: MapHash | ConsistentHash = MapHash(servers)
        elif hash_type == "consistent":
            self._mapper = ConsistentHash(servers)
        else:
            raise ValueError(
                f"unknown hash_type {hash_type!r}: expected one of {', '.join(HASH_TYPES)}"
            )
        self._fallback = RoundRobin(servers)

    def key(self, req: RequestInfo) -> bytes | None:
        raise NotImplementedError

    def update(self) -> None:
        self._mapper.update()
        self._fallback.update()

    def pick(self, req: RequestInfo, exclude: Candidate | None = None) -> Candidate | None:
        key = self.key(req)
        if key is None:
            return self._fallback.pick(req, exclude)
        return self._mapper.lookup(key_hash(key), exclude)


class Source(HashBalancer):
    """``balance source``: the client's address."""

    def key(self, req: RequestInfo) -> bytes | None:
        return source_key(req)


class Uri(HashBalancer):
    """``balance uri``: the path, without the query string."""

    def key(self, req: RequestInfo) -> bytes | None:
        return uri_key(req)


class Header(HashBalancer):
    """``balance hdr:NAME``: the first value of header NAME (case-insensitive)."""

    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        if not arg:
            raise ValueError("balance hdr needs a header name: hdr:NAME")
        super().__init__(servers, arg, hash_type)
        self._name = arg.lower().encode("ascii")

    def key(self, req: RequestInfo) -> bytes | None:
        return header_key(req, self._name)


class UrlParam(HashBalancer):
    """``balance url_param:NAME``: the value of query parameter NAME (case-sensitive)."""

    def __init__(
        self, servers: Sequence[Candidate], arg: str = "", hash_type: str = "map-based"
    ) -> None:
        if not arg:
            raise ValueError("balance url_param needs a parameter name: url_param:NAME")
        super().__init__(servers, arg, hash_type)
        self._name = arg.encode("ascii")

    def key(self, req: RequestInfo) -> bytes | None:
        return url_param_key(req, self._name)
