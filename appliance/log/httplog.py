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
    if _NEEDS_ESCAPE.search(raw) is not None:
        raw = _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], raw)
    return raw.decode("ascii")


class HttpLogFormatter:
    """Builds access and event lines for one process (hostname and pid are fixed).

    Thread-safe: each cache is a single (second, text) tuple swapped atomically.
    """

    __slots__ = ("_accept_cache", "_header_cache", "_tag")

    def __init__(self, hostname: str | None = None, pid: int | None = None) -> None:
        host = socket.gethostname() if hostname is None else hostname
        self._tag = f" {host} weir[{os.getpid() if pid is None else pid}]: "
        self._header_cache: tuple[int, str] = (-1, "")
        self._accept_cache: tuple[int, str] = (-1, "")

    def _header(self, second: int) -> str:
        cached_second, header = self._header_cache
        if cached_second != second:
            t = time.localtime(second)
            header = (
                f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{self._tag}"
            )
            self._header_cache = (second, header)
        return header

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
        cached_second, accept_date = self._accept_cache
        if cached_second != second:
            t = time.localtime(second)
            accept_date = (
                f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
            )
            self._accept_cache = (second, accept_date)
        return (
            f"{header}{client_ip}:{client_port} {accept_date}{accept_ms % 1000:03d}] "
            f"{frontend} {backend}/{server or NOSRV} {tr}/{tw}/{tc}/{tr_resp}/{ta} "
            f"{status} {bytes_out} {req_cookie} {res_cookie} {termination} "
            f"{actconn}/{feconn}/{beconn}/{srv_conn}/{'+' if redispatched else ''}{retries} "
            f'{srv_queue}/{backend_queue} "{request_line or BADREQ}"'
        )

    def event(self, message: str, ts: float | None = None) -> str:
        """Return an event line (``Proxy www started.``, ``Server app/web1 is DOWN...``)."""
        return self._header(int(time.time() if ts is None else ts)) + message
