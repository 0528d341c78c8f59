"""A client connection and the requests it carries (HAProxy's session/stream).

One ``ClientConnection`` per accepted TCP connection. It parses requests with
llhttp (strict), validates them, picks a server through the backend (queueing
when every server is at its ``maxconn``), forwards the request over a reused
or new server connection, relays the response, and writes one access-log line
per request. Requests on one connection are handled one at a time, in order:
pipelined requests are parsed ahead but their events are replayed only when
the previous answer is complete.

Bodies are streamed in both directions with backpressure: when one side's
write buffer is full, reading from the other side is paused. Writes to both
sides go through an ``Outbox``: sent at the end of the loop iteration, with
those of every other connection (outbox.py).

The per-connection state is kept in slots and reset per request, so an idle
keep-alive connection costs a few hundred bytes plus its transport.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from appliance.persist.cookie import NO_COOKIE
from appliance.proxy.http import (
    CONTINUE_100,
    ERROR_PAGES,
    HOP_BY_HOP,
    LAST_CHUNK,
    ResponseHead,
    chunk,
)
from appliance.proxy.outbox import Outbox, send_queue
from appliance.proxy.server import Server, ServerConnection

if TYPE_CHECKING:
    from appliance.proxy.backend import Backend
    from appliance.proxy.frontend import Frontend

# What the connection is doing: selects the timeout and the termination code.
IDLE, REQ_HEAD, QUEUE, CONNECT, TURNAROUND, WAIT, DATA, TUNNEL, CLOSED = range(9)
# Termination-state phase letters (second character of the log's termination state).
_PHASE_LETTER = {
    IDLE: "R",
    REQ_HEAD: "R",
    QUEUE: "Q",
    CONNECT: "C",
    TURNAROUND: "C",
    WAIT: "H",
    DATA: "D",
    TUNNEL: "D",
    CLOSED: "D",
}

# Reasons for pausing reads from the client (a bit each).
PAUSE_SERVER_FULL = 1  # the server's write buffer is full
PAUSE_PIPELINE = 2  # too many bytes of pipelined requests waiting
PAUSE_NOT_CONNECTED = 4  # request body arriving before the server connection is up

MAX_PIPELINED = 65536
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_SPECIAL = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect"}
    | HOP_BY_HOP
    | {b"x-forwarded-proto", b"cookie"}
)


_PLAIN_CONNECTION = frozenset({b"close", b"keep-alive", b"upgrade"})
_REDIRECTABLE = frozenset({b"GET", b"HEAD"})


class HeadTooLarge(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "backend",
        "body_buf",
        "busy",
        "bytes_out",
        "captured_req",
        "captured_res",
        "client_ip",
        "client_port",
        "connect_task",
        "cookie_decision",
        "cookie_log",
        "deadline",
        "deferred",
        "fe",
        "head_bytes",
        "headers",
        "holding",
        "http10",
        "loop",
        "m_connect",
        "m_connected",
        "m_dequeued",
        "m_head",
        "m_queued",
        "m_resp",
        "m_start",
        "parser",
        "path",
        "pending",
        "persist_gone",
        "persist_srv",
        "phase",
        "proxy",
        "queue_target",
        "redispatched",
        "replaying",
        "req_bodiless",
        "req_chunked",
        "req_complete",
        "req_head",
        "req_keep_alive",
        "req_method",
        "req_method_head",
        "requests",
        "resp_close",
        "resp_rechunk",
        "retries_done",
        "rpause",
        "srv",
        "srv_conn",
        "status",
        "timer",
        "transport",
        "upgrade_rest",
        "upgrading",
        "wpaused",
    )

    def __init__(self, frontend: Frontend) -> None:
        self.fe = frontend
        self.proxy = frontend.proxy
        self.loop = frontend.proxy.loop
        self.transport: Outbox | None = None
        self.parser: HttpRequestParser | None = None
        self.client_ip = ""
        self.client_port = 0
        self.phase = IDLE
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False
        self.deferred: deque | None = None
        self.replaying = False
        self.pending: bytearray | None = None
        self.rpause = 0
        self.wpaused = False
        self.requests = 0
        self.srv_conn: ServerConnection | None = None
        self.srv: Server | None = None
        self.connect_task: asyncio.Task | None = None
        self.body_buf: list[bytes] | None = None
        self.upgrade_rest = b""
        self.backend: Backend | None = None
        self.queue_target: Server | None = None
        self.holding = False
        self._reset_request()

    def _reset_request(self) -> None:
        self.path = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.req_method = b""
        self.req_method_head = False
        self.req_head = b""
        self.req_chunked = False
        self.req_bodiless = False
        self.req_complete = False
        self.req_keep_alive = True
        self.http10 = False
        self.upgrading = False
        self.status = -1
        self.bytes_out = 0
        self.retries_done = 0
        self.redispatched = False
        self.resp_close = False
        self.resp_rechunk = False
        self.m_head = self.m_queued = self.m_dequeued = 0.0
        self.persist_srv: Server | None = None
        self.persist_gone = False
        self.cookie_decision = NO_COOKIE
        self.cookie_log = "--"
        self.captured_req = self.captured_res = "-"
        self.m_connect = self.m_connected = self.m_resp = 0.0

    # -- timers ----------------------------------------------------------------

    def _arm_precise(self, delay: float) -> None:
        """Like ``_arm``, for a delay that may be shorter than ``fe.min_timeout``."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._arm(delay)

    def _arm(self, delay: float, now: float | None = None) -> None:
        """Expire the current phase ``delay`` seconds from now (``loop.time()``, or
        ``now`` when the caller has just read it).

        Re-arming only moves a float. The one timer handle of the connection is
        never scheduled more than ``fe.min_timeout`` ahead, the shortest timeout
        this connection can be given; so any later deadline, even one earlier
        than the current, still lies at or after the scheduled wake-up, and the
        handle never has to be cancelled or replaced on the per-request path.
        """
        if now is None:
            now = self.loop.time()
        self.deadline = now + delay
        if self.timer is None:
            self.timer = self.loop.call_at(now + min(delay, self.fe.min_timeout), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline == 0.0:
            return
        now = self.loop.time()
        if now < deadline:
            wake = now + min(deadline - now, self.fe.min_timeout)
            self.timer = self.loop.call_at(wake, self._on_timer)
            return
        self.deadline = 0.0
        self._timeout()

    def _timeout(self) -> None:
        phase = self.phase
        if phase == IDLE:
            self._close()
        elif phase == REQ_HEAD:
            self._error(408, "cR")
        elif phase == QUEUE:
            self.backend.queue.remove(self)
            self.queue_target = None
            self._error(503, "sQ")
        elif phase == CONNECT:
            task = self.connect_task
            self.connect_task = None
            if task is not None:
                task.cancel()
            conn = self.srv_conn
            self.srv_conn = None
            if conn is not None:
                conn.abort()
            self._connect_failed(timeout=True)
        elif phase == TURNAROUND:
            self._connect(self.srv)
        elif phase == WAIT:
            if self.req_complete:
                self._error(504, "sH")
            else:
                self._abort("cD")
        elif phase == DATA:
            self._abort("cD" if self.wpaused else "sD")
        elif phase == TUNNEL:
            self._abort("cD")

    # -- asyncio callbacks (client side) -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = Outbox(transport, send_queue(self.loop))  # type: ignore[arg-type]
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip, self.client_port = peer[0], peer[1]
        self.m_start = self.loop.time()
        self.fe.connection_opened(self)
        self._arm(self.fe.timeouts.http_request)

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.transport
        self.transport = None
        if transport is None:
            return
        if self.phase == TUNNEL:
            self._drop_server()
            self._finish("--")
        elif self.phase not in (IDLE, CLOSED):
            if self.phase == REQ_HEAD:
                self.status = 400  # as HAProxy logs a client that left mid-request
            self._abort("C" + _PHASE_LETTER[self.phase], client_gone=True)
        self.phase = CLOSED
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.parser = None  # it holds our bound methods: break the cycle
        self.fe.connection_closed(self)

    def eof_received(self) -> bool:
        # A client that shuts its side is treated as gone (HAProxy's abortonclose).
        return False

    def pause_writing(self) -> None:
        self.wpaused = True
        if self.phase == DATA:
            # Called when held data is sent, after response_body armed the server's
            # timeout: from now on the client's reading is what the exchange waits for.
            self._arm(self.fe.timeouts.client)
        conn = self.srv_conn
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.wpaused = False
        conn = self.srv_conn
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def pause_client_reading(self, reason: int) -> None:
        if not self.rpause and self.transport is not None:
            self.transport.pause_reading()
        self.rpause |= reason

    def resume_client_reading(self, reason: int) -> None:
        if self.rpause & reason:
            self.rpause &= ~reason
            if not self.rpause and self.transport is not None:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == CLOSED:
            return
        if phase == TUNNEL:
            conn = self.srv_conn
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)
            self._arm(self.backend.config.timeouts.tunnel)
            return
        if self.busy or self.deferred:
            if self.pending is None:
                self.pending = bytearray(data)
            else:
                self.pending += data
            if len(self.pending) > MAX_PIPELINED:
                self.pause_client_reading(PAUSE_PIPELINE)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            parser = self.parser = HttpRequestParser(self)
        try:
            parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._event(self._on_upgrade_data, data[exc.args[0] :])
        except HttpParserError as exc:
            cause = exc.__context__
            status = cause.status if isinstance(cause, HeadTooLarge) else 400
            self._event(self._bad_request, status)

    def _event(self, handler: Callable[..., None], *args: Any) -> None:
        """Run a parser event now, or after the request in progress is answered."""
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(handler, args)
        else:
            handler(*args)

    def _defer(self, handler: Callable[..., None], args: tuple) -> None:
        if self.deferred is None:
            self.deferred = deque()
        self.deferred.append((handler, args))

    # -- llhttp callbacks ----------------------------------------------------------
    # Each runs at once unless an earlier request on this connection is still
    # being answered: then the event waits its turn (pipelining), and is replayed
    # by _next_request with ``replaying`` set.

    # -- request events --------------------------------------------------------

    def on_message_begin(self) -> None:
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(self.on_message_begin, ())
            return
        requests = self.requests
        if requests:  # the first request's clock and timer started with the connection
            self.m_start = now = self.loop.time()
            self._arm(self.fe.timeouts.http_request, now)
        elif self.proxy.stopping:
            self._arm(self.fe.timeouts.http_request)
        self.requests = requests + 1
        self.phase = REQ_HEAD

    def on_url(self, url: bytes) -> None:
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(self.on_url, (url,))
            return
        self.path += url
        head_bytes = self.head_bytes + len(url)
        self.head_bytes = head_bytes
        if head_bytes > self.proxy.max_header_bytes:
            raise HeadTooLarge(414 if not self.headers else 431)

    def on_header(self, name: bytes, value: bytes) -> None:
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(self.on_header, (name, value))
            return
        self.headers.append((name, value))
        head_bytes = self.head_bytes + len(name) + len(value) + 4
        self.head_bytes = head_bytes
        if head_bytes > self.proxy.max_header_bytes:
            raise HeadTooLarge(431)

    def on_headers_complete(self, info: tuple[bytes, bool, bool] | None = None) -> None:
        parser = self.parser
        if (self.busy or self.deferred) and not self.replaying:
            # The parser moves on to the next request: take what it knows of this one now.
            version = parser.get_http_version()
            info = (parser.get_method(), version == "1.0", parser.should_keep_alive())
            self._defer(self.on_headers_complete, (info,))
            return
        if self.phase != REQ_HEAD:  # trailers of a chunked body end here again
            return
        if info is None:
            method = parser.get_method()
            keep_alive = parser.should_keep_alive()
            http10 = None  # found below, after the headers
        else:
            method, http10, keep_alive = info
        self.m_head = self.loop.time()
        self.req_method = method
        self.req_method_head = method == b"HEAD"
        self.req_keep_alive = keep_alive and not self.proxy.stopping
        fe = self.fe
        hosts = 0
        content_length = None
        connection_tokens = None
        proxy_connection = False
        upgrade = None
        cookies: list[bytes] = []
        out = [method, b" ", self.path, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            lname = name.lower()
            if lname not in _SPECIAL:
                out += (name, b": ", value, b"\r\n")
            elif lname == b"host":
                hosts += 1
                out += (name, b": ", value, b"\r\n")
            elif lname == b"content-length":
                content_length = value
            elif lname == b"transfer-encoding":
                self.req_chunked = True
            elif lname == b"connection":
                connection_tokens = value.lower()
            elif lname == b"upgrade":
                upgrade = value
            elif lname == b"expect":
                out += (name, b": ", value, b"\r\n")
            elif lname == b"cookie":
                cookies.append(value)
            elif lname == b"proxy-connection":
                proxy_connection = True
        if http10 is None:
            # llhttp keeps an HTTP/1.0 connection alive only when it says "keep-alive" in
            # Connection or Proxy-Connection: a keep-alive request without either is
            # HTTP/1.1, and the version need not be asked for (httptools formats a string).
            keep_alive_11 = keep_alive and connection_tokens is None and not proxy_connection
            http10 = not keep_alive_11 and parser.get_http_version() == "1.0"
        self.http10 = http10
        if hosts > 1 or (hosts == 0 and not http10):
            self._bad_request(400)
            return
        if method == b"CONNECT":
            self._error(501, "PR")
            return
        if connection_tokens and connection_tokens not in _PLAIN_CONNECTION:
            out = self._drop_nominated(out, connection_tokens)
        backend = fe.default_backend
        persistence = backend.persistence
        if persistence is not None:
            self.persist_srv, decision, self.persist_gone = persistence.request(self, cookies)
            self.cookie_decision = decision
            if persistence.cookie is not None:
                self.cookie_log = decision.state + "-"
            if decision.cookie_headers is not None:
                cookies = decision.cookie_headers
        for value in cookies:
            out += (b"Cookie: ", value, b"\r\n")
        if hosts == 0:
            out += (b"Host: ", fe.default_host, b"\r\n")
        if fe.forwardfor:
            out += (
                b"X-Forwarded-For: ",
                self.client_ip.encode(),
                b"\r\nX-Forwarded-Proto: http\r\n",
            )
        if self.req_chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        elif content_length is not None:
            out += (b"Content-Length: ", content_length, b"\r\n")
        else:
            self.req_bodiless = True  # RFC 9112 §6.3: a request without either has no body
        if upgrade is not None and connection_tokens and b"upgrade" in connection_tokens:
            self.upgrading = True
            out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
        out.append(b"\r\n")
        self.req_head = b"".join(out)
        self.backend = backend
        self._dispatch(None)

    @staticmethod
    def _drop_nominated(out: list[bytes], tokens: bytes) -> list[bytes]:
        """Remove headers named in Connection (RFC 9110 §7.6.1)."""
        names = {t.strip() for t in tokens.split(b",")} - _PLAIN_CONNECTION
        if not names:
            return out
        kept = out[:4]
        for i in range(4, len(out), 4):
            if out[i].lower() not in names:
                kept += out[i : i + 4]
        return kept

    def on_body(self, body: bytes) -> None:
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(self.on_body, (body,))
            return
        if self.phase == CLOSED:
            return
        if self.req_chunked:
            body = chunk(body)
        conn = self.srv_conn
        if self.body_buf is None and conn is not None and self.phase in (WAIT, DATA):
            conn.transport.write(body)
            self._arm(self.fe.timeouts.client)
        else:
            if self.body_buf is None:
                self.body_buf = []
            self.body_buf.append(body)
            self.pause_client_reading(PAUSE_NOT_CONNECTED)

    def on_message_complete(self) -> None:
        if (self.busy or self.deferred) and not self.replaying:
            self._defer(self.on_message_complete, ())
            return
        if self.phase == CLOSED:
            return
        if self.req_chunked:
            self._on_body_raw(LAST_CHUNK)
        self.req_complete = True
        if self.phase in (REQ_HEAD, IDLE):  # answered before the request ended
            return
        self.busy = True
        if self.phase == WAIT and not self.req_bodiless:  # else _attach armed it
            self._arm(self.backend.config.timeouts.server)

    def _on_body_raw(self, data: bytes) -> None:
        conn = self.srv_conn
        if self.body_buf is None and conn is not None and self.phase in (WAIT, DATA):
            conn.transport.write(data)
        else:
            if self.body_buf is None:
                self.body_buf = []
            self.body_buf.append(data)

    def _on_upgrade_data(self, rest: bytes) -> None:
        self.upgrade_rest = rest

    def _bad_request(self, status: int) -> None:
        if self.phase == CLOSED:
            return
        if self.phase == REQ_HEAD:
            self.m_head = 0.0  # the head was refused: logged as <BADREQ>, TR -1
        self._error(status, "PR")

    # -- server selection and connection ---------------------------------------

    def _dispatch(self, exclude: Server | None) -> None:
        backend = self.backend
        srv = self.persist_srv if exclude is None else None
        if srv is None:
            if self.persist_gone and not backend.config.redispatch:
                self._error(503, "SC")  # the user's server is gone and may not be replaced
                return
            srv = backend.balancer.pick(self, exclude)
        if srv is not None and srv.config.redir and self.req_method in _REDIRECTABLE:
            self._redirect(srv)
            return
        if srv is None:
            if backend.has_available():
                self._enqueue(backend, None)
            else:
                self._error(503, "SC")
            return
        if srv.full:
            self._enqueue(backend, srv)
            return
        srv.cur_conns += 1
        backend.cur_conns += 1
        self.holding = True
        self._connect(srv)

    def _redirect(self, srv: Server) -> None:
        """302 persistence: send the user to the server's own address (its ``redir``)."""
        self.srv = srv
        self.status = 302
        location = srv.config.redir.encode().rstrip(b"/") + self.path
        close = not self.req_keep_alive or not self.req_complete
        data = (
            b"HTTP/1.1 302 Found\r\nLocation: %b\r\nContent-Length: 0\r\n"
            b"Cache-Control: no-cache\r\n%b\r\n"
            % (location, b"Connection: close\r\n" if close else b"")
        )
        self.transport.write(data)
        self.bytes_out += len(data)
        self.phase = DATA
        self._finish("LR")
        if close:
            self._close()
        else:
            self._next_request()

    def _enqueue(self, backend: Backend, target: Server | None) -> None:
        if target is not None:
            maxqueue = target.config.maxqueue
            full = maxqueue and backend.queued_for(target) >= maxqueue
        else:
            full = backend.maxqueue and len(backend.queue) >= backend.maxqueue
        if full:
            self._error(503, "sQ")
            return
        self.queue_target = target
        self.phase = QUEUE
        self.m_queued = self.loop.time()
        backend.queue.append(self)
        if len(backend.queue) > backend.counters.qmax:
            backend.counters.qmax = len(backend.queue)
        if target is not None:
            waiting = backend.queued_for(target)
            if waiting > target.counters.qmax:
                target.counters.qmax = waiting
        self._arm(backend.config.timeouts.queue)

    def requeue(self) -> None:
        """The server this request waited for went away (or every server did): pick again."""
        self.backend.queue.remove(self)
        self.queue_target = None
        self.redispatched = True
        self._dispatch(None)

    def dequeued(self, srv: Server) -> None:
        """The backend gave this queued request a slot on ``srv``."""
        self.queue_target = None
        self.m_dequeued = self.loop.time()
        self.backend.cur_conns += 1
        self.holding = True
        self._connect(srv)

    def header(self, name: bytes) -> bytes | None:
        for hname, value in self.headers:
            if hname.lower() == name:
                return value
        return None

    def _connect(self, srv: Server) -> None:
        self.srv = srv
        self.m_connect = now = self.loop.time()
        reuse = self.backend.config.http_reuse
        if reuse == "always" or (reuse == "safe" and self.requests > 1):
            conn = srv.take_idle()
            if conn is not None:
                self._attach(conn, now)
                return
        self._open(srv)

    def _open(self, srv: Server) -> None:
        self.phase = CONNECT
        conn = ServerConnection(srv, send_queue(self.loop))
        self.srv_conn = conn
        self._arm(self.backend.config.timeouts.connect)
        self.connect_task = self.loop.create_task(self._open_connection(conn))

    async def _open_connection(self, conn: ServerConnection) -> None:
        host, port = conn.server.address
        try:
            await self.loop.create_connection(lambda: conn, host, port)
        except OSError:
            if self.srv_conn is conn:
                self.connect_task = None
                self.srv_conn = None
                self._connect_failed(timeout=False)
            return
        if self.srv_conn is not conn or self.phase != CONNECT:
            conn.close()
            return
        self.connect_task = None
        self._attach(conn, self.loop.time())

    def _connect_failed(self, timeout: bool) -> None:
        backend = self.backend
        srv = self.srv
        reason = "Layer4 timeout" if timeout else "Layer4 connection problem"
        self.proxy.observe_failure(srv, reason)
        if self.retries_done < backend.config.retries:
            self.retries_done += 1
            last = self.retries_done == backend.config.retries
            if last and backend.config.redispatch and len(backend.servers) > 1:
                self._release_server()
                self.redispatched = True
                self.srv = None
                self._dispatch(srv)
                return
            # HAProxy's turn-around timer: don't hammer a server that is restarting.
            self.phase = TURNAROUND
            self._arm_precise(min(backend.config.timeouts.connect, 1.0))
            return
        self._error(503, "sC" if timeout else "SC")

    def _attach(self, conn: ServerConnection, now: float) -> None:
        self.srv_conn = conn
        self.m_connected = now
        self.phase = WAIT
        conn.start(self, self.req_head)
        if self.body_buf is not None:
            conn.transport.writelines(self.body_buf)
            self.body_buf = None
            self.resume_client_reading(PAUSE_NOT_CONNECTED)
        # A request without a body is complete with its head: llhttp says so right after.
        complete = self.req_complete or self.req_bodiless
        self._arm(self.backend.config.timeouts.server if complete else self.fe.timeouts.client, now)

    def _release_server(self) -> None:
        if self.holding:
            self.holding = False
            self.backend.cur_conns -= 1
            self.backend.release(self.srv)

    # -- response events (called by ServerConnection) ---------------------------

    def response_interim(self, head: ResponseHead) -> None:
        if head.status == 100 and not self.http10 and self.transport is not None:
            self.transport.write(CONTINUE_100)

    def response_head(self, head: ResponseHead, body: bytes, complete: bool) -> None:
        self.m_resp = self.loop.time()
        status = head.status
        self.status = status
        if status >= 500:
            self.proxy.observe_response(self.srv, status)
        elif self.srv.state.errors:
            self.srv.state.errors = 0  # a good answer ends a run of consecutive errors
        start = head.start
        persistence = self.backend.persistence
        if persistence is not None:
            fields, server_cookie = persistence.response(self, self.srv, head.fields)
            self.cookie_log = self.cookie_log[0] + server_cookie
            if fields is not head.fields:
                start = head.start_with(fields)
        transport = self.transport
        if status == 101:
            self.phase = TUNNEL
            transport.write(b"%b\r\nConnection: upgrade\r\n\r\n%b" % (start, body))
            if self.upgrade_rest:
                self.srv_conn.transport.write(self.upgrade_rest)
                self.upgrade_rest = b""
            self._arm(self.backend.config.timeouts.tunnel)
            return
        self.phase = DATA
        close = not self.req_keep_alive or self.upgrading
        framing = b""
        if head.content_length >= 0 or status in (204, 304) or self.req_method_head:
            pass  # Content-Length, if any, is among the forwarded fields
        elif self.http10:
            close = True  # close-delimited body for an HTTP/1.0 client
        else:
            self.resp_rechunk = True
            framing = b"\r\nTransfer-Encoding: chunked"
            if body:
                body = chunk(body)
        self.resp_close = close
        if close:
            framing += b"\r\nConnection: close"
        elif self.http10:
            framing += b"\r\nConnection: keep-alive"
        data = b"%b%b\r\n\r\n%b" % (start, framing, body)
        self.bytes_out += len(data)
        transport.write(data)
        if complete:
            self._response_done(self.srv_conn, head.keep_alive, self.m_resp)
        else:
            self._arm(self.backend.config.timeouts.server)

    def response_body(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.resp_rechunk:
            transport.write(chunk(data))
        else:
            transport.write(data)
        self.bytes_out += len(data)
        if self.phase == TUNNEL:
            self._arm(self.backend.config.timeouts.tunnel)
        elif not self.wpaused:
            self._arm(self.backend.config.timeouts.server)
        else:
            self._arm(self.fe.timeouts.client)

    def response_end(self, conn: ServerConnection, reusable: bool) -> None:
        if self.phase == TUNNEL:
            self.srv_conn = None
            self._finish("--")
            self._close()
            return
        if self.resp_rechunk and self.transport is not None:
            self.transport.write(LAST_CHUNK)
            self.bytes_out += len(LAST_CHUNK)
        self._response_done(conn, reusable, self.loop.time())

    def _response_done(self, conn: ServerConnection | None, reusable: bool, now: float) -> None:
        """The response is complete (at loop time ``now``): log it, go on or close."""
        self.srv_conn = None
        if conn is not None:
            if (
                reusable
                and self.req_complete
                and self.backend.config.http_reuse != "never"
                and not self.proxy.stopping
            ):
                conn.release(now)
            else:
                conn.close()
        self._finish("--", now)
        if self.resp_close or not self.req_complete or self.upgrading:
            self._close()
            return
        self._next_request(now)

    def server_closed(self, conn: ServerConnection) -> None:
        """The server connection closed before the response was complete."""
        if self.srv_conn is not conn:
            return
        self.srv_conn = None
        if self.phase == WAIT:
            if (
                conn.requests > 1
                and not conn.got_bytes
                and self.req_complete
                and self.body_buf is None
                and self.req_method in IDEMPOTENT
                and not self.req_chunked
            ):
                # A reused keep-alive connection the server had closed: resend once.
                self._open(self.srv)
                return
            self._error(502, "SH")
        elif self.phase == TUNNEL:
            self._finish("--")
            self._close()
        else:
            self._abort("SD")

    def response_invalid(self, conn: ServerConnection, why: str) -> None:
        self.srv_conn = None
        self.proxy.observe_failure(self.srv, "Layer7 invalid response")
        if self.phase == WAIT:
            self._error(502, "PH")
        else:
            self._abort("PD")

    # -- ends of a request -------------------------------------------------------

    def _next_request(self, now: float | None = None) -> None:
        self._reset_request()  # an idle connection keeps nothing of the last request
        self.busy = False
        self.phase = IDLE
        self._arm(self.fe.timeouts.http_keep_alive, now)
        deferred = self.deferred
        if deferred is None and self.pending is None:
            return  # nothing pipelined: the usual case
        self.replaying = True
        while deferred and not self.busy and self.phase != CLOSED:
            handler, args = deferred.popleft()
            try:
                handler(*args)
            except HeadTooLarge as exc:
                self._bad_request(exc.status)
        self.replaying = False
        if not deferred:
            self.deferred = None
        if self.busy or self.phase == CLOSED or self.deferred:
            return
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.resume_client_reading(PAUSE_PIPELINE)
            self._feed(bytes(pending))

    def _error(self, status: int, termination: str) -> None:
        """Answer with a proxy-generated error page and close the connection."""
        self.status = status
        self._drop_server()
        transport = self.transport
        if transport is not None and self.phase not in (DATA, TUNNEL):
            page = ERROR_PAGES[status]
            transport.write(page)
            self.bytes_out += len(page)
        self._finish(termination)
        self._close()

    def _abort(self, termination: str, client_gone: bool = False) -> None:
        """Cut both sides: a timeout or a peer vanished mid-exchange."""
        if self.phase == QUEUE:
            self.backend.queue.remove(self)
            self.queue_target = None
        self._drop_server()
        self._finish(termination)
        if not client_gone:
            self._close()

    def kill(self) -> None:
        """Cut this connection now (the stop's grace period is over): log it as killed."""
        if self.phase in (IDLE, CLOSED):
            self._close()
            return
        self._abort("K" + _PHASE_LETTER[self.phase])

    def _drop_server(self) -> None:
        task = self.connect_task
        if task is not None:
            self.connect_task = None
            task.cancel()
        conn = self.srv_conn
        if conn is not None:
            self.srv_conn = None
            conn.abort()

    def _finish(self, termination: str, now: float | None = None) -> None:
        """The request is over (at loop time ``now``, when the caller has just read
        it): free its server slot and log it."""
        if self.phase in (IDLE, CLOSED) and self.status < 0:
            return
        self.proxy.log_request(self, termination, now)
        self._release_server()
        self.busy = False
        self.phase = IDLE

    def _close(self) -> None:
        self.phase = CLOSED
        self.busy = False
        self.deferred = None
        self.pending = None
        self.deadline = 0.0
        transport = self.transport
        if transport is not None:
            transport.close()
