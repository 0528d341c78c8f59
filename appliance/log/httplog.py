"""The HAProxy ``option httplog`` access line and syslog-style event lines.

Implements the line described in HAProxy's configuration manual, section 8.2.3
("HTTP log format"), preceded by an RFC 3164 style header
(``Mon DD HH:MM:SS hostname weir[pid]: ``) so that ``halog`` and log pipelines
built for HAProxy read Weir's access log unchanged (docs/logging.md has an
example and every field).

``HttpLogFormatter.format`` runs once per request on the proxy's hot path: the
header and the accept date are rebuilt only when their second changes, the
rest is one f-string.
"""

import os
import re
import socket
import time

NOSRV = "<NOSRV>"
"""Server field when no server was chosen (pass ``server=""``)."""

BADREQ = "<BADREQ>"
"""Request-line field when no request line could be read (pass ``request_line=""``)."""

REQUEST_LINE_MAX = 1023
"""Bytes of the raw request line kept in the log: HAProxy's ``tune.http.logurilen``
default (1024) minus its terminating NUL."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# HAProxy's url_encode_map (src/log.c): control characters, DEL and every byte
# >= 0x80, plus '"' (it delimits the field) and '#' (it introduces an escape).
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"#\x7f-\xff]')
_ESCAPES = {bytes([b]): f"#{b:02X}".encode("ascii") for b in range(256)}


def escape_request_line(raw: bytes) -> str:
    """Return the request line as HAProxy logs it inside its double quotes.

    The raw line is cut at ``REQUEST_LINE_MAX`` bytes, then control bytes, DEL,
    non-ASCII bytes, ``"`` and ``#`` become ``#XX`` (uppercase hex).  An empty
    result means "no request line" and is logged as ``<BADREQ>``.
    """
    if len(raw) > REQUEST_LINE_MAX:
        raw = raw[:REQUEST_LINE_MAX]
    if raw.isascii():  # the usual case, tested by cheaper means than the expression
        line = raw.decode("ascii")
        if line.isprintable() and '"' not in line and "#" not in line:
            return line
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], raw).decode("ascii")


# One access line (HAProxy's field order); ``HttpLogFormatter.format`` fills it.
_LINE = '%s%s:%d %s%03d] %s %s/%s %d/%d/%d/%d/%d %d %d %s %s %s %d/%d/%d/%d/%s%d %d/%d "%s"'


class HttpLogFormatter:
    """Builds access and event lines for one process (hostname and pid are fixed).

    Thread-safe: each cache is a single (second, header, accept date) tuple
    swapped atomically.
    """

    __slots__ = ("_accept_cache", "_now_cache", "_tag")

    def __init__(self, hostname: str | None = None, pid: int | None = None) -> None:
        host = socket.gethostname() if hostname is None else hostname
        self._tag = f" {host} weir[{os.getpid() if pid is None else pid}]: "
        # The header's second (the line's time) and the accept date's second.
        self._now_cache = self._accept_cache = (-1, "", "")

    def _stamps(self, second: int) -> tuple[int, str, str]:
        """``second``, its syslog header and its accept date (``[DD/Mon/YYYY:HH:MM:SS.``,
        missing only the milliseconds), in local time."""
        t = time.localtime(second)
        clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        month = _MONTHS[t.tm_mon - 1]
        return (
            second,
            f"{month} {t.tm_mday:2d} {clock}{self._tag}",
            f"[{t.tm_mday:02d}/{month}/{t.tm_year}:{clock}.",
        )

    def _header(self, second: int) -> str:
        cached = self._now_cache
        if cached[0] != second:
            cached = self._now_cache = self._stamps(second)
        return cached[1]

    def format(
        self,
        client_ip: str,
        client_port: int,
        accept_ts: float,
        frontend: str,
        backend: str,
        server: str,
        tr: int,
        tw: int,
        tc: int,
        tr_resp: int,
        ta: int,
        status: int,
        bytes_out: int,
        termination: str,
        actconn: int,
        feconn: int,
        beconn: int,
        srv_conn: int,
        retries: int,
        redispatched: bool,
        srv_queue: int,
        backend_queue: int,
        request_line: str,
        req_cookie: str = "-",
        res_cookie: str = "-",
        now: float | None = None,
    ) -> str:
        """Return one httplog line, without the trailing newline.

        ``accept_ts`` and ``now`` (the header time, default ``time.time()``) are
        epoch seconds, shown in local time; milliseconds are truncated like
        HAProxy's.  Timers are milliseconds, ``-1`` for a phase that did not
        happen; ``status`` is ``-1`` when no response was produced.
        ``server=""`` logs ``<NOSRV>``; ``request_line`` is the output of
        ``escape_request_line`` and ``""`` logs ``<BADREQ>``.  ``termination``
        is the 4-character state (see docs/logging.md).  ``redispatched``
        prefixes the retry count with ``+``.
        """
        header = self._header(int(time.time() if now is None else now))
        accept_ms = int(accept_ts * 1000)
        second = accept_ms // 1000
        accepted = self._accept_cache
        if accepted[0] != second:
            accepted = self._accept_cache = self._stamps(second)
        return _LINE % (
            header,
            client_ip,
            client_port,
            accepted[2],
            accept_ms - second * 1000,
            frontend,
            backend,
            server or NOSRV,
            tr,
            tw,
            tc,
            tr_resp,
            ta,
            status,
            bytes_out,
            req_cookie,
            res_cookie,
            termination,
            actconn,
            feconn,
            beconn,
            srv_conn,
            "+" if redispatched else "",
            retries,
            srv_queue,
            backend_queue,
            request_line or BADREQ,
        )

    def event(self, message: str, ts: float | None = None) -> str:
        """Return an event line (``Proxy www started.``, ``Server app/web1 is DOWN...``)."""
        return self._header(int(time.time() if ts is None else ts)) + message
