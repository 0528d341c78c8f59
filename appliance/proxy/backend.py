"""A backend: a server farm, its balancing algorithm and its queue.

The queue is the article's answer to servers that collapse under too many
concurrent requests: with a per-server ``maxconn``, excess requests wait here
(bounded by ``timeouts.queue`` and ``maxqueue``) and are handed to the first
server that frees a slot, instead of piling onto an overloaded server.

The backend also decides which servers the balancer sees (``refresh``): the
usable normal servers, or, when none is left, the backup servers (the first
usable one, or all with ``allbackups``). ``apply`` feeds a server's state
machine and carries out what a change means for traffic: the balancer is
updated, requests queued for a server that went away are dispatched again,
and a server that came back takes waiting requests.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from appliance.balance import make_balancer
from appliance.checks.state import CheckResult, Event
from appliance.config.model import BackendConfig
from appliance.proxy.counters import Counters
from appliance.proxy.persistence import BackendPersistence
from appliance.proxy.server import Server

if TYPE_CHECKING:
    from appliance.proxy.client import ClientConnection


# Backend settings a reload reports by name when they change.
_SETTINGS = (
    "balance",
    "balance_arg",
    "hash_type",
    "http_reuse",
    "retries",
    "redispatch",
    "allbackups",
    "timeouts",
    "cookie",
    "stick",
    "check",
)


class Backend:
    __slots__ = (
        "balancer",
        "config",
        "counters",
        "cur_conns",
        "maxqueue",
        "name",
        "persistence",
        "queue",
        "servers",
    )

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.servers = [Server(sc, self) for sc in config.servers]
        self._mark_available()
        self.balancer = make_balancer(
            config.balance, self.servers, config.balance_arg, config.hash_type
        )
        self.persistence = (
            BackendPersistence(self) if config.cookie is not None or config.stick else None
        )
        self.queue: deque[ClientConnection] = deque()
        self.cur_conns = 0
        self.counters = Counters()
        # Requests that may go to any server wait here up to the farm's total
        # maxqueue, when every server has one (0: unbounded, as in HAProxy).
        limits = [s.config.maxqueue for s in self.servers]
        self.maxqueue = sum(limits) if limits and all(limits) else 0

    def reconfigure(self, config: BackendConfig) -> list[str]:
        """Apply a reloaded configuration in place; return what changed, one line each.

        Servers that keep their name keep their state, counters, connections and
        in-flight requests; stick tables keep their entries.
        """
        old = self.config
        if config == old:
            return []
        changes = []
        self.config = config
        by_name = {s.name: s for s in self.servers}
        servers = []
        for sc in config.servers:
            server = by_name.pop(sc.name, None)
            if server is None:
                server = Server(sc, self)
                changes.append(f"backend {self.name}: server {sc.name} added")
            else:
                if server.config != sc:
                    changes.append(f"backend {self.name}: server {sc.name} updated")
                server.reconfigure(sc)
            servers.append(server)
        for gone in by_name.values():
            gone.available = False
            gone.close_idle()
            changes.append(f"backend {self.name}: server {gone.name} removed")
        self.servers = servers
        self.balancer = make_balancer(config.balance, servers, config.balance_arg, config.hash_type)
        table = self.persistence.table if self.persistence is not None else None
        self.persistence = (
            BackendPersistence(self) if config.cookie is not None or config.stick else None
        )
        if (
            table is not None
            and self.persistence is not None
            and self.persistence.table is not None
        ):
            new = self.persistence.table
            if (new.key_type, new.key_len) == (table.key_type, table.key_len):
                table.size, table.expire = new.size, new.expire
                self.persistence.table = table  # the learned associations survive
        limits = [s.config.maxqueue for s in servers]
        self.maxqueue = sum(limits) if limits and all(limits) else 0
        settings = [k for k in _SETTINGS if getattr(old, k) != getattr(config, k)]
        if settings:
            changes.append(f"backend {self.name}: {', '.join(settings)} changed")
        self.refresh()  # also sends requests queued for a removed server elsewhere
        return changes

    def has_available(self) -> bool:
        return any(s.available and s.weight > 0 for s in self.servers)

    def queued_for(self, server: Server) -> int:
        return sum(1 for cc in self.queue if cc.queue_target is server)

    def release(self, server: Server) -> None:
        """``server`` finished a request: give its slot to the oldest waiter it can serve."""
        server.cur_conns -= 1
        if self.queue:
            self._serve_queue(server)

    def _serve_queue(self, server: Server) -> None:
        """Hand ``server``'s free slots to the oldest waiters it can serve."""
        queue = self.queue
        while queue and not server.full and server.available:
            for cc in queue:
                target = cc.queue_target
                if target is None or target is server:
                    queue.remove(cc)
                    server.cur_conns += 1
                    cc.dequeued(server)
                    break
            else:
                return

    # -- server states ---------------------------------------------------------

    def apply(self, server: Server, event: Event, result: CheckResult | None = None) -> list[str]:
        """Feed ``event`` to ``server``'s state machine, act on it; return the log lines."""
        had_servers = self.has_available()
        was_usable = server.state.usable
        notices = server.state.feed(event, result)
        if server.state.usable != was_usable:
            self.refresh()
        active, backup = self.usable_counts()
        lines = [notice.line(active, backup) for notice in notices]
        if had_servers and not self.has_available():
            lines.append(f"backend {self.name} has no server available!")
        return lines

    def usable_counts(self) -> tuple[int, int]:
        """How many normal and backup servers are usable (for the log lines)."""
        active = backup = 0
        for s in self.servers:
            if s.state.usable:
                if s.config.backup:
                    backup += 1
                else:
                    active += 1
        return active, backup

    def refresh(self) -> None:
        """Usable servers changed: update what the balancer sees and the queue."""
        self._mark_available()
        self.balancer.update()
        any_left = self.has_available()
        for cc in list(self.queue):
            target = cc.queue_target
            if (target is None and not any_left) or (target is not None and not target.available):
                cc.requeue()
        for s in self.servers:
            if s.available:
                self._serve_queue(s)

    def _mark_available(self) -> None:
        """Set ``available``: usable normal servers, or else the backup servers' turn."""
        normal = False
        for s in self.servers:
            s.available = not s.config.backup and s.state.usable
            normal = normal or (s.available and s.weight > 0)
        if normal:
            return
        for s in self.servers:
            if s.config.backup and s.state.usable and s.weight > 0:
                s.available = True
                if not self.config.allbackups:
                    return

    def close_idle(self) -> None:
        for server in self.servers:
            server.close_idle()
