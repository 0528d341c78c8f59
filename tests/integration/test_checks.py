"""Health checks end to end: real test servers, the real ``weir run``.

A server is taken out after ``fall`` failed checks and put back after ``rise``
good ones; while it is out it gets no traffic; the event lines on weir's
stderr say what happened, in HAProxy's words. Waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import re
import socketserver
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.checks.http import http_check
from appliance.checks.state import CheckResult
from appliance.checks.tcp import tcp_check
from appliance.config.model import CheckConfig
from tests.support.farm import farm_config, wait_for
from tests.support.proxy import get

pytestmark = pytest.mark.integration

FAST_CHECK = (
    '[backends.app.check]\ntype = "{type}"\npath = "/health"\ninter = "100ms"\n'
    'fastinter = "50ms"\ndowninter = "100ms"\nrise = 2\nfall = 2\n'
)
TIMEOUTS = 'connect = "200ms"\ncheck = "500ms"'


def checked_farm(servers, *, type: str = "http", backend: str = "", **kw) -> str:
    """A farm whose backend checks its servers fast (rise 2, fall 2)."""
    config = farm_config(servers, backend=backend, timeouts=TIMEOUTS, **kw)
    return config.replace(
        "[[backends.app.servers]]", FAST_CHECK.format(type=type) + "[[backends.app.servers]]", 1
    )


def answering(port: int, n: int = 6) -> set[str]:
    """Names of the servers that answered ``n`` requests."""
    names = set()
    for i in range(n):
        resp = get(port, f"/q{i}")
        assert resp.status == 200, resp
        names.add(resp.header("X-Backend"))
    return names


def events(proxy, pattern: str) -> list[str]:
    return [ln for ln in proxy.stderr().splitlines() if re.search(pattern, ln)]


def served(backend) -> int:
    return sum(1 for seen in backend.requests if seen.path != "/health")


def test_failing_server_goes_down_and_comes_back(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(checked_farm([("web1", web1.address), ("web2", web2.address)]))
    assert wait_for(lambda: web1.requests and web2.requests)  # both are being checked
    assert answering(proxy.port) == {"web1", "web2"}

    web1.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    (down,) = events(proxy, r"Server app/web1 is DOWN")
    assert re.search(
        r'Server app/web1 is DOWN, reason: Layer7 wrong status, code: 500, info: "X", '
        r"check duration: \d+ms\. 1 active and 0 backup servers left\.$",
        down,
    )
    # fall = 2: one intermediate line, then DOWN.
    assert events(proxy, r"Health check for server app/web1 failed, .* status: 1/2 UP\.$")
    before = served(web1)
    assert answering(proxy.port) == {"web2"}
    assert served(web1) == before

    web1.health_status = 200
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP"))
    (up,) = events(proxy, r"Server app/web1 is UP")
    assert re.search(
        r"Server app/web1 is UP, reason: Layer7 check passed, code: 200, check duration: \d+ms\. "
        r"2 active and 0 backup servers online\.$",
        up,
    )
    assert events(proxy, r"Health check for server app/web1 succeeded, .* status: 1/2 DOWN\.$")
    assert answering(proxy.port) == {"web1", "web2"}


def test_rise_successes_are_needed_before_traffic_returns(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(checked_farm([("web1", web1.address), ("web2", web2.address)]))
    web1.health_status = 503
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    web1.health_status = 200
    # The first success only starts the count (DOWN 1/2): still no traffic then.
    assert wait_for(lambda: events(proxy, r"Health check for server app/web1 succeeded"))
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP"))
    lines = proxy.stderr().splitlines()
    first = next(i for i, ln in enumerate(lines) if "app/web1 succeeded" in ln)
    up = next(i for i, ln in enumerate(lines) if "Server app/web1 is UP" in ln)
    assert first < up


def test_stopped_listener_is_a_layer4_failure(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(checked_farm([("web1", web1.address), ("web2", web2.address)], type="tcp"))
    pool.stop(web1)
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    (down,) = events(proxy, r"Server app/web1 is DOWN")
    assert 'reason: Layer4 connection problem, info: "Connection refused"' in down
    assert answering(proxy.port) == {"web2"}
    pool.restart(web1)
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP, reason: Layer4 check passed"))
    assert answering(proxy.port) == {"web1", "web2"}


def test_check_that_never_answers_is_a_layer7_timeout(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(checked_farm([("web1", web1.address), ("web2", web2.address)]))
    web1.health_status = 0  # /health hangs
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    assert "reason: Layer7 timeout" in events(proxy, r"Server app/web1 is DOWN")[0]


def test_all_servers_down_gives_503_and_the_alert(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(checked_farm([("web1", web1.address), ("web2", web2.address)]))
    web1.health_status = web2.health_status = 500
    assert wait_for(lambda: events(proxy, r"backend app has no server available!"))
    assert len(events(proxy, r"is DOWN")) == 2
    assert events(proxy, r"is DOWN.* 0 active and 0 backup servers left\.$")
    assert get(proxy.port, "/x").status == 503
    web2.health_status = 200
    assert wait_for(lambda: events(proxy, r"Server app/web2 is UP"))
    assert answering(proxy.port, 3) == {"web2"}


def test_backup_takes_over_only_when_all_normal_servers_are_down(pool, weir):
    web1, web2, spare = pool.start("web1"), pool.start("web2"), pool.start("spare")
    proxy = weir(
        checked_farm(
            [("web1", web1.address), ("web2", web2.address), ("spare", spare.address)],
            server_extra={"spare": {"backup": True}},
        )
    )
    assert wait_for(lambda: spare.requests)
    assert answering(proxy.port) == {"web1", "web2"}
    web1.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    assert answering(proxy.port) == {"web2"}
    web2.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web2 is DOWN"))
    (down,) = events(proxy, r"Server app/web2 is DOWN")
    assert down.endswith("0 active and 1 backup servers left.")
    assert not events(proxy, r"has no server available")
    assert answering(proxy.port) == {"spare"}
    web1.health_status = 200
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP"))
    assert answering(proxy.port) == {"web1"}


def test_only_the_first_backup_unless_allbackups(pool, weir):
    web1, b1, b2 = pool.start("web1"), pool.start("b1"), pool.start("b2")
    servers = [("web1", web1.address), ("b1", b1.address), ("b2", b2.address)]
    extra = {"b1": {"backup": True}, "b2": {"backup": True}}
    first = weir(checked_farm(servers, server_extra=extra))
    every = weir(checked_farm(servers, server_extra=extra, backend="allbackups = true"))
    web1.health_status = 500
    for proxy in (first, every):
        assert wait_for(lambda p=proxy: events(p, r"Server app/web1 is DOWN"))
    assert answering(first.port) == {"b1"}
    assert answering(every.port) == {"b1", "b2"}


def test_servers_without_checks_are_considered_up(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(
        checked_farm(
            [("web1", web1.address), ("web2", web2.address)],
            server_extra={"web1": {"check": False}},
        )
    )
    web1.health_status = web2.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web2 is DOWN"))
    assert not any(seen.path == "/health" for seen in web1.requests)
    assert answering(proxy.port) == {"web1"}


def test_requests_queued_for_a_server_that_goes_down_are_redispatched(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    servers = [("web1", web1.address), ("web2", web2.address)]
    # uri balancing sends one URI to one server; with maxconn 1 a second request
    # for the same URI waits in the queue for that very server.
    proxy = weir(
        checked_farm(
            servers,
            backend='balance = "uri"',
            server_extra={"web1": {"maxconn": 1}, "web2": {"maxconn": 1}},
        )
    )
    with ThreadPoolExecutor(2) as ex:
        first = ex.submit(get, proxy.port, "/slow/1500")
        assert wait_for(lambda: web1.inflight or web2.inflight)
        owner, other = (web1, web2) if web1.inflight else (web2, web1)
        second = ex.submit(get, proxy.port, "/slow/1500")
        owner.health_status = 500
        assert wait_for(lambda: events(proxy, f"Server app/{owner.name} is DOWN"))
        assert second.result(10).header("X-Backend") == other.name
        assert first.result(10).header("X-Backend") == owner.name  # in flight: finished


def _run_check(address: str, **keys) -> CheckResult:
    host, port = address.rsplit(":", 1)
    config = CheckConfig(**keys)
    return asyncio.run(http_check(host, int(port), config, timeout=1.0))


def test_http_check_outcomes(pool):
    web1 = pool.start("web1")
    assert _run_check(web1.address, path="/health").reason == "Layer7 check passed"
    result = _run_check(web1.address, path="/health", expect_status="204")
    assert (result.ok, result.reason, result.code) == (False, "Layer7 wrong status", 200)
    assert _run_check(web1.address, path="/status/301", expect_status="200,300-302").ok
    assert _run_check(web1.address, path="/", expect_body="web1 /").ok
    result = _run_check(web1.address, path="/", expect_body="nope")
    assert (result.ok, result.reason) == (False, "Layer7 invalid response")
    assert result.info == "HTTP content check did not match"
    assert _run_check(web1.address, path="/garbage").reason == "Layer7 invalid response"
    assert _run_check(web1.address, path="/close").reason == "Layer7 invalid response"
    assert _run_check(web1.address, path="/hang").reason == "Layer7 timeout"
    assert _run_check(web1.address, path="/chunked/3", expect_body="web1-2").ok
    assert _run_check(web1.address, path="/eof", expect_body="until close").ok
    assert _run_check(web1.address, path="/big/100000").ok  # read up to 16 kB only
    assert _run_check(web1.address, method="HEAD", path="/").ok


def test_tcp_check_outcomes(pool):
    web1 = pool.start("web1")
    host, port = web1.address.rsplit(":", 1)
    assert asyncio.run(tcp_check(host, int(port), 1.0)).reason == "Layer4 check passed"
    pool.stop(web1)
    result = asyncio.run(tcp_check(host, int(port), 1.0))
    assert (result.ok, result.reason, result.info) == (
        False,
        "Layer4 connection problem",
        "Connection refused",
    )


def test_slowstart_ramps_a_returning_server_up(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    config = checked_farm(
        [("web1", web1.address), ("web2", web2.address)],
        server_extra={"web1": {"weight": 20}, "web2": {"weight": 20}},
    ).replace("fall = 2\n", 'fall = 2\nslowstart = "3s"\n', 1)
    proxy = weir(config)
    web1.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    web1.health_status = 200
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP"))

    def split() -> tuple[int, int]:
        names = [get(proxy.port, "/s").header("X-Backend") for _ in range(20)]
        return names.count("web1"), names.count("web2")

    early = split()
    assert early[0] < early[1]  # still ramping: web1's weight is below web2's
    assert wait_for(lambda: split() == (10, 10), timeout=15, interval=0.3)


# -- agent check ------------------------------------------------------------------


class Agent:
    """A server's agent: answers ``line`` to every connection on 127.0.0.1, then closes."""

    def __init__(self, line: bytes = b"up\n") -> None:
        self.line = line
        self.asked = 0
        agent = self

        class Answer(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                agent.asked += 1
                self.request.sendall(agent.line)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def says(self, line: str) -> None:
        self.line = line.encode() + b"\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agents():
    """Factory: ``agents(line)`` starts an agent; all are closed at teardown."""
    started: list[Agent] = []

    def start(line: bytes = b"up\n") -> Agent:
        started.append(Agent(line))
        return started[-1]

    yield start
    for agent in started:
        agent.close()


def split(port: int, n: int) -> tuple[int, int]:
    """How many of ``n`` requests web1 and web2 answered."""
    names = [get(port, "/a").header("X-Backend") for _ in range(n)]
    return names.count("web1"), names.count("web2")


def test_agent_drives_weight_and_state(pool, weir, agents):
    web1, web2 = pool.start("web1"), pool.start("web2")
    agent1, agent2 = agents(b"25%\n"), agents(b"up\n")
    proxy = weir(
        checked_farm(
            [("web1", web1.address), ("web2", web2.address)],
            server_extra={
                "web1": {"weight": 4, "agent_port": agent1.port},
                "web2": {"weight": 4, "agent_port": agent2.port},
            },
        )
    )
    assert wait_for(lambda: events(proxy, r'Agent check for server app/web1 succeeded.*"25%"'))
    assert wait_for(lambda: events(proxy, r"Agent check for server app/web2 succeeded"))
    # Weights 1 and 4: smooth round robin gives each its exact share of a cycle of 5.
    assert split(proxy.port, 20) == (4, 16)

    agent1.says("drain")
    assert wait_for(lambda: events(proxy, r"Server app/web1 enters drain state"))
    assert split(proxy.port, 6) == (0, 6)

    agent1.says("ready 100%")
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP \(leaving forced drain\)"))
    assert split(proxy.port, 8) == (4, 4)

    agent1.says("down #disk full")
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    (down,) = events(proxy, r"Server app/web1 is DOWN")
    assert down.endswith(
        'Server app/web1 is DOWN, reason: Layer7 wrong status, info: "via agent : down '
        '(disk full)". 1 active and 0 backup servers left.'
    )
    assert split(proxy.port, 6) == (0, 6)
    asked = agent1.asked
    assert wait_for(lambda: agent1.asked > asked + 3)  # checks pass meanwhile: still down
    assert split(proxy.port, 4) == (0, 4)

    agent1.says("hello\x00 world")  # not an agent line: ignored, counted, no change
    assert wait_for(lambda: events(proxy, r"Agent check for server app/web1 ignored a reply"))
    assert split(proxy.port, 4) == (0, 4)

    agent1.says("up")
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP, reason: Layer7 check passed"))
    assert split(proxy.port, 8) == (4, 4)

    agent1.says("maint")
    assert wait_for(lambda: events(proxy, r"Server app/web1 is going DOWN for maintenance"))
    assert split(proxy.port, 6) == (0, 6)
    assert proxy.proc.poll() is None


def test_a_server_with_only_an_agent_is_checked_by_it(pool, weir, agents):
    web1, web2 = pool.start("web1"), pool.start("web2")
    agent = agents(b"up\n")
    proxy = weir(
        farm_config(
            [("web1", web1.address), ("web2", web2.address)],
            timeouts=TIMEOUTS,
            server_extra={"web1": {"agent_port": agent.port}},
        )
    )
    assert split(proxy.port, 4) == (2, 2)
    agent.says("maint")
    assert wait_for(lambda: events(proxy, r"Server app/web1 is going DOWN for maintenance"))
    assert split(proxy.port, 4) == (0, 4)
    assert not any(seen.path == "/health" for seen in web1.requests)  # no regular check


def test_an_unreachable_agent_changes_nothing(pool, weir, agents):
    web1, web2 = pool.start("web1"), pool.start("web2")
    agent = agents(b"up\n")
    port = agent.port
    agent.close()
    proxy = weir(
        checked_farm(
            [("web1", web1.address), ("web2", web2.address)],
            server_extra={"web1": {"agent_port": port}},
        )
    )
    assert wait_for(lambda: events(proxy, r"Agent check for server app/web1 failed"))
    (failed,) = events(proxy, r"Agent check for server app/web1 failed")  # logged once
    assert 'reason: Layer4 connection problem, info: "Connection refused"' in failed
    assert split(proxy.port, 4) == (2, 2)


# -- passive observation -------------------------------------------------------------

SLOW_CHECK = '[backends.app.check]\ninter = "10s"\n{keys}\n'


def observed_farm(servers, keys: str, **kw) -> str:
    """Checks every 10 s: only observation can take a server down within a test."""
    config = farm_config(servers, timeouts=TIMEOUTS, **kw)
    return config.replace(
        "[[backends.app.servers]]", SLOW_CHECK.format(keys=keys) + "[[backends.app.servers]]", 1
    )


def test_5xx_on_live_traffic_take_a_server_down(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(
        observed_farm(
            [("web1", web1.address), ("web2", web2.address)],
            'observe = "layer7"\nerror_limit = 3',
            backend='balance = "uri"',  # one URI, one server: its errors are consecutive
        )
    )
    answers = [get(proxy.port, "/status/500") for _ in range(3)]
    assert [r.status for r in answers] == [500, 500, 500]
    failing = answers[0].header("X-Backend")
    other = "web2" if failing == "web1" else "web1"
    assert {r.header("X-Backend") for r in answers} == {failing}
    assert wait_for(lambda: events(proxy, rf"Server app/{failing} is DOWN"))
    (down,) = events(proxy, rf"Server app/{failing} is DOWN")
    assert down.endswith(
        f'Server app/{failing} is DOWN, reason: Health analyze, info: "Detected 3 consecutive '
        'errors, last one was: Wrong http response". 1 active and 0 backup servers left.'
    )
    assert {get(proxy.port, f"/p{i}").header("X-Backend") for i in range(6)} == {other}


def test_observe_none_ignores_live_errors(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(
        observed_farm(
            [("web1", web1.address), ("web2", web2.address)],
            "error_limit = 1",
            backend='balance = "uri"',
        )
    )
    assert [get(proxy.port, "/status/500").status for _ in range(3)] == [500] * 3
    assert answering(proxy.port) == {"web1", "web2"}
    assert not events(proxy, r"is DOWN")


def test_connect_failures_take_a_server_down_under_layer4(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(
        observed_farm(
            [("web1", web1.address), ("web2", web2.address)],
            'observe = "layer4"\nerror_limit = 2',
        )
    )
    pool.stop(web1)
    for i in range(4):  # retries and redispatch still answer every request
        assert get(proxy.port, f"/r{i}").header("X-Backend") == "web2"
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    (down,) = events(proxy, r"Server app/web1 is DOWN")
    assert 'reason: Health analyze, info: "Detected 2 consecutive errors, last one was: L4 ' in down


# -- slow start ramps maxconn too ------------------------------------------------------


def test_slowstart_ramps_maxconn(pool, weir):
    web1 = pool.start("web1")
    config = checked_farm([("web1", web1.address)], server_extra={"web1": {"maxconn": 10}}).replace(
        "fall = 2\n", 'fall = 2\nslowstart = "4s"\n', 1
    )
    proxy = weir(config)
    web1.health_status = 500
    assert wait_for(lambda: events(proxy, r"Server app/web1 is DOWN"))
    web1.health_status = 200
    assert wait_for(lambda: events(proxy, r"Server app/web1 is UP"))
    web1.max_inflight = web1.inflight
    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(lambda i: get(proxy.port, f"/slow/300?{i}"), range(8)))
    assert [r.status for r in answers] == [200] * 8
    assert web1.max_inflight < 8  # early in the ramp: a few connections at a time, queued
    assert wait_for(lambda: _ramped(proxy, web1), timeout=10)


def _ramped(proxy, web1) -> bool:
    web1.max_inflight = web1.inflight
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: get(proxy.port, f"/slow/300?{i}"), range(8)))
    return web1.max_inflight >= 8  # (a health check may be in flight too)
