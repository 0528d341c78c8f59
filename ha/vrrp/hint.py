"""The takeover hint: a TCP connection from a backup's daemon to its master's (``hint_port``).

When a process dies the kernel closes its TCP connections at once, so a backup that holds
a connection to the master's ``weir ha`` learns of a crash before the advertisements stop
being due. The machine (``MasterHintLost``) then waits for one advertisement interval
(plus Skew_Time) instead of three: if the master is alive after all, its next
advertisement restores the usual timer, so the hint alone never makes a master. A machine
that loses power closes nothing; the usual Master_Down_Interval still applies.

- ``HintServer``: every daemon with ``hint_port`` listens on its primary address; it
  accepts connections and reads them until the peer closes (nothing is ever sent).
- ``HintClient``: connects to the masters its backups follow, at most once per
  ``RETRY_DELAY`` per address; a connection that was up and closes is reported with
  ``on_lost(address)``. Closing a connection no longer wanted is not a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from ipaddress import IPv4Address

log = logging.getLogger("weir.ha")

MAX_CLIENTS = 64  # connections a server holds at once; more are closed at once
CONNECT_TIMEOUT = 1.0
RETRY_DELAY = 1.0  # seconds between two connection attempts to one address


class HintServer:
    """Accepts hint connections on ``address:port`` and holds them until the peer closes."""

    def __init__(self, address: IPv4Address, port: int) -> None:
        self.address = address
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, str(self.address), self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            writer.close()
            return
        self._clients.add(task)
        try:
            while await reader.read(4096):
                pass  # nothing is expected; the connection only has to exist
        except OSError:
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)


class HintClient:
    """Holds one connection per followed master on ``port``; reports the ones that close."""

    def __init__(self, port: int, on_lost: Callable[[IPv4Address], None]) -> None:
        self.port = port
        self.on_lost = on_lost
        self._connections: dict[IPv4Address, asyncio.Task[None]] = {}
        self._attempted: dict[IPv4Address, float] = {}
        self._closed = False

    def follow(self, masters: set[IPv4Address]) -> None:
        """Keep connections to exactly ``masters`` (retrying failed ones at a limited rate)."""
        if self._closed:
            return
        for address in list(self._connections):
            if address not in masters:
                self._connections.pop(address).cancel()
        now = time.monotonic()
        for address in masters - set(self._connections):
            if now - self._attempted.get(address, -RETRY_DELAY) < RETRY_DELAY:
                continue
            self._attempted[address] = now
            task = asyncio.ensure_future(self._hold(address))
            self._connections[address] = task
            task.add_done_callback(lambda done, a=address: self._forget(a, done))

    def _forget(self, address: IPv4Address, task: asyncio.Task[None]) -> None:
        if self._connections.get(address) is task:
            del self._connections[address]

    async def _hold(self, address: IPv4Address) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(str(address), self.port)
        except (OSError, TimeoutError) as exc:
            log.debug("takeover hint: no connection to %s:%d: %s", address, self.port, exc)
            return
        try:
            while await reader.read(4096):
                pass
        except OSError:
            pass
        finally:
            writer.close()
        # Not cancelled: the other side closed (or reset) it. Was that its process dying?
        log.info("takeover hint: the connection to %s:%d closed", address, self.port)
        self.on_lost(address)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._connections.values())
        for task in tasks:
            task.cancel()
        self._connections.clear()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
