"""Queueing under a server's ``maxconn``, queue timeout and ``maxqueue``, and the
process-wide ``global.maxconn`` that pauses accepting."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.farm import farm_config, parse, wait_for
from tests.support.proxy import Reader, connect

pytestmark = pytest.mark.integration


def send(port: int, path: str) -> socket.socket:
    s = connect(port)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    return s


def test_requests_over_maxconn_wait_in_the_queue(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], server_extra={"web1": {"maxconn": 1}}))
    socks = [send(proxy.port, f"/slow/200?i={i}") for i in range(5)]
    try:
        responses = [Reader(s).response() for s in socks]
    finally:
        for s in socks:
            s.close()
    assert [r.status for r in responses] == [200] * 5
    assert len(web1.requests) == 5
    assert web1.max_inflight == 1
    lines = [parse(ln) for ln in proxy.log_lines(wait_for=5)]
    assert len(lines) == 5
    assert all((ln.status, ln.term, ln.server) == (200, "----", "web1") for ln in lines)
    assert all(ln.tw >= 0 for ln in lines)
    assert any(ln.tw > 0 for ln in lines), [ln.raw for ln in lines]


def test_queue_timeout_gives_503(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(
        farm_config(
            [("web1", web1.address)],
            global_='grace = "200ms"',
            timeouts='queue = "200ms"',
            server_extra={"web1": {"maxconn": 1}},
        )
    )
    with send(proxy.port, "/hang"):
        assert wait_for(lambda: len(web1.requests) == 1)
        with send(proxy.port, "/queued") as waiter:
            r = Reader(waiter)
            assert r.response().status == 503
            assert r.closed()
        line = parse(proxy.log_lines(wait_for=1)[0])
        assert (line.status, line.term, line.backend) == (503, "sQ--", "app")
        assert line.server == "<NOSRV>"  # as documented in docs/logging.md
        assert line.request == "GET /queued HTTP/1.1"
        assert line.tc == -1
    assert [seen.path for seen in web1.requests] == ["/hang"]


@pytest.mark.parametrize("balance", ["roundrobin", "uri"])
def test_maxqueue_refuses_requests_beyond_it(pool, weir, balance):
    """maxconn 1, maxqueue 1: one request served, one waiting, the next one is refused
    at once (well before the 30 s queue timeout) while the waiting one is served later.

    With ``uri`` (a hash) the request is queued for the mapped server itself; with
    ``roundrobin`` it waits for any server, and the farm's only server is web1."""
    web1 = pool.start("web1")
    proxy = weir(
        farm_config(
            [("web1", web1.address)],
            backend=f'balance = "{balance}"',
            global_='grace = "200ms"',
            timeouts='queue = "30s"',
            server_extra={"web1": {"maxconn": 1, "maxqueue": 1}},
        )
    )
    holder = send(proxy.port, "/hang")
    waiter = send(proxy.port, "/waited")
    try:
        assert wait_for(lambda: len(web1.requests) == 1)
        time.sleep(0.3)  # ordering only: let the proxy read and queue the waiter first
        with send(proxy.port, "/third") as third:
            r = Reader(third)
            assert r.response().status == 503  # socket timeout 10 s < queue timeout 30 s
            assert r.closed()
        line = parse(proxy.log_lines(wait_for=1)[0])
        assert (line.status, line.term, line.request) == (503, "sQ--", "GET /third HTTP/1.1")
        holder.close()  # frees the slot: the waiting request is served
        assert Reader(waiter).response().status == 200
    finally:
        holder.close()
        waiter.close()
    assert [seen.path for seen in web1.requests] == ["/hang", "/waited"]


def test_global_maxconn_pauses_accepting(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(
        farm_config(
            [("web1", web1.address)],
            global_="maxconn = 2",
            timeouts='http_keep_alive = "30s"\nhttp_request = "30s"',
        )
    )
    first, second = connect(proxy.port), connect(proxy.port)
    third = None
    try:
        readers = []
        for s in (first, second):  # both accepted: each gets an answer, and stays open
            s.sendall(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
            readers.append(Reader(s))
            assert readers[-1].response().status == 200
        third = connect(proxy.port)  # completes in the kernel's backlog
        third.sendall(b"GET /third HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(1)  # not served while two connections are open
        first.close()
        third.settimeout(10)
        resp = Reader(third).response()
        assert resp.status == 200
        assert resp.body == b"web1 /third\n"
        # The second connection is still served too.
        second.sendall(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
        assert readers[1].response().status == 200
    finally:
        for s in (first, second, third):
            if s is not None:
                s.close()
    assert [seen.path for seen in web1.requests] == ["/held", "/held", "/third", "/again"]
    assert len(proxy.log_lines(wait_for=4)) == 4
