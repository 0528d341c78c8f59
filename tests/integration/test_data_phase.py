"""Ends of a request during the data phase and while connecting: CD, cD, sC, sD."""

from __future__ import annotations

import socket

import pytest

from tests.support.farm import farm_config, parse, wait_for
from tests.support.proxy import Reader, connect

pytestmark = pytest.mark.integration

BIG = 64 * 1024 * 1024  # far more than the socket buffers hold


def test_client_closing_during_the_body_is_logged_cd(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)]))
    with connect(proxy.port) as s:
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: t\r\n\r\n" % BIG)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.status, line.term, line.server) == (200, "CD--", "web1")
    assert wait_for(lambda: web1.open_conns == 0)  # the server transfer was cut too


def test_client_that_stops_reading_times_out_cd(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], timeouts='client = "300ms"'))
    with connect(proxy.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: t\r\n\r\n" % BIG)
        lines = proxy.log_lines(wait_for=1, timeout=15)  # nothing is read meanwhile
        line = parse(lines[0])
        assert (line.status, line.term) == (200, "cD--")
    assert wait_for(lambda: web1.open_conns == 0)


def test_server_stalling_in_the_body_is_logged_sd(pool, weir):
    # A server that sends its head and part of the body, then nothing.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    proxy = weir(farm_config([("stall", address)], timeouts='server = "300ms"'))
    with listener, connect(proxy.port) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            r = Reader(s)
            with pytest.raises(ConnectionError):
                r.response()  # cut before the 100 announced bytes
            line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.status, line.term, line.server) == (200, "sD--", "stall")


def test_connect_timeout_is_logged_sc(weir):
    # A listener whose accept queue is full drops further SYNs: connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    proxy = weir(
        farm_config(
            [("deaf", f"127.0.0.1:{port}")],
            defaults="retries = 1",
            timeouts='connect = "200ms"',
        )
    )
    try:
        with connect(proxy.port) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response().status == 503
        line = parse(proxy.log_lines(wait_for=1)[0])
        assert (line.status, line.term, line.server, line.retries) == (503, "sC--", "deaf", "1")
        assert line.tc == -1
    finally:
        for f in fillers:
            f.close()
        listener.close()
