"""A real HTTP/1.1 test server, run on its own event loop thread.

Each ``TestBackend`` listens on 127.0.0.1 and answers according to the request
path, so a test chooses a behaviour by the URL it sends through the proxy:

    /                    200, body "<name> <path>"
    /status/NNN          status NNN
    /chunked/N           chunked body of N chunks "<name>-i\\n"
    /eof                 body delimited by closing the connection
    /slow/MS             answer after MS milliseconds
    /hang                never answer
    /close               close the connection without answering
    /garbage             answer with an invalid status line
    /count               read the whole request body, answer its length and sha256
    /headers             answer with the request head as received
    /ws                  101 Switching Protocols, then echo bytes back (a tunnel)
    /big/N               N bytes of body (Content-Length)
    /continue            honour Expect: 100-continue, then count the body
    /health              status ``health_status`` (settable per backend; 0: never answer)
    /session             200 with ``Set-Cookie: JSESSIONID=<32 random hex>; path=/``
    /set-cookie/TEXT     200 with ``Set-Cookie: TEXT`` (percent-decoded: ``%3B`` is ';')
    /cookies             200, body: the request's Cookie header values, one per line

Every request is recorded in ``requests`` (method, path, headers) with the
connection it came on, so tests can see reuse and what the proxy forwarded.
``inflight`` counts requests received but not yet answered (a request whose
connection closes first stops counting), and ``max_inflight`` is its highest
value, so tests can check that the proxy honours a server's ``maxconn``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field

import httptools


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    conn_id: int
    body_len: int = 0

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class _Conn(asyncio.Protocol):
    ids = 0

    def __init__(self, backend: TestBackend) -> None:
        self.backend = backend
        _Conn.ids += 1
        self.id = _Conn.ids
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.tunnel = False
        self.cur: Seen | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.hasher = None
        self.inflight = False

    def _begin(self) -> None:
        if not self.inflight:
            self.inflight = True
            b = self.backend
            b.inflight += 1
            b.max_inflight = max(b.max_inflight, b.inflight)

    def _end(self) -> None:
        if self.inflight:
            self.inflight = False
            self.backend.inflight -= 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend.connections += 1
        self.backend.open_conns += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.backend.open_conns -= 1
        self._end()

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            self.transport.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if rest:
                self.transport.write(rest)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.hasher = hashlib.sha256()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.cur = Seen(
            self.parser.get_method().decode(), self.url.decode("latin-1"), self.headers, self.id
        )
        self.backend.requests.append(self.cur)
        self._begin()
        if self.cur.path == "/continue" and self.cur.header("expect") == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.cur.body_len += len(body)
        self.hasher.update(body)

    def on_message_complete(self) -> None:
        seen = self.cur
        path = seen.path.split("?", 1)[0]
        loop = asyncio.get_running_loop()
        if path.startswith("/slow/"):
            delay = int(path.rsplit("/", 1)[1]) / 1000
            loop.call_later(delay, self._answer, seen, path)
        elif path == "/hang" or (path == "/health" and not self.backend.health_status):
            return
        else:
            self._answer(seen, path)

    def _send(self, status: int, body: bytes, extra: bytes = b"") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        length = len(body)
        extra += "".join(f"{h}\r\n" for h in self.backend.headers).encode("latin-1")
        if self.cur is not None and self.cur.method == "HEAD":
            body = b""
        self.transport.write(
            b"HTTP/1.1 %d X\r\nX-Backend: %b\r\nContent-Length: %d\r\n%b\r\n%b"
            % (status, self.backend.name.encode(), length, extra, body)
        )

    def _answer(self, seen: Seen, path: str) -> None:
        name = self.backend.name.encode()
        t = self.transport
        if t is None or t.is_closing():
            return
        self._end()
        if path == "/health":
            self._send(self.backend.health_status, b"health\n")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            if status in (204, 304):
                t.write(b"HTTP/1.1 %d X\r\nX-Backend: %b\r\n\r\n" % (status, name))
            else:
                self._send(status, b"status\n")
        elif path.startswith("/chunked/"):
            n = int(path.rsplit("/", 1)[1])
            out = [b"HTTP/1.1 200 OK\r\nX-Backend: %b\r\nTransfer-Encoding: chunked\r\n\r\n" % name]
            for i in range(n):
                piece = b"%b-%d\n" % (name, i)
                out.append(b"%x\r\n%b\r\n" % (len(piece), piece))
            out.append(b"0\r\n\r\n")
            t.write(b"".join(out))
        elif path == "/eof":
            t.write(b"HTTP/1.1 200 OK\r\nX-Backend: %b\r\n\r\n%b until close\n" % (name, name))
            t.close()
        elif path == "/close":
            t.close()
        elif path == "/garbage":
            t.write(b"HTTX/9 what\r\n\r\n")
        elif path in ("/count", "/continue"):
            body = b"%d %s\n" % (seen.body_len, self.hasher.hexdigest().encode())
            self._send(200, body)
        elif path == "/headers":
            head = "".join(f"{k}: {v}\n" for k, v in seen.headers)
            self._send(200, f"{seen.method} {seen.path}\n{head}".encode())
        elif path == "/ws":
            t.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nX-Backend: %b\r\n\r\n" % name
            )
            self.tunnel = True
        elif path == "/session":
            value = secrets.token_hex(16).encode()
            self._send(
                200, b"%b session\n" % name, b"Set-Cookie: JSESSIONID=%b; path=/\r\n" % value
            )
        elif path.startswith("/set-cookie/"):
            text = urllib.parse.unquote_to_bytes(path[len("/set-cookie/") :])
            self._send(200, b"%b set-cookie\n" % name, b"Set-Cookie: %b\r\n" % text)
        elif path == "/cookies":
            values = [v for k, v in seen.headers if k.lower() == "cookie"]
            self._send(200, "".join(f"{v}\n" for v in values).encode("latin-1"))
        elif path.startswith("/big/"):
            n = int(path.rsplit("/", 1)[1])
            self._send(200, b"x" * n)
        else:
            self._send(200, b"%b %b\n" % (name, seen.path.encode()))


@dataclass
class TestBackend:
    name: str
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_conns: int = 0
    inflight: int = 0
    max_inflight: int = 0
    health_status: int = 200
    headers: list[str] = field(default_factory=list)  # added to every answer with a length
    _server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class BackendPool:
    """Runs test backends on one event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.backends: list[TestBackend] = []

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self, name: str, port: int = 0) -> TestBackend:
        backend = TestBackend(name)

        async def _start() -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            backend.port = sock.getsockname()[1]
            backend._server = await self.loop.create_server(lambda: _Conn(backend), sock=sock)

        self._call(_start())
        self.backends.append(backend)
        return backend

    def stop(self, backend: TestBackend) -> None:
        """Stop listening (existing connections stay): new connects are refused."""

        async def _stop() -> None:
            backend._server.close()

        self._call(_stop())

    def restart(self, backend: TestBackend) -> None:
        async def _start() -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", backend.port))
            backend._server = await self.loop.create_server(lambda: _Conn(backend), sock=sock)

        self._call(_start())

    def close(self) -> None:
        async def _close() -> None:
            for b in self.backends:
                if b._server is not None:
                    b._server.close()

        self._call(_close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
