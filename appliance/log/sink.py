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
from collections import deque
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
    """Queue plus writer thread; subclasses say how a batch of lines is written.

    ``write`` runs once per request on the event loop, so it takes no lock: it
    appends to a deque (atomic in CPython) and counts the bytes it queued, while
    the writer thread pops lines and counts the bytes it took. Each counter has
    one writing thread, and the backlog is their difference. The condition is
    used only to wake the writer (first line of a batch, a batch grown to
    ``flush_bytes``, ``flush``, ``reopen``, ``close``) and to wait for it.
    Lines are written from one thread (the event loop's).
    """

    def __init__(
        self,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        flush_bytes: int = FLUSH_BYTES,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.last_error = ""
        """The most recent I/O error, for operators (``show info``)."""
        self._flush_interval = flush_interval
        self._flush_bytes = flush_bytes
        self._max_backlog = max_backlog
        self._queue: deque[str] = deque()
        self._queued = 0  # bytes queued by write() (written by the writing thread only)
        self._refused = 0  # lines write() refused or close() abandoned (writing thread only)
        self._taken = 0  # bytes the writer took from the queue (writer thread only)
        self._failed = 0  # lines the writer could not write (writer thread only)
        self._cond = threading.Condition()
        self._done = 0  # of the bytes taken, those whose _emit has returned (under _cond)
        self._wake = False  # a batch has started (under _cond, as are the flags below)
        self._full = False  # the batch reached flush_bytes
        self._urgent = False  # flush() or close() wants the batch now
        self._reopen_pending = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"weir-log-{type(self).__name__}", daemon=True
        )
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Lines lost: backlog full, write or send failed, or not written by close()."""
        return self._refused + self._failed

    def write(self, line: str, severity: Severity = Severity.INFO) -> None:
        """Queue one line (no newline); never blocks on I/O."""
        queued = self._queued
        backlog = queued - self._taken
        if backlog >= self._max_backlog or self._closed:
            self._refused += 1
            return
        queue = self._queue
        queue.append(line)
        size = len(line) + 1
        self._queued = queued + size
        # Wake the writer once per batch, and once more when the batch gets big.
        if len(queue) == 1:
            self._wake_writer(full=False)
        elif backlog < self._flush_bytes <= backlog + size:
            self._wake_writer(full=True)

    def _wake_writer(self, full: bool) -> None:
        with self._cond:
            if full:
                self._full = True
            else:
                self._wake = True
            self._cond.notify()

    def flush(self) -> None:
        """Block until every line written so far (and a pending reopen) is done."""
        with self._cond:
            target = self._queued
            self._wake = self._urgent = True
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
            queue = self._queue
            while queue:
                queue.popleft()
                self._refused += 1
            return
        self._release()

    def _run(self) -> None:
        cond = self._cond
        queue = self._queue
        while True:
            with cond:
                cond.wait_for(lambda: self._wake or self._reopen_pending or self._closed)
                cond.wait_for(
                    lambda: self._full or self._urgent or self._closed,
                    timeout=self._flush_interval,
                )
                # Cleared before the queue is emptied: a line queued after that wakes us again.
                self._wake = self._full = self._urgent = False
                reopen, self._reopen_pending = self._reopen_pending, False
                closing = self._closed
            popleft = queue.popleft
            batch: list[str] = []
            while queue:  # until empty: a line queued after this finds it empty and wakes us
                batch += [popleft() for _ in range(len(queue))]
            taken = sum(map(len, batch)) + len(batch)
            self._taken += taken
            if reopen:
                self._reopen_target()
            if batch:
                self._emit(batch)
            with cond:
                self._done += taken
                cond.notify_all()
            if closing:
                return

    def _fail(self, error: Exception, lines: int) -> None:
        """Record a failed write of ``lines`` lines (writer thread)."""
        self._failed += lines
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
        self._refused = self._failed = 0
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
