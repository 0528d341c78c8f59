"""HTTP/1.1 message pieces the proxy needs beyond llhttp (RFC 9112).

Requests from clients are parsed by httptools (llhttp, strict). Responses from
servers are parsed here, because the proxy must tell the parser that a
response to HEAD, a 1xx, 204 or 304 has no body, which httptools cannot do.
Everything in this module is sans-io: bytes in, values out.
"""

from __future__ import annotations

import re

# Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1).
# Transfer-Encoding is handled by the framing code; Upgrade is re-added for tunnels.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_ERROR_TEXT = {
    400: "Your browser sent an invalid request.",
    408: "Your browser didn't send a complete request in time.",
    414: "The request URI is too long.",
    431: "The request headers are too large.",
    500: "An internal error occurred.",
    501: "The request method or feature is not supported.",
    502: "The server returned an invalid or incomplete response.",
    503: "No server is available to handle this request.",
    504: "The server didn't respond in time.",
}


def _error_page(status: int) -> bytes:
    reason = REASONS[status]
    body = (
        f"<html><body><h1>{status} {reason}</h1>\n{_ERROR_TEXT[status]}\n</body></html>\n"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\n"
        "Content-Type: text/html\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


# Proxy-generated answers, built once. All of them close the connection.
ERROR_PAGES = {status: _error_page(status) for status in _ERROR_TEXT}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"


class InvalidResponse(ValueError):
    """The server's answer is not valid HTTP/1.x: the proxy answers 502."""


class ResponseHead:
    """A parsed response head: status, framing, and the header lines to forward.

    ``fields`` holds the header lines as received (each preceded by CRLF),
    minus the hop-by-hop ones and the framing headers the proxy sets itself.
    ``start`` is what the client is sent before any framing header: the status
    line and ``fields``, built once per parsed (and cached) head. ``raw`` is the
    head as received, blank line included.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "fields",
        "keep_alive",
        "raw",
        "reason",
        "start",
        "status",
        "version",
    )

    def __init__(self) -> None:
        self.version = b"1.1"
        self.status = 0
        self.reason = b""
        self.fields = b""
        self.raw = self.start = b""
        self.content_length = -1  # -1: not given
        self.chunked = False
        self.keep_alive = True

    def start_with(self, fields: bytes) -> bytes:
        """The status line sent to the client (HTTP/1.1), followed by ``fields``."""
        reason = self.reason or REASONS.get(self.status, "Unknown").encode()
        return b"HTTP/1.1 %d %b%b" % (self.status, reason, fields)


# The whole head is validated by one regular expression (RFC 9112 §4 and §5:
# status line, then field lines of a token, a colon and a value without
# control characters; no obsolete line folding).
_RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n\x00]*))?"
    rb"((?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n\x00]*)*)"
)
# The fields the proxy acts on, found in one pass over the lower-cased lines.
_HOP = rb"connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|proxy-authenticate"
_SPECIAL_FIELDS = re.compile(
    rb"\r\n(content-length|" + _HOP + rb"|upgrade):[ \t]*([^\r\n]*?)[ \t]*(?=\r\n|$)"
)
_HOP_LINES = re.compile(rb"\r\n(?:" + _HOP + rb"|upgrade):[^\r\n]*", re.IGNORECASE)
_HOP_LINES_101 = re.compile(rb"\r\n(?:" + _HOP + rb"):[^\r\n]*", re.IGNORECASE)  # keeps Upgrade
_CONTENT_LENGTH_LINES = re.compile(rb"\r\ncontent-length:[^\r\n]*", re.IGNORECASE)


def parse_response_head(block: bytes) -> ResponseHead:
    """Parse ``block`` (status line and header lines, without the final CRLFCRLF)."""
    match = _RESPONSE_HEAD.fullmatch(block)
    if match is None:
        raise InvalidResponse("malformed response head")
    minor, code, reason, fields = match.groups()
    head = ResponseHead()
    head.raw = block + b"\r\n\r\n"
    head.status = status = int(code)
    head.reason = reason or b""
    keep_alive = minor == b"1"
    if not keep_alive:
        head.version = b"1.0"
    hop = False
    length = None
    codings = None
    tokens = None
    for name, value in _SPECIAL_FIELDS.findall(fields.lower()):
        if name == b"content-length":
            if not value.isdigit() or not value.isascii() or length not in (None, value):
                raise InvalidResponse("bad or conflicting content-length")
            length = value
            continue
        hop = True
        if name == b"connection":
            tokens = value if tokens is None else tokens + b"," + value
        elif name == b"transfer-encoding":
            codings = value if codings is None else codings + b"," + value
    if length is not None:
        head.content_length = int(length)
    if codings is not None and codings.rsplit(b",", 1)[-1].strip(b" \t") == b"chunked":
        head.chunked = True
        head.content_length = -1  # RFC 9112 §6.3: chunked wins over a length
        fields = _CONTENT_LENGTH_LINES.sub(b"", fields)
    if tokens is not None:
        if tokens == b"keep-alive":
            keep_alive = True
        else:
            names = {t.strip(b" \t") for t in tokens.split(b",")}
            if b"close" in names:
                keep_alive = False
            elif b"keep-alive" in names:
                keep_alive = True
            nominated = names - {b"close", b"keep-alive", b"upgrade", b""}
            if nominated:
                pattern = rb"\r\n(?:" + b"|".join(map(re.escape, nominated)) + rb"):[^\r\n]*"
                fields = re.sub(pattern, b"", fields, flags=re.IGNORECASE)
    if hop:
        fields = (_HOP_LINES_101 if status == 101 else _HOP_LINES).sub(b"", fields)
    head.fields = fields
    head.start = head.start_with(fields)
    head.keep_alive = keep_alive
    return head


class ResponseHeadCache:
    """Parsed response heads, by their exact bytes.

    A server answers many requests with byte-identical heads (the same
    resource, the same second in ``Date``): parsing is a pure function of the
    bytes, so its result is kept and shared. ``ResponseHead`` objects are never
    modified after parsing. Invalid heads are not kept (they raise each time).
    The cache is simply emptied when full.
    """

    __slots__ = ("_heads", "size")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._heads: dict[bytes, ResponseHead] = {}

    def parse(self, block: bytes) -> ResponseHead:
        head = self._heads.get(block)
        if head is None:
            head = parse_response_head(block)
            if len(self._heads) >= self.size:
                self._heads.clear()
            self._heads[block] = head
        return head


RESPONSE_HEADS = ResponseHeadCache()


class ChunkedDecoder:
    """Incremental decoder of a chunked body (RFC 9112 §7.1).

    ``feed`` returns the payload pieces found in ``data`` and how many bytes of
    ``data`` belonged to the body; ``done`` is set after the last chunk and
    trailer section.
    """

    __slots__ = ("_line", "_remaining", "_state", "done")

    _SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)
    MAX_LINE = 4096

    def __init__(self) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._line = b""
        self.done = False

    def feed(self, data: bytes, out: list[bytes]) -> int:
        pos = 0
        end = len(data)
        while pos < end and not self.done:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_CRLF
                    self._line = b""
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += data[pos:]
                if len(self._line) > self.MAX_LINE:
                    raise InvalidResponse("chunk line too long")
                return end
            line = self._line + data[pos:nl]
            self._line = b""
            pos = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if state == self._SIZE:
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise InvalidResponse("bad chunk size") from None
                if size < 0 or not size_text or size_text[:1] in b"+-":
                    raise InvalidResponse("bad chunk size")
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._remaining = size
                    self._state = self._DATA
            elif state == self._DATA_CRLF:
                if line:
                    raise InvalidResponse("missing CRLF after chunk")
                self._state = self._SIZE
            elif not line:  # end of trailer section
                self.done = True
        return pos


def chunk(data: bytes) -> bytes:
    """Encode one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
