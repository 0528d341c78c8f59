"""Forwarding through a real ``weir run``: keep-alive, pipelining, bodies, framing, headers."""

from __future__ import annotations

import hashlib
import socket

import pytest

from tests.support.proxy import Reader, connect, get, servers_toml

pytestmark = pytest.mark.integration


def farm(pool, n=2, balance="roundrobin", extra="", backend_extra=""):
    backends = [pool.start(f"web{i + 1}") for i in range(n)]
    body = (
        '[global]\nlog = "{tmp}/weir.log"\nruntime_socket = "{tmp}/weir.sock"\n'
        '[frontends.www]\nbind = ["127.0.0.1:{port}"]\ndefault_backend = "app"\n'
        f"{extra}\n"
        f'[backends.app]\nbalance = "{balance}"\n{backend_extra}\n'
        + servers_toml("app", [(b.name, b.address) for b in backends])
    )
    return backends, body


def test_round_robin_over_two_servers(pool, weir):
    backends, body = farm(pool)
    proxy = weir(body)
    seen = [get(proxy.port, f"/r{i}").header("x-backend") for i in range(10)]
    assert seen == ["web1", "web2"] * 5
    lines = proxy.log_lines(wait_for=10)
    assert len(lines) == 10
    assert all(" 200 " in ln and "----" in ln for ln in lines)


def test_keep_alive_and_server_connection_reuse(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        for i in range(20):
            s.sendall(f"GET /k{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            resp = r.response()
            assert resp.status == 200
            assert resp.body == f"web1 /k{i}\n".encode()
            assert resp.header("connection") is None
    # http_reuse safe: the first request opened a connection, the rest reused it.
    conn_ids = {seen.conn_id for seen in backends[0].requests}
    assert len(conn_ids) == 1


def test_pipelined_requests_are_answered_in_order(pool, weir):
    backends, body = farm(pool)
    proxy = weir(body)
    with connect(proxy.port) as s:
        paths = ["/slow/150", "/p1", "/slow/50", "/p3", "/chunked/3", "/p5"]
        s.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths))
        r = Reader(s)
        bodies = [r.response().body for _ in paths]
    assert bodies[1].endswith(b" /p1\n")
    assert bodies[0].endswith(b" /slow/150\n")
    assert bodies[2].endswith(b" /slow/50\n")
    assert bodies[3].endswith(b" /p3\n")
    assert bodies[4].count(b"\n") == 3
    assert bodies[5].endswith(b" /p5\n")


def test_chunked_response_is_forwarded_chunked(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    resp = get(proxy.port, "/chunked/50")
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.body == b"".join(b"web1-%d\n" % i for i in range(50))


def test_close_delimited_response_is_rechunked_for_http11_clients(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        s.sendall(b"GET /eof HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = r.response()
        assert resp.header("transfer-encoding") == "chunked"
        assert resp.body == b"web1 until close\n"
        s.sendall(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")  # the client connection lives on
        assert r.response().body == b"web1 /again\n"


def test_http10_client_gets_close_delimited_body(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        s.sendall(b"GET /chunked/2 HTTP/1.0\r\n\r\n")
        raw = Reader(s).read_until_close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower()
    assert payload == b"web1-0\nweb1-1\n"


# llhttp honours "Proxy-Connection: keep-alive" too: the request is still HTTP/1.0
# (no Host needed), answered and logged as such, and the hop-by-hop field dropped.
@pytest.mark.parametrize("field", ["Connection", "Proxy-Connection"])
def test_http10_keep_alive(pool, weir, field):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        for i in range(3):
            s.sendall(b"GET /ka%d HTTP/1.0\r\n%s: keep-alive\r\n\r\n" % (i, field.encode()))
            resp = r.response()
            assert resp.header("connection").lower() == "keep-alive"
            assert resp.body == b"web1 /ka%d\n" % i
    lines = proxy.log_lines(wait_for=3)
    assert [ln.endswith(f'"GET /ka{i} HTTP/1.0"') for i, ln in enumerate(lines)] == [True] * 3
    assert all(seen.header(field) is None for seen in backends[0].requests)


@pytest.mark.parametrize("path,status", [("/status/204", 204), ("/status/304", 304)])
def test_bodiless_statuses(pool, weir, path, status):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert r.response().status == status
        s.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        assert r.response().body == b"web1 /after\n"


def test_head_response_has_no_body_but_keeps_length(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        s.sendall(b"HEAD /big/1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = r.response(head_request=True)
        assert resp.status == 200
        assert resp.header("content-length") == "1000"
        s.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        assert r.response().body == b"web1 /after\n"


def test_content_length_upload_is_streamed_intact(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    payload = bytes(range(256)) * 4096  # 1 MiB
    with connect(proxy.port) as s:
        s.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(payload))
        s.sendall(payload)
        resp = Reader(s).response()
    assert resp.body == b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())


def test_chunked_upload_is_streamed_intact(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    pieces = [bytes([i % 256]) * (1000 + i) for i in range(200)]
    with connect(proxy.port) as s:
        s.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for p in pieces:
            s.sendall(b"%x\r\n%b\r\n" % (len(p), p))
        s.sendall(b"0\r\n\r\n")
        resp = Reader(s).response()
    whole = b"".join(pieces)
    assert resp.body == b"%d %s\n" % (len(whole), hashlib.sha256(whole).hexdigest().encode())
    seen = backends[0].requests[-1]
    assert seen.header("transfer-encoding") == "chunked"


def test_expect_100_continue(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        r = Reader(s)
        s.sendall(
            b"POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = r.response()
        assert interim.status == 100
        s.sendall(b"hello")
        final = r.response()
        assert final.status == 200
        assert final.body.startswith(b"5 ")


def test_hop_by_hop_headers_removed_and_forwarded_for_added(pool, weir):
    backends, body = farm(pool, n=1, extra="forwardfor = true")
    proxy = weir(body)
    resp = get(
        proxy.port,
        "/headers",
        headers="Host: example\r\nKeep-Alive: 300\r\nX-Secret: 1\r\nTE: trailers\r\n"
        "Proxy-Connection: x\r\nX-Kept: yes\r\n",
    )
    text = resp.body.decode()
    lowered = text.lower()
    assert "keep-alive:" not in lowered
    assert "proxy-connection" not in lowered
    assert "\nte:" not in lowered
    assert "connection:" not in lowered
    assert "X-Kept: yes" in text
    assert "X-Forwarded-For: 127.0.0.1" in text
    assert "X-Forwarded-Proto: http" in text
    assert "Host: example" in text


def test_headers_named_in_connection_are_removed(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        s.sendall(
            b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n"
        )
        resp = Reader(s).response()
    assert b"X-Hop" not in resp.body


def test_a_single_header_named_in_connection_is_removed(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n")
        resp = Reader(s).response()
    assert b"X-Hop" not in resp.body


def test_websocket_upgrade_becomes_a_tunnel(pool, weir):
    backends, body = farm(pool, n=1)
    proxy = weir(body)
    with connect(proxy.port) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        r = Reader(s)
        resp = r.response()
        assert resp.status == 101
        assert resp.header("upgrade") == "websocket"
        for i in range(5):
            msg = b"frame-%d" % i
            s.sendall(msg)
            got = r.buf
            while len(got) < len(msg):
                got += s.recv(100)
            r.buf = b""
            assert got == msg
        s.shutdown(socket.SHUT_WR)
    lines = proxy.log_lines(wait_for=1)
    assert " 101 " in lines[0]


def test_idle_tunnel_is_closed_after_the_tunnel_timeout(pool, weir):
    backends, body = farm(pool, n=1)
    tunnel = '[backends.app.timeouts]\ntunnel = "300ms"\n'
    body = body.replace("[backends.app]", tunnel + "[backends.app]")
    proxy = weir(body)
    with connect(proxy.port) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        r = Reader(s)
        assert r.response().status == 101
        s.sendall(b"ping")
        got = r.buf
        while len(got) < 4:
            got += s.recv(10)
        assert got == b"ping"
        r.buf = b""
        assert r.closed()  # nothing more is sent: the proxy ends the idle tunnel
    line = proxy.log_lines(wait_for=1)[0]
    assert " 101 " in line
    assert " cD-- " in line  # ended by the tunnel timeout, on neither side's initiative
