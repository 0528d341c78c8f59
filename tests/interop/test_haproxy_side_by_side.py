"""Stick tables, 302 redirection, health checks and backup servers side by side with HAProxy.

The same test servers sit behind a real ``weir run`` and a real HAProxy 2.6 (Debian package
haproxy) configured alike, and the same request sequence goes through both. What a client can
observe must match: which server answered (``X-Backend``), the status and ``Location`` of a
redirect, the ``Set-Cookie`` the application sent. Where the choice depends on where round
robin happens to start, the *pattern* is compared (each client always on one server, both
servers used) rather than the server names.

- stick on the client address: HAProxy ``stick-table type ip ...`` and ``stick on src``;
  Weir ``[backends.app.stick] on = "src"``.
- application cookie learning: HAProxy ``stick store-response res.cook(JSESSIONID)`` and
  ``stick match req.cook(JSESSIONID)`` on a string table; Weir ``on = "cookie:JSESSIONID"``.
- 302 redirection: HAProxy ``server web1 ... redir http://web1.example.com``; Weir
  ``redir = "http://web1.example.com"``.
- health checks: HAProxy ``option httpchk GET /health`` and
  ``check inter 100 fastinter 50 downinter 100 rise 2 fall 2``; Weir ``[backends.app.check]``
  with the same path and timing.
- backup server: HAProxy ``server web3 ... backup``; Weir ``backup = true``.

Differences by design (docs/persistence.md), not compared here: Weir also finds the session
in a ``;jsessionid=`` path parameter, which ``req.cook`` does not; HAProxy's ``stick on src``
stores the entry when the request is sent to a server, Weir's when the server has answered
(the same thing for a client that gets answers).

Waits are bounded polls on traffic, nothing is timed.
"""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Callable

import pytest

from tests.support.farm import farm_config, wait_for
from tests.support.haproxy import HAPROXY, HAPROXY_HEAD, MISSING
from tests.support.proxy import Reader, Response

pytestmark = pytest.mark.interop

if not HAPROXY.exists():
    pytest.skip(MISSING, allow_module_level=True)

HAPROXY_CONFIG = HAPROXY_HEAD
HAPROXY_CHECK = "check inter 100 fastinter 50 downinter 100 rise 2 fall 2"
WEIR_CHECK = (
    '[backends.app.check]\ntype = "http"\npath = "/health"\ninter = "100ms"\n'
    'fastinter = "50ms"\ndowninter = "100ms"\nrise = 2\nfall = 2\n'
)
TIMEOUTS = 'connect = "1s"\ncheck = "500ms"'
CLIENTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


def haproxy_config(lines: str, servers: list[tuple[str, str, str]]) -> str:
    """The ``listen www`` section with ``lines`` and ``server NAME ADDRESS OPTIONS`` lines."""
    body = "".join(f"    {line}\n" for line in lines.splitlines() if line)
    body += "".join(f"    server {name} {address} {opts}\n" for name, address, opts in servers)
    return HAPROXY_CONFIG + body


def request(
    port: int,
    path: str = "/",
    cookies: tuple[str, ...] = (),
    *,
    method: str = "GET",
    body: bytes = b"",
    source: str = "127.0.0.1",
) -> Response:
    """One request on its own connection, from ``source``."""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n"
    head += "".join(f"Cookie: {c}\r\n" for c in cookies)
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(head.encode("latin-1") + body)
        return Reader(s).response(head_request=method == "HEAD")


def server(port: int, path: str = "/", **kwargs) -> str | None:
    return request(port, path, **kwargs).header("X-Backend")


def settles(port: int, ok: Callable[[list[str | None]], bool], n: int = 4, limit: int = 400):
    """Send requests until the last ``n`` servers satisfy ``ok`` (at most ``limit``)."""
    seen: list[str | None] = []
    for i in range(limit):
        seen.append(server(port, f"/poll/{i}"))
        if len(seen) >= n and ok(seen[-n:]):
            return seen[-n:]
        if i > n:
            wait_for(lambda: False, timeout=0.02)  # a short pause while the checks run
    raise AssertionError(f"no {n} requests in a row as expected in {limit}: {seen[-12:]}")


def only(name: str) -> Callable[[list[str | None]], bool]:
    return lambda last: set(last) == {name}


def alternating(last: list[str | None]) -> bool:
    """Round robin over web1 and web2 again."""
    return set(last) == {"web1", "web2"} and all(a != b for a, b in itertools.pairwise(last))


def state_logged(text: Callable[[], str], name: str, state: str) -> bool:
    return bool(re.search(rf"Server \w+/{name} is {state}", text()))


@pytest.fixture
def farm(pool, weir, haproxy):
    """``farm(names, weir_backend, haproxy_lines, extra)``: the same servers behind both proxies.

    ``extra`` maps a server name to ``(weir keys, haproxy options)``. Returns the backends by
    name and the two ports, ``{"weir": ..., "haproxy": ...}``.
    """

    def start(names, weir_backend="", haproxy_lines="", extra=None, haproxy_opts=""):
        extra = extra or {}
        backends = {name: pool.start(name) for name in names}
        servers = [(name, b.address) for name, b in backends.items()]
        proxy = weir(
            farm_config(
                servers,
                backend=weir_backend,
                timeouts=TIMEOUTS,
                defaults="redispatch = true",
                server_extra={name: keys for name, (keys, _) in extra.items()},
            )
        )
        ha = haproxy(
            haproxy_config(
                haproxy_lines,
                [
                    (name, b.address, f"{haproxy_opts} {extra.get(name, ({}, ''))[1]}".strip())
                    for name, b in backends.items()
                ],
            )
        )
        return backends, proxy, ha

    return start


def test_stick_on_src_like_haproxy(farm):
    _, proxy, ha = farm(
        ["web1", "web2"],
        weir_backend='[backends.app.stick]\non = "src"\nsize = 1000000\nexpire = "30m"\n',
        haproxy_lines="stick-table type ip size 1m expire 30m\nstick on src",
    )
    for port in (proxy.port, ha.port):
        first = {ip: server(port, "/", source=ip) for ip in CLIENTS}
        # Round robin's first picks, learned: both servers in use, alternately.
        assert set(first.values()) == {"web1", "web2"}, first
        assert first["127.0.0.1"] != first["127.0.0.2"], first
        # Client k sends k + 1 requests in a row: round robin alone would move most of them.
        for i in range(4):
            for k, ip in enumerate(CLIENTS):
                for j in range(k + 1):
                    got = server(port, f"/again/{i}/{j}", source=ip)
                    assert got == first[ip], (port, ip, i, j)


def test_application_cookie_learning_like_haproxy(farm):
    _, proxy, ha = farm(
        ["web1", "web2"],
        weir_backend='[backends.app.stick]\non = "cookie:JSESSIONID"\n',
        haproxy_lines=(
            "stick-table type string len 32 size 1m expire 30m\n"
            "stick store-response res.cook(JSESSIONID)\n"
            "stick match req.cook(JSESSIONID)"
        ),
    )
    patterns = {}
    for name, port in (("weir", proxy.port), ("haproxy", ha.port)):
        sessions = {}
        for _ in range(4):
            resp = request(port, "/session")
            (set_cookie,) = resp.header_all("Set-Cookie")  # the application's, passed on as is
            session = re.fullmatch(r"JSESSIONID=([0-9a-f]{32}); path=/", set_cookie).group(1)
            sessions[session] = resp.header("X-Backend")
        assert set(sessions.values()) == {"web1", "web2"}, (name, sessions)
        # Session k sends k + 1 requests in a row, so round robin alone could not pass.
        for i in range(3):
            for k, (session, home) in enumerate(sessions.items()):
                for j in range(k + 1):
                    cookie = f"lang=en; JSESSIONID={session}"
                    resp = request(port, f"/cookies?{i}.{j}", (cookie,))
                    assert resp.header("X-Backend") == home, (name, session, i, j)
                    # The cookie reaches the server unchanged, and nothing is added.
                    assert resp.body == f"{cookie}\n".encode()
                    assert resp.header_all("Set-Cookie") == []
        # An unknown session id is balanced: two requests, both servers.
        unknown = {server(port, "/", cookies=("JSESSIONID=" + "0" * 32,)) for _ in range(2)}
        assert unknown == {"web1", "web2"}, name
        patterns[name] = [sessions[s] == sessions[next(iter(sessions))] for s in sessions]
    assert patterns["weir"] == patterns["haproxy"]


def test_redirection_persistence_like_haproxy(farm):
    backends, proxy, ha = farm(
        ["web1"],
        extra={"web1": ({"redir": "http://web1.example.com"}, "redir http://web1.example.com")},
    )
    seen = {}
    for name, port in (("weir", proxy.port), ("haproxy", ha.port)):
        get = request(port, "/x?y=1")
        head = request(port, "/h", method="HEAD")
        post = request(port, "/count", method="POST", body=b"hello")
        seen[name] = [
            (get.status, get.header("Location")),
            (head.status, head.header("Location")),
            (post.status, post.header("X-Backend"), post.body),
        ]
    assert seen["weir"] == seen["haproxy"]
    assert seen["haproxy"][0] == (302, "http://web1.example.com/x?y=1")
    assert seen["haproxy"][1] == (302, "http://web1.example.com/h")
    assert seen["haproxy"][2][:2] == (200, "web1")
    # GET and HEAD never reached the server; both POSTs did.
    web1 = backends["web1"]
    assert not [r for r in web1.requests if r.path in ("/x?y=1", "/h")]
    assert [r.method for r in web1.requests if r.path == "/count"] == ["POST", "POST"]


def test_health_checks_like_haproxy(farm):
    backends, proxy, ha = farm(
        ["web1", "web2"],
        weir_backend=WEIR_CHECK,
        haproxy_lines="option httpchk GET /health",
        haproxy_opts=HAPROXY_CHECK,
    )
    web1 = backends["web1"]
    ports = {"weir": proxy.port, "haproxy": ha.port}
    for port in ports.values():
        settles(port, alternating)

    web1.health_status = 500
    for port in ports.values():
        settles(port, only("web2"))
    assert wait_for(lambda: state_logged(proxy.stderr, "web1", "DOWN"))
    assert wait_for(lambda: state_logged(ha.text, "web1", "DOWN"))
    for name, port in ports.items():  # out, and it stays out
        assert {server(port, f"/down/{i}") for i in range(6)} == {"web2"}, name

    web1.health_status = 200
    for port in ports.values():
        settles(port, alternating)
    assert wait_for(lambda: state_logged(proxy.stderr, "web1", "UP"))
    assert wait_for(lambda: state_logged(ha.text, "web1", "UP"))
    for name, port in ports.items():
        got = [server(port, f"/up/{i}") for i in range(6)]
        assert alternating(got), (name, got)


def test_backup_server_like_haproxy(farm):
    backends, proxy, ha = farm(
        ["web1", "web2", "web3"],
        weir_backend=WEIR_CHECK,
        haproxy_lines="option httpchk GET /health",
        haproxy_opts=HAPROXY_CHECK,
        extra={"web3": ({"backup": True}, "backup")},
    )
    ports = {"weir": proxy.port, "haproxy": ha.port}
    for name, port in ports.items():  # the backup takes nothing while web1 and web2 are up
        got = [server(port, f"/normal/{i}") for i in range(6)]
        assert alternating(got), (name, got)

    backends["web1"].health_status = 500
    backends["web2"].health_status = 500
    for port in ports.values():
        settles(port, only("web3"))
    for name, port in ports.items():
        assert {server(port, f"/backup/{i}") for i in range(6)} == {"web3"}, name

    # A normal server comes back: the backup stops taking traffic.
    backends["web2"].health_status = 200
    for port in ports.values():
        settles(port, only("web2"))
    for name, port in ports.items():
        assert {server(port, f"/back/{i}") for i in range(6)} == {"web2"}, name
