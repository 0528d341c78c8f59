"""``hash_type consistent``: a hash ring with virtual nodes (HAProxy's lb_chash.c).

The article's consistent hashing, for farms whose servers come and go (caches
above all): each eligible server owns ``POINTS_PER_WEIGHT * weight`` points on
a 32-bit ring, at ``key_hash(b"name#i")``; a key belongs to the first point at
or after its hash, wrapping at the top. When one server of N leaves, only its
own keys (about 1/N) move, each to the next point on the ring; the others keep
their server. A point depends only on the server's name, so every node of a
cluster builds the same ring whatever the order of its server list.

HAProxy gives each unit of weight 16 points; Weir gives 40, because the
default weight is 1 and with 16 points the busiest of 10 equal servers gets
up to ~1.8 times its share of keys, with 40 about 1.3 times. Each point costs
16 bytes (the ring, and a per-server cache of its sorted entries so that a
change recomputes only the server that changed): a farm with weights up to 10
stays under 1 MB and rebuilds in milliseconds; the extreme of 100 servers of
weight 256 is 16 MB, 1 s to build and 0.3 s to rebuild. ``update()`` rebuilds
the ring only when the eligible set or a weight actually changed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible
from appliance.balance.hashing import key_hash

if TYPE_CHECKING:
    from appliance.balance import Candidate

POINTS_PER_WEIGHT = 40


class ConsistentHash:
    """Hash to server through a ring of the eligible servers' points."""

    def __init__(self, servers: Sequence[Candidate]) -> None:
        self._all = tuple(servers)
        # Ring entries are point << 32 | rank of the server's name: sorting
        # them orders points, and two servers on one point (a 32-bit
        # collision) alike on every node whatever the order of the list.
        self._by_rank = sorted(self._all, key=lambda s: s.name)
        self._rank = {id(s): rank for rank, s in enumerate(self._by_rank)}
        self._ring = array("Q")
        self._eligible_count = 0
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._entries_cache: dict[int, tuple[int, array]] = {}
        self.update()

    def update(self) -> None:
        servers = eligible(self._all)
        signature = tuple((id(s), s.weight) for s in servers)
        if signature == self._signature:
            return
        self._signature = signature
        ring = array("Q")
        for server in servers:
            ring.extend(self._entries(server))
        self._ring = array("Q", sorted(ring))
        self._eligible_count = len(servers)

    def _entries(self, server: Candidate) -> array:
        """The server's ring entries, sorted; recomputed only when its weight changed."""
        rank = self._rank[id(server)]
        cached = self._entries_cache.get(rank)
        if cached is None or cached[0] != server.weight:
            name = server.name.encode()
            count = server.weight * POINTS_PER_WEIGHT
            entries = sorted(key_hash(b"%s#%d" % (name, i)) << 32 | rank for i in range(count))
            cached = (server.weight, array("Q", entries))
            self._entries_cache[rank] = cached
        return cached[1]

    def lookup(self, hashed: int, exclude: Candidate | None = None) -> Candidate | None:
        """The server for a 32-bit key hash; the next one on the ring if it is ``exclude``."""
        ring = self._ring
        size = len(ring)
        if not size:
            return None
        index = bisect_left(ring, hashed << 32)
        if index == size:
            index = 0
        by_rank = self._by_rank
        server = by_rank[ring[index] & 0xFFFFFFFF]
        if server is not exclude or self._eligible_count == 1:
            return server
        for step in range(1, size):
            other = by_rank[ring[(index + step) % size] & 0xFFFFFFFF]
            if other is not exclude:
                return other
        return server
