"""Helper process for bench.memory: hold COUNT idle keep-alive client connections to a proxy.

Usage: ``python bench/idle_clients.py HOST PORT COUNT``. Raises its open-files limit to the
hard limit, opens COUNT TCP connections (a bounded number in progress at a time), makes one
complete ``GET /`` on each (status 200, body read to its Content-Length) and keeps them all
open and idle. Talks to its parent with one line at a time::

    -> READY ok=N failed=M [first error: ...]   when every connection has finished its request
    <- check  -> OPEN N                         connections the proxy has not closed meanwhile
    <- close (or end of input)                  close everything and exit

Everything is bounded: connections that have not finished after DEADLINE seconds count as
failed.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
IN_PROGRESS = 200  # connections connecting or waiting for their response at any moment
DEADLINE = 60.0  # seconds to get every connection through its request


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def response_complete(buf: bytes) -> bool:
    """Whether ``buf`` holds a whole 200 response; ValueError if it is not a 200 with a length."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    status, *headers = buf[:head_end].decode("latin-1").split("\r\n")
    if not status.startswith("HTTP/1.1 200"):
        raise ValueError(f"unexpected status line {status!r}")
    for header in headers:
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            return len(buf) - head_end - 4 >= int(value)
    raise ValueError("response without Content-Length")


def open_idle(host: str, port: int, count: int) -> tuple[list[socket.socket], str]:
    """Open ``count`` connections and make one request on each; returns the idle ones and the
    first error met (empty if none)."""
    idle: list[socket.socket] = []
    first_error = ""
    to_open, in_progress = count, 0
    deadline = time.monotonic() + DEADLINE
    with selectors.DefaultSelector() as sel:
        while (to_open or in_progress) and time.monotonic() < deadline:
            while to_open and in_progress < IN_PROGRESS:
                to_open -= 1
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as exc:
                    first_error = first_error or f"socket(): {exc}"
                    continue
                sock.setblocking(False)
                err = sock.connect_ex((host, port))
                if err not in (0, errno.EINPROGRESS):
                    first_error = first_error or f"connect: {os.strerror(err)}"
                    sock.close()
                    continue
                sel.register(sock, selectors.EVENT_WRITE, bytearray())
                in_progress += 1
            for key, _ in sel.select(timeout=0.5):
                sock, buf = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    if key.events & selectors.EVENT_WRITE:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, f"connect: {os.strerror(err)}")
                        if sock.send(REQUEST) != len(REQUEST):
                            raise OSError("short send of a tiny request")
                        sel.modify(sock, selectors.EVENT_READ, buf)
                        continue
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed by the proxy before the response ended")
                    buf += chunk
                    if not response_complete(buf):
                        continue
                    sel.unregister(sock)
                    idle.append(sock)
                except (OSError, ValueError) as exc:
                    first_error = first_error or str(exc)
                    sel.unregister(sock)
                    sock.close()
                in_progress -= 1
        for key in list(sel.get_map().values()):
            first_error = first_error or f"no response within {DEADLINE:.0f}s"
            sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
    if len(idle) < count and not first_error:
        first_error = f"not all connections opened within {DEADLINE:.0f}s"
    return idle, first_error


def count_open(socks: list[socket.socket]) -> int:
    """Idle connections still open: an idle socket that is readable got EOF, a reset or
    unsolicited data from the proxy."""
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        return len(socks) - len(sel.select(timeout=0))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 1
    host, port, count = argv[0], int(argv[1]), int(argv[2])
    raise_nofile_limit()
    idle, first_error = open_idle(host, port, count)
    try:
        failed = count - len(idle)
        print(
            f"READY ok={len(idle)} failed={failed}"
            + (f" first error: {first_error}" if failed else ""),
            flush=True,
        )
        for line in sys.stdin:
            if line.strip() != "check":
                break
            print(f"OPEN {count_open(idle)}", flush=True)
    finally:
        for sock in idle:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
