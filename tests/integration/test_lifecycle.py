"""Client-side timeouts (slowloris, idle connections), graceful stop, and a large
upload streamed through the proxy with flat memory."""

from __future__ import annotations

import contextlib
import hashlib
import select
import signal
import socket
import threading

import pytest

from tests.support.farm import farm_config, parse, wait_for
from tests.support.proxy import Reader, connect

pytestmark = pytest.mark.integration


def closed_by_peer(s: socket.socket) -> bytes:
    """Read until the proxy closes (a reset counts as closed); return what arrived."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_slowloris_head_gets_408(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], timeouts='http_request = "300ms"'))
    head = b"GET /slowloris HTTP/1.1\r\nHost: t\r\nX-Drip: " + b"d" * 200 + b"\r\n\r\n"
    with connect(proxy.port) as s:
        for byte in head:  # one byte per 100 ms until the proxy answers
            readable, _, _ = select.select([s], [], [], 0.1)
            if readable:
                break
            s.sendall(bytes([byte]))
        else:
            pytest.fail("the whole head was sent without the proxy answering")
        r = Reader(s)
        assert r.response().status == 408
        assert r.closed()
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.status, line.term, line.server) == (408, "cR--", "<NOSRV>")
    assert web1.requests == []


def test_connection_sending_nothing_is_closed_silently(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], timeouts='http_request = "300ms"'))
    with connect(proxy.port) as s:
        assert closed_by_peer(s) == b""
    assert web1.connections == 0
    assert proxy.log_lines() == []


def test_idle_keep_alive_connection_is_closed(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], timeouts='http_keep_alive = "300ms"'))
    with connect(proxy.port) as s:
        s.sendall(b"GET /once HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        resp = r.response()
        assert resp.status == 200
        assert resp.header("connection") is None  # kept alive...
        assert r.closed()  # ...until it was idle for http_keep_alive
    lines = [parse(ln) for ln in proxy.log_lines(wait_for=1)]
    assert [(ln.status, ln.term) for ln in lines] == [(200, "----")]


def test_graceful_stop_finishes_in_flight_requests(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], global_='grace = "10s"'))
    with connect(proxy.port) as s:
        s.sendall(b"GET /slow/800 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_for(lambda: len(web1.requests) == 1)
        proxy.signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                connect(proxy.port, timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        assert wait_for(refused), "still accepting connections after SIGTERM"
        r = Reader(s)
        resp = r.response()
        assert resp.status == 200
        assert resp.body == b"web1 /slow/800\n"
        assert r.closed()
    assert proxy.proc.wait(15) == 0
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.status, line.term, line.server) == (200, "----", "web1")


def test_stop_after_grace_cuts_requests_still_in_flight(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], global_='grace = "200ms"'))
    with connect(proxy.port) as s:
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_for(lambda: len(web1.requests) == 1)
        proxy.signal(signal.SIGTERM)
        assert proxy.proc.wait(15) == 0
        assert closed_by_peer(s) == b""
    assert wait_for(lambda: web1.open_conns == 0)
    lines = [parse(ln) for ln in proxy.log_lines(wait_for=1)]
    assert len(lines) == 1
    assert lines[0].request == "GET /hang HTTP/1.1"
    assert lines[0].term[1] == "H"  # cut while waiting for the response head


GIB = 1 << 30
MIB = 1 << 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_one_gib_upload_streams_with_flat_memory(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)]))
    pid = proxy.proc.pid
    size = GIB
    block = bytes(range(256)) * (MIB // 256)
    expected = hashlib.sha256()
    for _ in range(size // MIB):
        expected.update(block)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(rss_kib(pid))

    before = rss_kib(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with connect(proxy.port, timeout=30) as s:
            s.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // MIB):
                s.sendall(block)
            resp = Reader(s).response()
    finally:
        done.set()
        sampler.join(5)
    assert resp.status == 200
    assert resp.body == b"%d %s\n" % (size, expected.hexdigest().encode())
    assert web1.requests[0].body_len == size
    assert samples
    assert max(samples) - before < 64 * 1024, f"RSS grew from {before} KiB to {max(samples)} KiB"


def test_client_closing_before_a_complete_head(pool, weir):
    """Documented in docs/logging.md: ``CR--``, status 400, request ``<BADREQ>``."""
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)]))
    with connect(proxy.port) as s:
        s.sendall(b"GET /partial HTTP/1.1\r\nHost: t\r\n")
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.term, line.status, line.server) == ("CR--", 400, "<NOSRV>")
    assert line.request == "<BADREQ>"
    assert web1.requests == []
