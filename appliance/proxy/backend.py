"""A backend: a server farm, its balancing algorithm and its queue.

The queue is the article's answer to servers that collapse under too many
concurrent requests: with a per-server ``maxconn``, excess requests wait here
(bounded by ``timeouts.queue`` and ``maxqueue``) and are handed to the first
server that frees a slot, instead of piling onto an overloaded server.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from appliance.balance import make_balancer
from appliance.config.model import BackendConfig
from appliance.proxy.server import Server

if TYPE_CHECKING:
    from appliance.proxy.client import ClientConnection


class Backend:
    __slots__ = ("balancer", "config", "cur_conns", "maxqueue", "name", "queue", "servers")

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.servers = [Server(sc, self) for sc in config.servers]
        self.balancer = make_balancer(
            config.balance, self.servers, config.balance_arg, config.hash_type
        )
        self.queue: deque[ClientConnection] = deque()
        self.cur_conns = 0
        # Requests that may go to any server wait here up to the farm's total
        # maxqueue, when every server has one (0: unbounded, as in HAProxy).
        limits = [s.config.maxqueue for s in self.servers]
        self.maxqueue = sum(limits) if limits and all(limits) else 0

    def has_available(self) -> bool:
        return any(s.available and s.weight > 0 for s in self.servers)

    def queued_for(self, server: Server) -> int:
        return sum(1 for cc in self.queue if cc.queue_target is server)

    def release(self, server: Server) -> None:
        """``server`` finished a request: give its slot to the oldest waiter it can serve."""
        server.cur_conns -= 1
        queue = self.queue
        if not queue or server.full or not server.available:
            return
        for cc in queue:
            target = cc.queue_target
            if target is None or target is server:
                queue.remove(cc)
                server.cur_conns += 1
                cc.dequeued(server)
                return

    def close_idle(self) -> None:
        for server in self.servers:
            server.close_idle()
