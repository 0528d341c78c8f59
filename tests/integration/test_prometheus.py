"""The Prometheus listener (``global.metrics_bind``) of a running ``weir run``."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.integration.test_runtime_api import ask
from tests.support.farm import farm_config
from tests.support.metrics import Family, parse, value
from tests.support.proxy import WEIR, Reader, Response, connect, free_port, get

pytestmark = pytest.mark.integration

WEB1 = {"backend": "app", "server": "web1"}
WEB2 = {"backend": "app", "server": "web2"}


def request(port: int, raw: bytes) -> Response:
    with connect(port) as s:
        s.sendall(raw)
        return Reader(s).response()


def scrape(port: int) -> dict[str, Family]:
    resp = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 200, resp
    assert resp.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return parse(resp.body.decode())


def scrape_until(port: int, name: str, want: float, **labels: str) -> dict[str, Family]:
    """Scrape until ``name{labels}`` is ``want`` (a request is counted when it is logged)."""
    deadline = time.monotonic() + 5
    while True:
        families = scrape(port)
        if value(families, name, **labels) == want or time.monotonic() > deadline:
            return families
        time.sleep(0.05)


@pytest.fixture
def farm(pool, weir):
    backends = [pool.start("web1"), pool.start("web2")]
    metrics_port = free_port()
    body = farm_config(
        [(b.name, b.address) for b in backends],
        global_=f'metrics_bind = "127.0.0.1:{metrics_port}"',
    )
    return weir(body), metrics_port


def test_scrape_reports_traffic_and_server_states(farm):
    proxy, metrics = farm
    for i in range(6):
        assert get(proxy.port, f"/r{i}").status == 200
    f = scrape_until(metrics, "weir_process_requests_total", 6)
    assert value(f, "weir_process_requests_total") == 6
    assert value(f, "weir_frontend_http_requests_total", frontend="www") == 6
    # Connections: the six requests and the probe that waited for the proxy to listen.
    assert value(f, "weir_frontend_sessions_total", frontend="www") == 7
    assert value(f, "weir_frontend_http_responses_total", frontend="www", code="2xx") == 6
    assert value(f, "weir_frontend_bytes_out_total", frontend="www") > 0
    assert value(f, "weir_backend_sessions_total", backend="app") == 6
    assert value(f, "weir_server_sessions_total", **WEB1) == 3
    assert value(f, "weir_server_sessions_total", **WEB2) == 3
    assert value(f, "weir_server_current_sessions", **WEB1) == 0
    assert value(f, "weir_server_http_responses_total", code="2xx", **WEB2) == 3
    assert value(f, "weir_server_up", **WEB1) == value(f, "weir_server_up", **WEB2) == 1
    assert value(f, "weir_backend_up", backend="app") == 1

    assert ask(proxy, "set server app/web1 state maint") == "\n"
    f = scrape(metrics)
    assert value(f, "weir_server_up", **WEB1) == 0
    assert value(f, "weir_server_up", **WEB2) == 1
    assert value(f, "weir_backend_up", backend="app") == 1
    assert value(f, "weir_backend_active_servers", backend="app") == 1
    assert {get(proxy.port, f"/m{i}").header("x-backend") for i in range(4)} == {"web2"}
    f = scrape_until(metrics, "weir_server_sessions_total", 7, **WEB2)
    assert value(f, "weir_server_sessions_total", **WEB2) == 7
    assert value(f, "weir_server_sessions_total", **WEB1) == 3

    assert ask(proxy, "set server app/web2 state maint") == "\n"
    assert value(scrape(metrics), "weir_backend_up", backend="app") == 0


def test_other_paths_methods_and_head(farm):
    _, metrics = farm
    assert request(metrics, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 404
    post = request(metrics, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert post.status == 405 and post.header("allow") == "GET, HEAD"
    with connect(metrics) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\n\r\n")
        head = Reader(s).response(head_request=True)
        assert head.status == 200 and int(head.header("content-length")) > 1000
        assert Reader(s).closed()


def test_garbage_slow_and_oversized_clients_do_not_disturb_proxying(farm):
    proxy, metrics = farm
    idle = connect(metrics)  # sends nothing: cut after the head timeout
    slow = connect(metrics)
    slow.sendall(b"GET /metr")  # half a request line, then silence
    try:
        garbage = request(metrics, b"\x16\x03\x01\x00\xff" + bytes(range(256)) + b"\r\n\r\n")
        assert garbage.status == 400
        huge = request(metrics, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000)
        assert huge.status == 431
        assert get(proxy.port, "/during").status == 200
        assert "weir_server_up" in scrape(metrics)  # other scrapers are served meanwhile
        for sock in (idle, slow):
            sock.settimeout(10)
            started = time.monotonic()
            assert Reader(sock).closed()
            assert time.monotonic() - started < 9
    finally:
        idle.close()
        slow.close()
    assert get(proxy.port, "/after").status == 200
    assert value(scrape(metrics), "weir_frontend_request_errors_total", frontend="www") == 0


def test_stop_closes_the_listener(farm):
    proxy, metrics = farm
    assert scrape(metrics)
    assert proxy.stop() == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", metrics), timeout=1):
        pass


def test_a_taken_metrics_port_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "w.toml"
        cfg.write_text(
            farm_config([("a", "127.0.0.1:9")], global_=f'metrics_bind = "127.0.0.1:{port}"')
            .replace("{tmp}", str(tmp_path))
            .replace("{port}", str(free_port()))
        )
        out = subprocess.run(
            [*WEIR, "run", "-c", str(cfg)], capture_output=True, text=True, timeout=20
        )
    assert out.returncode == 2
    assert out.stderr == (
        f"weir: cannot bind the metrics listener (global.metrics_bind) to 127.0.0.1:{port}: "
        "Address already in use\n"
    )
