"""Log sinks: where access and event lines go, without blocking the event loop.

``LogSink.write`` only appends to an in-memory buffer.  A daemon thread per
sink wakes when the buffer becomes non-empty, waits up to ``flush_interval``
to batch more lines (or less when ``flush_bytes`` are pending), and carries
out the slow part: a file ``write(2)``, a write to a possibly full stdout pipe,
or one UDP datagram per line in the BSD syslog format of RFC 3164.  When the
backlog reaches ``max_backlog`` bytes, new lines are dropped and counted in
``dropped`` instead of growing memory.

Targets (``global.log``): ``"stdout"``, ``"/path/file"``,
``"syslog://host[:port]"`` and ``"none"`` / ``""``.
"""

import enum
import os
import socket
import sys
import threading
from urllib.parse import urlsplit

FLUSH_INTERVAL = 0.05
"""Seconds a batch waits for more lines before it is written."""

FLUSH_BYTES = 64 * 1024
"""Pending bytes that wake the writer before ``FLUSH_INTERVAL`` is up."""

MAX_BACKLOG = 8 * 1024 * 1024
"""Pending bytes above which new lines are dropped."""

SYSLOG_PORT = 514
LOCAL0 = 16
"""Syslog facility of every line (``local0``, HAProxy's usual choice)."""


class Severity(enum.IntEnum):
    """Syslog severities (RFC 3164 section 4.1.1); access lines are INFO."""

    EMERG = 0
    ALERT = 1
    CRIT = 2
    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


class LogSink:
    """Buffer plus writer thread; subclasses say how a batch of lines is written."""

    def __init__(
        self,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        flush_bytes: int = FLUSH_BYTES,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.dropped = 0
        """Lines lost: backlog full, write or send failed, or not written by close()."""
        self.last_error = ""
        """The most recent I/O error, for operators (``show info``)."""
        self._flush_interval = flush_interval
        self._flush_bytes = flush_bytes
        self._max_backlog = max_backlog
        self._lock = threading.Lock()  # write() takes it directly: cheaper than the Condition
        self._cond = threading.Condition(self._lock)
        self._lines: list[str] = []
        self._backlog = 0
        self._taken = 0  # lines the writer has taken from the buffer
        self._done = 0  # of those, lines whose _emit has returned
        self._urgent = False  # flush() or close() wants the batch now
        self._reopen_pending = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"weir-log-{type(self).__name__}", daemon=True
        )
        self._thread.start()

    def write(self, line: str, severity: Severity = Severity.INFO) -> None:
        """Queue one line (no newline); never blocks on I/O."""
        size = len(line) + 1
        with self._lock:
            backlog = self._backlog
            if backlog >= self._max_backlog or self._closed:
                self.dropped += 1
                return
            self._lines.append(line)
            self._backlog = backlog + size
            # Wake the writer once per batch, and once more when the batch gets big.
            if not backlog or (backlog < self._flush_bytes <= backlog + size):
                self._cond.notify()

    def flush(self) -> None:
        """Block until every line written so far (and a pending reopen) is done."""
        with self._cond:
            target = self._taken + len(self._lines)
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    (self._done >= target and not self._reopen_pending)
                    or not self._thread.is_alive()
                )
            )

    def reopen(self) -> None:
        """Reopen the target (after logrotate moved the file); done by the writer."""
        with self._cond:
            self._reopen_pending = True
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Write everything queued, then release the target.

        Safe from the event-loop thread at shutdown.  Lines the writer could
        not write within ``timeout`` seconds (a hung disk) are counted as dropped.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self.dropped += len(self._lines)
                self._lines = []
            return
        self._release()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                cond.wait_for(lambda: self._lines or self._reopen_pending or self._closed)
                cond.wait_for(
                    lambda: self._backlog >= self._flush_bytes or self._urgent or self._closed,
                    timeout=self._flush_interval,
                )
                batch, self._lines = self._lines, []
                self._backlog = 0
                self._taken += len(batch)
                self._urgent = False
                reopen, self._reopen_pending = self._reopen_pending, False
                closing = self._closed
            if reopen:
                self._reopen_target()
            if batch:
                self._emit(batch)
            with cond:
                self._done += len(batch)
                cond.notify_all()
            if closing:
                return

    def _fail(self, error: Exception, lines: int) -> None:
        """Record a failed write of ``lines`` lines (writer thread)."""
        with self._cond:
            self.dropped += lines
            self.last_error = str(error)

    def _emit(self, lines: list[str]) -> None:
        """Write a batch (writer thread)."""
        raise NotImplementedError

    def _reopen_target(self) -> None:
        """Reopen the target (writer thread); only files have something to reopen."""

    def _release(self) -> None:
        """Release the target after the writer has stopped."""


class NullSink(LogSink):
    """``log = "none"``: lines are discarded; no thread."""

    def __init__(self) -> None:
        self.dropped = 0
        self.last_error = ""

    def write(self, line: str, severity: Severity = Severity.INFO) -> None:
        """Discard the line."""

    def flush(self) -> None:
        """Nothing is buffered."""

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to release."""


class StdoutSink(LogSink):
    """``log = "stdout"``: lines go to the current ``sys.stdout``, looked up per batch."""

    stream = "stdout"

    def _emit(self, lines: list[str]) -> None:
        try:
            out = getattr(sys, self.stream)
            out.write("\n".join(lines) + "\n")
            out.flush()
        except (OSError, ValueError) as error:  # ValueError: stdout was closed
            self._fail(error, len(lines))


class StderrSink(StdoutSink):
    """Event lines (proxies starting, servers changing state) go to ``sys.stderr``."""

    stream = "stderr"


class FileSink(LogSink):
    """``log = "/path/file"``: appended to; ``reopen()`` follows logrotate's rename."""

    def __init__(
        self,
        path: str,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        flush_bytes: int = FLUSH_BYTES,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.path = path
        self._fd = self._open()
        super().__init__(
            flush_interval=flush_interval, flush_bytes=flush_bytes, max_backlog=max_backlog
        )

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def _emit(self, lines: list[str]) -> None:
        data = memoryview(("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as error:
            self._fail(error, len(lines))

    def _reopen_target(self) -> None:
        try:
            fd = self._open()
        except OSError as error:  # keep writing to the old file rather than nowhere
            self._fail(error, 0)
            return
        os.close(self._fd)
        self._fd = fd

    def _release(self) -> None:
        os.close(self._fd)


class SyslogSink(LogSink):
    """``log = "syslog://host:port"``: one UDP datagram per line, facility local0.

    The line already carries the RFC 3164 HEADER (timestamp, hostname) and TAG
    (``weir[pid]:``); only ``<PRI>`` is added.  The socket is non-blocking: a
    datagram the kernel will not take (EAGAIN) or cannot deliver
    (ECONNREFUSED from an earlier ICMP error) is dropped and counted.
    """

    _PRI = tuple(f"<{LOCAL0 * 8 + severity}>" for severity in Severity)

    def __init__(
        self,
        host: str,
        port: int = SYSLOG_PORT,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        flush_bytes: int = FLUSH_BYTES,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.address = address
        self._sock = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        self._sock.connect(address)
        super().__init__(
            flush_interval=flush_interval, flush_bytes=flush_bytes, max_backlog=max_backlog
        )

    def write(self, line: str, severity: Severity = Severity.INFO) -> None:
        """Queue one line with its ``<PRI>`` prefix; never blocks on I/O."""
        super().write(self._PRI[severity] + line)

    def _emit(self, lines: list[str]) -> None:
        send = self._sock.send
        for line in lines:
            try:
                send(line.encode("utf-8", "backslashreplace"))
            except OSError as error:
                self._fail(error, 1)

    def _release(self) -> None:
        self._sock.close()


def open_sink(target: str) -> LogSink:
    """Return the sink for a ``global.log`` value; raises ``ValueError`` or ``OSError``.

    ``"stdout"``, ``"none"`` or ``""``, ``"syslog://host[:port]"`` (port 514 by
    default; ``[v6addr]:port`` for IPv6), or an absolute file path.
    """
    if target in ("", "none"):
        return NullSink()
    if target == "stdout":
        return StdoutSink()
    if target.startswith("syslog://"):
        url = urlsplit(target)
        if not url.hostname or url.path not in ("", "/"):
            raise ValueError(f"log target {target!r}: expected syslog://host[:port]")
        try:
            port = url.port or SYSLOG_PORT
        except ValueError as error:
            raise ValueError(f"log target {target!r}: {error}") from None
        return SyslogSink(url.hostname, port)
    if target.startswith("/"):
        return FileSink(target)
    raise ValueError(
        f"log target {target!r}: expected 'stdout', 'none', 'syslog://host:port' "
        "or an absolute file path"
    )
