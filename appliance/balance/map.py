"""Weighted server tables and ``hash_type map-based`` (HAProxy's lb_map.c).

As in lb_map.c, one table serves two algorithms: static round robin walks it
in order, map-based hashing indexes it with ``hash % len(table)``. Each
eligible server appears ``weight`` times (weights divided by their common
divisor), spread out rather than in runs: weights 3,1 give a a b a.

Map-based hashing spreads keys exactly in proportion to weights, but any
change of the farm (a server going down, a weight change) remaps most keys;
``chash.py`` is the answer to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import TYPE_CHECKING

from appliance.balance.eligible import eligible

if TYPE_CHECKING:
    from appliance.balance import Candidate


def weighted_table(servers: Sequence[Candidate]) -> list[Candidate]:
    """Each server ``weight / gcd`` times, interleaved.

    Entry k of a server of weight w sits at (2k+1)/2w of the table (stride
    scheduling); ties go to the earlier server. The fractions have
    denominators of at most 512, so their float values order them exactly.
    """
    divisor = gcd(*(s.weight for s in servers))
    slots = sorted(
        ((2 * k + 1) / (2 * s.weight // divisor), i, s)
        for i, s in enumerate(servers)
        for k in range(s.weight // divisor)
    )
    return [s for _, _, s in slots]


class MapHash:
    """Hash to server through the weighted table of eligible servers."""

    def __init__(self, servers: Sequence[Candidate]) -> None:
        self._all = tuple(servers)
        self._table: list[Candidate] = []
        self.update()

    def update(self) -> None:
        self._table = weighted_table(eligible(self._all))

    def lookup(self, hashed: int, exclude: Candidate | None = None) -> Candidate | None:
        """The server for a 32-bit key hash; the next different one if it is ``exclude``."""
        table = self._table
        size = len(table)
        if not size:
            return None
        index = hashed % size
        server = table[index]
        if server is not exclude:
            return server
        for step in range(1, size):
            other = table[(index + step) % size]
            if other is not exclude:
                return other
        return server
