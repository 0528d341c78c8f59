"""The Prometheus listener (``global.metrics_bind``): ``GET /metrics`` over HTTP/1.1.

A deliberately small HTTP responder in the proxy's own event loop, so a scrape
reads the counters without locks or threads: one request per connection
(answered with ``Connection: close``; Prometheus scrapes every few seconds at
most, a new connection each time costs nothing), ``GET``/``HEAD /metrics``
answered with ``prometheus.render``, 404 for other paths, 405 for other
methods, 400 for anything that is not a request line, 431 for a head over
``MAX_HEAD`` bytes. A client that does not send its head within
``HEAD_TIMEOUT``, or does not take the answer and close within
``SEND_TIMEOUT``, is cut; at most ``MAX_CLIENTS`` are served at once.
``answer`` holds the HTTP logic, without I/O.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.proxy.frontend import Listening, listen_socket
from appliance.runtime.prometheus import CONTENT_TYPE, render

if TYPE_CHECKING:
    import socket

    from appliance.config.model import Address
    from appliance.proxy.proxy import Proxy

PATH = "/metrics"
MAX_HEAD = 8192  # bytes; a scraper's request head is a few hundred
HEAD_TIMEOUT = 5.0  # seconds for the whole request head to arrive
SEND_TIMEOUT = 10.0  # seconds for the client to take the answer and close
MAX_CLIENTS = 32
_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (\S{1,4096}) HTTP/1\.[01]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class MetricsBindError(Exception):
    """The metrics listener cannot listen; the message is the one-line reason."""


def answer(head: bytes, body: Callable[[], str]) -> bytes:
    """The whole response to a request ``head`` (its first line is what counts)."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        return response(400, "Bad request.\n")
    method, target = match.group(1), match.group(2)
    if method not in (b"GET", b"HEAD"):
        return response(405, "Only GET and HEAD.\n", extra="Allow: GET, HEAD\r\n")
    if target.split(b"?", 1)[0] != PATH.encode():
        return response(404, f"Not found; the metrics are at {PATH}.\n")
    return response(200, body(), content_type=CONTENT_TYPE, head_only=method == b"HEAD")


def response(
    status: int,
    text: str,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: str = "",
    head_only: bool = False,
) -> bytes:
    payload = text.encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + payload


class MetricsListener(Listening):
    """Listens on ``address`` (None: not at all) and answers each client once."""

    def __init__(self, proxy: Proxy, address: Address | None) -> None:
        self.proxy = proxy
        self.address = address
        self.sock: socket.socket | None = None
        self.server: asyncio.AbstractServer | None = None
        self.clients: set[MetricsClient] = set()

    def bind(self) -> None:
        """Open the listening socket (before the loop runs); ``MetricsBindError`` if we can't."""
        if self.address is None:
            return
        try:
            self.sock = listen_socket(self.address)
        except OSError as exc:
            raise MetricsBindError(
                f"cannot bind the metrics listener (global.metrics_bind) to {self.address}: "
                f"{exc.strerror or exc}"
            ) from None

    async def start(self) -> None:
        if self.sock is None:
            return
        self.server = await self.proxy.loop.create_server(
            lambda: MetricsClient(self), sock=self.sock
        )
        self.proxy.event(f"Prometheus metrics on http://{self.address}{PATH}.")

    def metrics(self) -> str:
        return render(self.proxy)

    def close(self) -> None:
        self.close_listening()
        for client in list(self.clients):
            client.abort()


class MetricsClient(asyncio.Protocol):
    """One scraper's connection: read a request head, answer, close."""

    def __init__(self, listener: MetricsListener) -> None:
        self.listener = listener
        self.loop = listener.proxy.loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.listener.clients) >= MAX_CLIENTS:
            transport.abort()  # type: ignore[attr-defined]
            return
        self.listener.clients.add(self)
        self.timer = self.loop.call_later(HEAD_TIMEOUT, self.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.clients.discard(self)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.answered or self.transport is None:
            return  # anything after the request is ignored
        self.buf += data
        end = self.buf.find(b"\n\r\n")
        if end < 0:
            end = self.buf.find(b"\n\n")
        if end < 0 or end > MAX_HEAD:
            if len(self.buf) > MAX_HEAD:
                self._reply(response(431, "Request head too large.\n"))
            return
        self._reply(self._answer(self.buf[:end]))

    def eof_received(self) -> bool:
        if not self.answered:
            self.abort()  # closed before a whole request: nothing to answer
        return False  # the client is done: close once the answer is flushed

    def _answer(self, head: bytes) -> bytes:
        try:
            return answer(head, self.listener.metrics)
        except Exception as exc:  # a bug in a metric must not take the proxy down
            self.listener.proxy.event(f"Prometheus metrics: internal error: {exc!r}")
            return response(500, "Internal error.\n")

    def _reply(self, data: bytes) -> None:
        self.answered = True
        self.buf = b""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(SEND_TIMEOUT, self.abort)
        # Lingering close: end our side and wait for the client's, reading and
        # dropping what it still sends; closing at once with unread data would
        # reset the connection and could lose the answer on its way.
        self.transport.write(data)
        self.transport.write_eof()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
