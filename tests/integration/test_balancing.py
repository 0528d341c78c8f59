"""Balancing algorithms end to end: which server real requests reach."""

from __future__ import annotations

import collections
import time

import pytest

from tests.integration.test_forwarding import farm
from tests.support.proxy import Reader, connect, get

pytestmark = pytest.mark.integration


def served_by(port: int, paths: list[str], headers: str = "Host: t\r\n") -> list[str]:
    return [get(port, p, headers).header("x-backend") for p in paths]


def test_uri_hash_keeps_a_path_on_one_server(pool, weir):
    _, body = farm(pool, n=3, balance="uri")
    proxy = weir(body)
    paths = [f"/obj{i}?v={j}" for i in range(12) for j in range(2)]
    seen = served_by(proxy.port, paths)
    by_path: dict[str, set[str]] = collections.defaultdict(set)
    for path, server in zip(paths, seen, strict=True):
        by_path[path.split("?")[0]].add(server)
    assert all(len(servers) == 1 for servers in by_path.values())  # query string ignored
    assert len(set(seen)) > 1


def test_header_hash_and_fallback_to_round_robin(pool, weir):
    _, body = farm(pool, n=3, balance="hdr:X-User", backend_extra='hash_type = "consistent"')
    proxy = weir(body)
    for user in ("alice", "bob", "carol"):
        assert len(set(served_by(proxy.port, ["/"] * 5, f"Host: t\r\nX-User: {user}\r\n"))) == 1
    assert len(set(served_by(proxy.port, ["/"] * 6))) == 3  # no header: round robin


def test_url_param_hash(pool, weir):
    _, body = farm(pool, n=3, balance="url_param:sid")
    proxy = weir(body)
    for sid in ("a1", "b2", "c3", "d4"):
        assert len(set(served_by(proxy.port, [f"/p?x=1&sid={sid}"] * 4))) == 1


def test_source_hash_sends_one_client_to_one_server(pool, weir):
    _, body = farm(pool, n=3, balance="source")
    proxy = weir(body)
    assert len(set(served_by(proxy.port, [f"/s{i}" for i in range(10)]))) == 1


def test_first_fills_servers_in_order(pool, weir):
    backends, body = farm(pool, n=2, balance="first")
    proxy = weir(body)
    assert set(served_by(proxy.port, [f"/f{i}" for i in range(5)])) == {"web1"}


def test_leastconn_avoids_the_busy_server(pool, weir):
    backends, body = farm(pool, n=2, balance="leastconn")
    proxy = weir(body)
    with connect(proxy.port) as slow:
        slow.sendall(b"GET /slow/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        busy = None
        deadline = time.monotonic() + 10
        while busy is None and time.monotonic() < deadline:  # until it reached a server
            for b in backends:
                if any(r.path == "/slow/1500" for r in b.requests):
                    busy = b.name
            time.sleep(0.01)
        assert busy is not None
        others = served_by(proxy.port, [f"/l{i}" for i in range(6)])
        assert busy not in others
        assert Reader(slow).response().status == 200


def test_weights_shape_the_round_robin(pool, weir):
    backends = [pool.start("heavy"), pool.start("light")]
    body = (
        '[global]\nlog = "{tmp}/weir.log"\n'
        '[frontends.www]\nbind = ["127.0.0.1:{port}"]\ndefault_backend = "app"\n'
        "[backends.app]\n"
        f'[[backends.app.servers]]\nname = "heavy"\naddress = "{backends[0].address}"\nweight = 3\n'
        f'[[backends.app.servers]]\nname = "light"\naddress = "{backends[1].address}"\nweight = 1\n'
    )
    proxy = weir(body)
    counts = collections.Counter(served_by(proxy.port, [f"/w{i}" for i in range(40)]))
    assert counts == {"heavy": 30, "light": 10}
