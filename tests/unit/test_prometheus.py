"""The Prometheus exposition (``runtime/prometheus.py``) and its HTTP answers, without sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.checks.state import CheckResult, Event
from appliance.config import load_text
from appliance.proxy.proxy import Proxy
from appliance.runtime.metrics import answer
from appliance.runtime.prometheus import (
    BACKEND,
    CONTENT_TYPE,
    FRONTEND,
    PROCESS,
    SERVER,
    escape_help,
    escape_label,
    labels,
    render,
)
from tests.support.metrics import parse, parse_labels, value

pytestmark = pytest.mark.unit

CONFIG = """
[global]
log = "none"
runtime_socket = "{tmp}/weir.sock"
[frontends.www]
bind = ["127.0.0.1:1"]
default_backend = "app"
[backends.app]
[backends.app.check]
type = "tcp"
[[backends.app.servers]]
name = "web1"
address = "127.0.0.1:9001"
[[backends.app.servers]]
name = "web2"
address = "127.0.0.1:9002"
weight = 3
maxconn = 10
[backends.spare]
[[backends.spare.servers]]
name = "s1"
address = "127.0.0.1:9003"
check = false
"""
RESPONSES = (
    "weir_frontend_http_responses_total",
    "weir_backend_http_responses_total",
    "weir_server_http_responses_total",
)


@pytest.fixture
def proxy(tmp_path):
    loop = asyncio.new_event_loop()
    p = Proxy(load_text(CONFIG.replace("{tmp}", str(tmp_path)), for_run=True), loop)
    yield p
    p.log.close()
    loop.close()


def server(proxy, backend, name):
    return next(s for s in proxy.backends[backend].servers if s.name == name)


def scrape(proxy):
    return parse(render(proxy))


# -- the format ----------------------------------------------------------------------------


def test_label_values_escape_backslash_quote_and_newline() -> None:
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert labels(backend="x", server='we"b') == '{backend="x",server="we\\"b"}'
    assert parse_labels(labels(a='1\\"\n', b="")[1:-1]) == frozenset({("a", '1\\"\n'), ("b", "")})


def test_help_text_escapes_backslash_and_newline_but_not_quotes() -> None:
    assert escape_help('C:\\ "x"\ny') == 'C:\\\\ "x"\\ny'


def test_every_family_has_help_and_type_before_its_samples(proxy) -> None:
    text = render(proxy)
    families = parse(text)  # asserts HELP, TYPE, then samples of that name only
    for family in families.values():
        assert family.help and family.type
        assert family.name.endswith("_total") == (family.type == "counter"), family.name
    assert text.count("# TYPE weir_server_up gauge\n") == 1


def test_every_metric_is_present_for_a_small_farm(proxy) -> None:
    families = scrape(proxy)
    expected = {m.name for m in (*PROCESS, *FRONTEND, *BACKEND, *SERVER)} | set(RESPONSES)
    assert set(families) == expected
    for m in PROCESS:
        assert list(families[m.name].samples) == [frozenset()]
    for m in FRONTEND:
        assert list(families[m.name].samples) == [frozenset({("frontend", "www")})]
    for m in BACKEND:
        assert {dict(k)["backend"] for k in families[m.name].samples} == {"app", "spare"}
    everyone = {("app", "web1"), ("app", "web2"), ("spare", "s1")}
    for m in SERVER:
        got = {(dict(k)["backend"], dict(k)["server"]) for k in families[m.name].samples}
        if m.name == "weir_server_limit_sessions":
            assert got == {("app", "web2")}  # the others have no maxconn
        elif m.name == "weir_server_check_duration_seconds":
            assert got == set()  # no check has run yet
        else:
            assert got == everyone, m.name
    codes = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
    for name in RESPONSES:
        assert {dict(k)["code"] for k in families[name].samples} == codes
    assert len(families["weir_server_http_responses_total"].samples) == 3 * 6


def test_values_are_the_counters(proxy) -> None:
    fe = proxy.frontends["www"]
    app = proxy.backends["app"]
    web2 = server(proxy, "app", "web2")
    proxy.cur_conns = fe.cur_conns = 2
    proxy.total_requests = fe.counters.req_tot = 7
    fe.total_conns = fe.counters.stot = 5
    fe.counters.bin, fe.counters.bout = 700, 9000
    fe.counters.hrsp[2], fe.counters.hrsp[5], fe.counters.hrsp[0] = 6, 1, 0
    app.cur_conns = web2.cur_conns = 1
    app.counters.stot = web2.counters.stot = 7
    app.counters.econ, app.counters.wretr, app.counters.wredis = 1, 2, 1
    web2.counters.hrsp[2] = 6
    app.queue.extend(
        [SimpleNamespace(queue_target=web2), SimpleNamespace(queue_target=None)]  # type: ignore[list-item]
    )
    app.counters.qmax = 4
    f = scrape(proxy)
    assert value(f, "weir_process_current_connections") == 2
    assert value(f, "weir_process_requests_total") == 7
    assert value(f, "weir_process_connections_total") == 5
    assert value(f, "weir_process_max_connections") == 20000
    assert value(f, "weir_frontend_current_sessions", frontend="www") == 2
    assert value(f, "weir_frontend_sessions_total", frontend="www") == 5
    assert value(f, "weir_frontend_bytes_in_total", frontend="www") == 700
    assert value(f, "weir_frontend_bytes_out_total", frontend="www") == 9000
    assert value(f, "weir_frontend_http_responses_total", frontend="www", code="2xx") == 6
    assert value(f, "weir_frontend_http_responses_total", frontend="www", code="5xx") == 1
    assert value(f, "weir_backend_up", backend="app") == 1
    assert value(f, "weir_backend_current_sessions", backend="app") == 1
    assert value(f, "weir_backend_current_queue", backend="app") == 2
    assert value(f, "weir_backend_max_queue", backend="app") == 4
    assert value(f, "weir_backend_connection_errors_total", backend="app") == 1
    assert value(f, "weir_backend_retry_warnings_total", backend="app") == 2
    assert value(f, "weir_backend_redispatch_warnings_total", backend="app") == 1
    assert value(f, "weir_backend_weight", backend="app") == 4
    assert value(f, "weir_backend_active_servers", backend="app") == 2
    s2 = {"backend": "app", "server": "web2"}
    assert value(f, "weir_server_current_sessions", **s2) == 1
    assert value(f, "weir_server_sessions_total", **s2) == 7
    assert value(f, "weir_server_current_queue", **s2) == 1
    assert value(f, "weir_server_current_queue", backend="app", server="web1") == 0
    assert value(f, "weir_server_weight", **s2) == 3
    assert value(f, "weir_server_limit_sessions", **s2) == 10
    assert value(f, "weir_server_http_responses_total", code="2xx", **s2) == 6
    app.queue.clear()


def test_server_up_follows_the_state(proxy) -> None:
    web1 = server(proxy, "app", "web1")
    s1 = {"backend": "app", "server": "web1"}
    assert value(scrape(proxy), "weir_server_up", **s1) == 1
    proxy.server_event(web1, Event.SET_DRAIN)
    assert value(scrape(proxy), "weir_server_up", **s1) == 1  # draining still serves
    proxy.server_event(web1, Event.SET_MAINT)
    assert value(scrape(proxy), "weir_server_up", **s1) == 0
    proxy.server_event(web1, Event.SET_READY)
    down = CheckResult(False, "Layer4 connection problem", duration=0.25)
    for _ in range(3):
        proxy.check_done(web1, down)
    f = scrape(proxy)
    assert value(f, "weir_server_up", **s1) == 0
    assert value(f, "weir_server_check_failures_total", **s1) == 3
    assert value(f, "weir_server_check_up_down_total", **s1) == 1
    assert value(f, "weir_server_check_duration_seconds", **s1) == 0.25
    assert value(f, "weir_server_downtime_seconds_total", **s1) >= 0
    assert value(f, "weir_backend_up", backend="app") == 1  # web2 is left


def test_backend_without_servers_is_down(proxy) -> None:
    s1 = server(proxy, "spare", "s1")
    assert value(scrape(proxy), "weir_server_up", backend="spare", server="s1") == 1  # no check
    proxy.server_event(s1, Event.SET_MAINT)
    f = scrape(proxy)
    assert value(f, "weir_backend_up", backend="spare") == 0
    assert value(f, "weir_backend_active_servers", backend="spare") == 0


# -- the HTTP answers ----------------------------------------------------------------------


def body() -> str:
    return "weir_x 1\n"


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, payload


def test_get_metrics_answers_the_exposition() -> None:
    status, headers, payload = split(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", body))
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == CONTENT_TYPE
    assert headers["Content-Length"] == str(len(payload)) and payload == b"weir_x 1\n"
    assert headers["Connection"] == "close"
    assert split(answer(b"GET /metrics?name[]=x HTTP/1.0", body))[0] == "HTTP/1.1 200 OK"


def test_head_answers_the_headers_only() -> None:
    status, headers, payload = split(answer(b"HEAD /metrics HTTP/1.1", body))
    assert status == "HTTP/1.1 200 OK" and headers["Content-Length"] == "9" and payload == b""


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1", "404 Not Found"),
        (b"GET /metricsx HTTP/1.1", "404 Not Found"),
        (b"POST /metrics HTTP/1.1", "405 Method Not Allowed"),
        (b"DELETE /x HTTP/1.1", "405 Method Not Allowed"),
        (b"GET /metrics", "400 Bad Request"),
        (b"GET /metrics HTTP/2.0", "400 Bad Request"),
        (b"get /metrics HTTP/1.1", "400 Bad Request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400 Bad Request"),
        (b"", "400 Bad Request"),
        (b"GET  /metrics HTTP/1.1", "400 Bad Request"),
    ],
)
def test_other_requests_get_an_error_status(head: bytes, status: str) -> None:
    line, headers, _ = split(answer(head, body))
    assert line == f"HTTP/1.1 {status}"
    assert headers["Connection"] == "close"
    if status.startswith("405"):
        assert headers["Allow"] == "GET, HEAD"


def test_the_documentation_lists_every_metric() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs/metrics.md").read_text()
    for name in [m.name for m in (*PROCESS, *FRONTEND, *BACKEND, *SERVER)] + list(RESPONSES):
        assert f"| `{name}` |" in doc, name
