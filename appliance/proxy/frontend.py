"""A frontend: the listening sockets clients connect to.

Accepting pauses when the process reaches ``global.maxconn`` client
connections and resumes when one closes: new connections wait in the kernel's
accept backlog instead of overloading the proxy. Pausing is done by closing
the asyncio server over a duplicate of the listening socket while the original
socket, and so the backlog, stays open.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from appliance.config.model import Address, FrontendConfig
from appliance.proxy.client import ClientConnection
from appliance.proxy.counters import Counters

if TYPE_CHECKING:
    from appliance.proxy.backend import Backend
    from appliance.proxy.proxy import Proxy

BACKLOG = 1024


def listen_socket(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Frontend:
    def __init__(self, config: FrontendConfig, proxy: Proxy, backend: Backend) -> None:
        self.config = config
        self.name = config.name
        self.proxy = proxy
        self.default_backend = backend
        self.timeouts = config.timeouts
        # The shortest timeout a connection of this frontend can be given: its
        # timer never sleeps longer than this (see ClientConnection._arm).
        bt = backend.config.timeouts
        self.min_timeout = min(
            config.timeouts.client,
            config.timeouts.http_request,
            config.timeouts.http_keep_alive,
            bt.connect,
            bt.server,
            bt.queue,
            bt.tunnel,
        )
        self.forwardfor = config.forwardfor
        self.default_host = str(config.bind[0]).encode()
        self.sockets: list[socket.socket] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[ClientConnection] = set()
        self.cur_conns = 0
        self.total_conns = 0
        self.counters = Counters()

    def bind(self) -> None:
        """Open the listening sockets (before the loop runs: errors stop the start)."""
        try:
            for address in self.config.bind:
                self.sockets.append(listen_socket(address))
        except OSError:
            self.close()
            raise

    async def start(self) -> None:
        loop = self.proxy.loop
        for sock in self.sockets:
            server = await loop.create_server(
                lambda: ClientConnection(self), sock=sock.dup(), backlog=BACKLOG
            )
            self.servers.append(server)

    def pause(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    def resume(self) -> None:
        if not self.servers and self.sockets:
            self.proxy.loop.create_task(self.start())

    def close(self) -> None:
        self.pause()
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.cur_conns += 1
        self.total_conns += 1
        counters = self.counters
        counters.stot += 1
        if self.cur_conns > counters.smax:
            counters.smax = self.cur_conns
        self.proxy.connection_opened()

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.cur_conns -= 1
        self.proxy.connection_closed()
