"""A server of the farm and the proxy's connections to it.

``Server`` is the live state of one ``[[backends.X.servers]]`` entry: its
weight, how many requests it is serving (against ``maxconn``, the article's
protection of Apache's MaxClients), and its pool of idle keep-alive
connections. ``ServerConnection`` is one TCP connection to it, speaking
HTTP/1.1; it parses responses and hands them to the client connection that
owns it for the current request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from appliance.checks.state import ServerState
from appliance.config.model import CheckConfig, ServerConfig
from appliance.proxy.counters import Counters
from appliance.proxy.http import RESPONSE_HEADS, ChunkedDecoder, InvalidResponse, ResponseHead
from appliance.proxy.outbox import Outbox, SendQueue

if TYPE_CHECKING:
    from appliance.proxy.backend import Backend
    from appliance.proxy.client import ClientConnection

MAX_RESPONSE_HEAD = 65536
MIN_IDLE_POOL = 32  # idle connections a server may always keep


class Server:
    """Live state of one server; ``state`` is its health and admin state machine."""

    __slots__ = (
        "address",
        "agent_garbage",
        "agent_said",
        "available",
        "backend",
        "config",
        "counters",
        "cur_conns",
        "id",
        "idle",
        "maxconn",
        "name",
        "state",
        "user_weight",
        "warmup",
        "weight",
    )

    def __init__(self, config: ServerConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.name = config.name
        self.id = config.id
        self.address = (config.address.host, config.address.port)
        # ``weight`` and ``maxconn`` are the effective values (a slow-start ramp
        # lowers them for a while); ``user_weight`` is what the weight returns
        # to: the configured one, or what the server's agent asked for.
        self.weight = config.weight
        self.user_weight = config.weight
        self.maxconn = config.maxconn
        check = backend.config.check or CheckConfig()
        self.state = ServerState(
            backend.name,
            config.name,
            rise=check.rise,
            fall=check.fall,
            backup=config.backup,
            error_limit=check.error_limit,
        )
        # May the balancer pick it now: usable, and not a backup standing by
        # (the backend decides, see ``Backend.refresh``).
        self.available = not config.backup
        self.warmup: asyncio.TimerHandle | None = None  # slow-start ramp in progress
        self.cur_conns = 0
        self.counters = Counters()
        self.idle: list[ServerConnection] = []
        self.agent_said = ""  # the agent's last line or failure, to log only changes
        self.agent_garbage = 0  # agent replies that were not protocol lines

    @property
    def full(self) -> bool:
        return 0 < self.maxconn <= self.cur_conns

    def reconfigure(self, config: ServerConfig) -> None:
        """A live reload kept this server (same name): take the new settings, keep the
        state, counters and connections. A new address drops the pooled connections."""
        old = self.config
        self.config = config
        self.id = config.id
        address = (config.address.host, config.address.port)
        if address != self.address:
            self.address = address
            self.close_idle()
        if config.weight != old.weight:
            self.weight = self.user_weight = config.weight
        if config.maxconn != old.maxconn:
            self.maxconn = config.maxconn
        check = self.backend.config.check or CheckConfig()
        state = self.state
        state.rise, state.fall, state.error_limit = check.rise, check.fall, check.error_limit
        state.backup = config.backup

    def take_idle(self) -> ServerConnection | None:
        """Most recently used idle connection still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def purge_idle(self, older_than: float) -> None:
        """Close idle connections unused since ``older_than`` (loop time)."""
        keep = []
        for conn in self.idle:
            if conn.idle_since < older_than or conn.transport is None:
                conn.close()
            else:
                keep.append(conn)
        self.idle[:] = keep

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


# ServerConnection.state values
HEAD, BODY_LENGTH, BODY_CHUNKED, BODY_EOF, DONE, TUNNEL = range(6)


class ServerConnection(asyncio.Protocol):
    """One HTTP/1.1 connection from the proxy to a server."""

    __slots__ = (
        "buf",
        "client",
        "decoder",
        "got_bytes",
        "head",
        "idle_since",
        "remaining",
        "requests",
        "send_queue",
        "server",
        "state",
        "transport",
    )

    def __init__(self, server: Server, send_queue: SendQueue) -> None:
        self.server = server
        self.send_queue = send_queue
        self.transport: Outbox | None = None
        self.client: ClientConnection | None = None
        self.buf = b""
        self.state = HEAD
        self.head: ResponseHead | None = None  # the current, else the previous, final head
        self.remaining = 0
        self.decoder: ChunkedDecoder | None = None
        self.got_bytes = False  # any response byte for the current request
        self.requests = 0  # requests sent on this connection
        self.idle_since = 0.0

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = Outbox(transport, self.send_queue)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        client = self.client
        if client is not None:
            self.client = None
            if self.state == BODY_EOF:
                client.response_end(self, reusable=False)
            else:
                client.server_closed(self)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_client_reading(1)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_client_reading(1)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            # A server talking on an idle connection is out of sync: drop it.
            self.close()
            return
        self.got_bytes = True
        try:  # the response parser, in line: it runs for every response
            while data:
                state = self.state
                if state == HEAD:
                    if self.buf:
                        data = self.buf + data
                        self.buf = b""
                    head = self.head
                    if head is not None and data.startswith(head.raw):
                        # The very head of this connection's previous response (a server
                        # repeats itself until the second in its Date changes): parsed already.
                        data = data[len(head.raw) :]
                    else:
                        end = data.find(b"\r\n\r\n")
                        if end < 0:
                            if len(data) > MAX_RESPONSE_HEAD:
                                raise InvalidResponse("response head too large")
                            self.buf = data
                            return
                        head = RESPONSE_HEADS.parse(data[:end])
                        data = data[end + 4 :]
                    status = head.status
                    if status < 200 and status != 101:
                        client.response_interim(head)
                        continue
                    self.head = head
                    if status == 101:
                        if not client.upgrading:
                            raise InvalidResponse("unsolicited 101")
                        self.state = TUNNEL
                        client.response_head(head, data, complete=False)
                        return
                    if client.req_method_head or status in (204, 304):
                        if data:
                            raise InvalidResponse("data after a bodiless response")
                        self.state = DONE
                        client.response_head(head, b"", complete=True)
                        return
                    if head.chunked:
                        self.state = BODY_CHUNKED
                        self.decoder = ChunkedDecoder()
                        client.response_head(head, b"", complete=False)
                        continue
                    if head.content_length >= 0:
                        length = head.content_length
                        if len(data) >= length:
                            self.state = DONE
                            if len(data) > length:
                                raise InvalidResponse("more data than Content-Length")
                            client.response_head(head, data, complete=True)
                            return
                        self.state = BODY_LENGTH
                        self.remaining = length - len(data)
                        client.response_head(head, data, complete=False)
                        return
                    self.state = BODY_EOF  # ends with the connection: never reused
                    client.response_head(head, data, complete=False)
                    return
                if state == BODY_LENGTH:
                    n = len(data)
                    if n > self.remaining:
                        raise InvalidResponse("more data than Content-Length")
                    self.remaining -= n
                    if self.remaining == 0:
                        self.state = DONE
                        client.response_body(data)
                        client.response_end(self, reusable=self.head.keep_alive)
                    else:
                        client.response_body(data)
                    return
                if state == BODY_CHUNKED:
                    pieces: list[bytes] = []
                    used = self.decoder.feed(data, pieces)
                    for piece in pieces:
                        client.response_body(piece)
                    if self.decoder.done:
                        if used < len(data):
                            raise InvalidResponse("data after the last chunk")
                        self.state = DONE
                        client.response_end(self, reusable=self.head.keep_alive)
                    return
                if state in (BODY_EOF, TUNNEL):
                    client.response_body(data)
                    return
                raise InvalidResponse("data after the response")
        except InvalidResponse as exc:
            self.client = None
            self.close()
            client.response_invalid(self, str(exc))

    # -- used by the client connection ---------------------------------------

    def start(self, client: ClientConnection, head: bytes) -> None:
        """Bind to ``client`` and send its request head."""
        self.client = client
        self.state = HEAD
        self.buf = b""
        self.decoder = None
        self.got_bytes = False
        self.requests += 1
        self.transport.write(head)

    def release(self, now: float) -> None:
        """The response is complete (loop time ``now``): keep the connection for reuse,
        or close it.

        The idle pool is kept near what the server's current load can use (at
        least ``MIN_IDLE_POOL``): a burst of first requests, which ``safe`` reuse
        sends on new connections, must not leave thousands of idle ones behind.
        """
        self.client = None
        server = self.server
        idle = server.idle
        pooled = len(idle)
        if pooled >= MIN_IDLE_POOL and pooled >= 2 * server.cur_conns:
            self.close()
            return
        self.idle_since = now
        idle.append(self)

    def close(self) -> None:
        self.client = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.client = None
        if self.transport is not None:
            self.transport.abort()
