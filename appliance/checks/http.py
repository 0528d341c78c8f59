"""HTTP health check: a request to the server, judged by status and body.

The article's second level: a server that accepts connections may still be
broken (its application or database gone), so ask it a real question
(HAProxy's ``option httpchk`` with ``http-check expect``). One request per
connection (``Connection: close``); the response is read to its end, at most
``MAX_RESPONSE`` bytes (more is cut, as HAProxy's check buffer does), all
within ``timeouts.check``: a response that never ends is a "Layer7 timeout".

``HttpResponse`` (sans-io) assembles and judges the answer; ``http_check``
moves the bytes.
"""

from __future__ import annotations

import asyncio
import re

from appliance.checks.state import CheckResult
from appliance.checks.tcp import L4_TIMEOUT, connect_error, hang_up
from appliance.config.model import CheckConfig
from appliance.proxy.http import ChunkedDecoder, InvalidResponse, parse_response_head

MAX_RESPONSE = 16384
L7_OK = "Layer7 check passed"
L7_STATUS = "Layer7 wrong status"
L7_RESPONSE = "Layer7 invalid response"
L7_TIMEOUT = "Layer7 timeout"
_RANGE = re.compile(r"\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?")


def parse_statuses(text: str) -> tuple[tuple[int, int], ...]:
    """``"200,204-206"`` -> ((200, 200), (204, 206)); the loader has validated it."""
    ranges = []
    for part in text.split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise ValueError(f"invalid status {part.strip()!r}")
        low = int(match[1])
        ranges.append((low, int(match[2] or low)))
    return tuple(ranges)


def check_request(config: CheckConfig, address: str) -> bytes:
    host = config.host or address
    return (
        f"{config.method} {config.path} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: weir-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


class HttpResponse:
    """A check response as it arrives: ``feed`` until ``complete``, then ``judge``."""

    __slots__ = ("body", "complete", "decoder", "head", "head_only", "length", "raw")

    def __init__(self, head_only: bool = False) -> None:
        self.raw = b""  # bytes before the end of the head
        self.head = None
        self.head_only = head_only  # a HEAD request: no body follows
        self.body = bytearray()
        self.length = -1  # -1: until the connection closes
        self.decoder: ChunkedDecoder | None = None
        self.complete = False

    def feed(self, data: bytes) -> None:
        """Take bytes from the server; raise InvalidResponse for what is not HTTP."""
        if self.head is None:
            self.raw += data
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                if len(self.raw) > MAX_RESPONSE:
                    raise InvalidResponse("response head too large")
                return
            self.head = head = parse_response_head(self.raw[:end])
            data = self.raw[end + 4 :]
            self.raw = b""
            if self.head_only or head.status in (204, 304) or head.status < 200:
                self.complete = True
                return
            if head.chunked:
                self.decoder = ChunkedDecoder()
            else:
                self.length = head.content_length
        if self.decoder is not None:
            pieces: list[bytes] = []
            self.decoder.feed(data, pieces)
            for piece in pieces:
                self.body += piece
            done = self.decoder.done
        else:
            self.body += data
            done = 0 <= self.length <= len(self.body)
        if done or len(self.body) >= MAX_RESPONSE:
            del self.body[MAX_RESPONSE:]
            self.complete = True

    def closed(self) -> None:
        """The server closed the connection: that ends a body without a length."""
        if self.head is not None and self.decoder is None and self.length < 0:
            self.complete = True

    def judge(
        self, statuses: tuple[tuple[int, int], ...], expect_body: str, duration: float
    ) -> CheckResult:
        if not self.complete:
            return CheckResult(
                False,
                L7_RESPONSE,
                info="connection closed before the response ended",
                duration=duration,
            )
        head = self.head
        status = head.status
        info = head.reason.decode("latin-1")
        if not any(low <= status <= high for low, high in statuses):
            return CheckResult(False, L7_STATUS, code=status, info=info, duration=duration)
        if expect_body and expect_body.encode() not in self.body:
            return CheckResult(
                False,
                L7_RESPONSE,
                code=status,
                info="HTTP content check did not match",
                duration=duration,
            )
        return CheckResult(True, L7_OK, code=status, info=info, duration=duration)


async def http_check(
    host: str,
    port: int,
    config: CheckConfig,
    timeout: float,
    statuses: tuple[tuple[int, int], ...] | None = None,
) -> CheckResult:
    """Send the check request to ``host:port`` and judge the answer, within ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    response = HttpResponse(head_only=config.method == "HEAD")
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                return connect_error(exc, loop.time() - start)
            writer.write(check_request(config, address))
            while not response.complete:
                data = await reader.read(65536)
                if not data:
                    response.closed()
                    break
                response.feed(data)
    except TimeoutError:
        reason = L4_TIMEOUT if writer is None else L7_TIMEOUT
        return CheckResult(False, reason, duration=loop.time() - start)
    except InvalidResponse as exc:
        return CheckResult(False, L7_RESPONSE, info=str(exc), duration=loop.time() - start)
    except OSError as exc:
        info = exc.strerror or str(exc) or type(exc).__name__
        return CheckResult(False, L7_RESPONSE, info=info, duration=loop.time() - start)
    finally:
        if writer is not None:
            hang_up(writer)
    statuses = statuses if statuses is not None else parse_statuses(config.expect_status)
    return response.judge(statuses, config.expect_body, loop.time() - start)
