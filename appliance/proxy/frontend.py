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


class Listening:
    """A listener bound before the loop serves it (a port in use fails the start), then served:
    ``sock`` from the bind, ``server`` once started. The runtime API, the metrics listener and the
    sync service share this life cycle."""

    sock: socket.socket | None
    server: asyncio.AbstractServer | None

    def close_listening(self) -> None:
        """Stop listening: close the server if it was started, else the bound socket."""
        if self.server is not None:
            self.server.close()
            self.server = None
        elif self.sock is not None:
            self.sock.close()
        self.sock = None


class Frontend:
    def __init__(self, config: FrontendConfig, proxy: Proxy, backend: Backend) -> None:
        self.name = config.name
        self.proxy = proxy
        # Listening sockets and the asyncio servers accepting on them, by address.
        self.sockets: dict[Address, socket.socket] = {}
        self.servers: dict[Address, asyncio.AbstractServer] = {}
        self.connections: set[ClientConnection] = set()
        self.cur_conns = 0
        self.total_conns = 0
        self.counters = Counters()
        self.configure(config, backend)

    def configure(self, config: FrontendConfig, backend: Backend) -> None:
        """Take ``config``'s settings (at start, and on a live reload)."""
        self.config = config
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

    def bind(self, addresses: tuple[Address, ...] | None = None) -> list[Address]:
        """Open the listening sockets not open yet; return the new addresses.

        Runs before the loop serves anything, so a port in use stops a start (or
        a reload) before anything changed; on failure the sockets opened by this
        call are closed again.
        """
        opened: list[Address] = []
        try:
            for address in self.config.bind if addresses is None else addresses:
                if address not in self.sockets:
                    self.sockets[address] = listen_socket(address)
                    opened.append(address)
        except OSError:
            for address in opened:
                self.sockets.pop(address).close()
            raise
        return opened

    async def start(self) -> None:
        loop = self.proxy.loop
        for address, sock in list(self.sockets.items()):
            if address not in self.servers:
                self.servers[address] = await loop.create_server(
                    lambda: ClientConnection(self), sock=sock.dup(), backlog=BACKLOG
                )

    def pause(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()

    def resume(self) -> None:
        if not self.servers and self.sockets:
            self.proxy.loop.create_task(self.start())

    def unbind(self, address: Address) -> None:
        """Stop listening on ``address``; connections accepted there live on."""
        server = self.servers.pop(address, None)
        if server is not None:
            server.close()
        sock = self.sockets.pop(address, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.pause()
        for sock in self.sockets.values():
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
