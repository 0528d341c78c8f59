"""Which servers of a farm may take new traffic (HAProxy's "usable" servers).

Every algorithm builds its tables from this one rule in ``update()``: a server
is eligible when it is available (up, not in maintenance or drain) and its
effective weight is above zero. Being full is not part of it: ``cur_conns``
changes on every request, so ``pick()`` reads ``full`` live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.balance import Candidate


def eligible(servers: Sequence[Candidate]) -> list[Candidate]:
    """The servers that may take new traffic, in list order."""
    return [s for s in servers if s.available and s.weight > 0]
