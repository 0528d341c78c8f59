"""Cookie persistence side by side with HAProxy 2.6 (Debian package haproxy).

The same two test servers sit behind a real ``weir run`` and a real HAProxy
configured alike (``cookie SERVERID insert indirect nocache httponly``,
``server web1 ... cookie web1``). Every step of a request sequence (a new
user, a returning one, one with a cookie naming no server, one whose server
is down, prefix mode) goes through both, and what a client can observe must
match: the server that answered, the ``Set-Cookie`` it got (name, value,
path, HttpOnly), ``Cache-Control`` (HAProxy writes ``Cache-control``; header
names are compared case-insensitively), the cookies the server received, and
the cookie characters of the access log's termination state.

Cases where Weir departs from HAProxy by design (docs/persistence.md) are not
compared here: a cookie without the dates ``maxidle``/``maxlife`` require
(Weir: ignored as old, HAProxy: accepted and dated), and a persisted server
that is down without ``redispatch`` (Weir: 503; HAProxy redispatches such a
user anyway unless ``option persist``).
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.support.farm import farm_config, parse, wait_for
from tests.support.haproxy import HAPROXY, HAPROXY_HEAD, MISSING
from tests.support.proxy import Reader, Response

pytestmark = pytest.mark.interop

if not HAPROXY.exists():
    pytest.skip(MISSING, allow_module_level=True)

CHECK = 'inter = "100ms"\nfastinter = "100ms"\ndowninter = "100ms"\nrise = 2\nfall = 2\n'
WEIR_INSERT = (
    '[backends.app.cookie]\nname = "SERVERID"\nmode = "insert"\n'
    "indirect = true\nnocache = true\nhttponly = true\n"
    '[backends.app.check]\ntype = "http"\npath = "/health"\n' + CHECK
)
# nocache off on both sides: HAProxy's applies to inserted cookies only, Weir's to prefixed
# ones too (docs/persistence.md).
WEIR_PREFIX = '[backends.app.cookie]\nname = "JSESSIONID"\nmode = "prefix"\nnocache = false\n'

HAPROXY_CONFIG = (
    HAPROXY_HEAD
    + """\
    {cookie}
    option httpchk GET /health
    server web1 {web1} cookie web1 {check}
    server web2 {web2} cookie web2 {check}
"""
)
HAPROXY_CHECK = "check inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2"


def request(port: int, path: str = "/", cookies: tuple[str, ...] = ()) -> Response:
    head = f"GET {path} HTTP/1.1\r\nHost: t\r\n"
    head += "".join(f"Cookie: {c}\r\n" for c in cookies)
    head += "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode("latin-1"))
        return Reader(s).response()


def set_cookie(value: str) -> tuple[str, str, str | None, bool]:
    """The meaningful parts of a Set-Cookie: name, value, path, HttpOnly."""
    pair, *attributes = (part.strip() for part in value.split(";"))
    name, _, cookie = pair.partition("=")
    path = None
    httponly = False
    for attribute in attributes:
        key, _, arg = attribute.partition("=")
        if key.lower() == "path":
            path = arg
        elif key.lower() == "httponly":
            httponly = True
    return name, cookie, path, httponly


def observed(resp: Response) -> dict[str, object]:
    return {
        "status": resp.status,
        "server": resp.header("X-Backend"),
        "set-cookie": [set_cookie(v) for v in resp.header_all("set-cookie")],
        "cache-control": [v.lower() for v in resp.header_all("cache-control")],
        "body": resp.body,
    }


class SideBySide:
    """Sends each request to both proxies and checks that they behave alike."""

    def __init__(self, weir_port: int, haproxy_port: int) -> None:
        self.ports = {"weir": weir_port, "haproxy": haproxy_port}
        self.count = 0

    def same(self, path: str = "/", cookies: tuple[str, ...] = ()) -> dict[str, object]:
        seen = {name: observed(request(port, path, cookies)) for name, port in self.ports.items()}
        self.count += 1
        assert seen["weir"] == seen["haproxy"], (path, cookies)
        return seen["weir"]


def cookie_states(lines: list[str]) -> list[str]:
    """The client/server cookie characters of each access-log line."""
    return [parse(line).term[2:] for line in lines if line.endswith(' HTTP/1.1"')]


def down(text, name: str) -> bool:
    return bool(re.search(rf"Server \w+/{name} is DOWN", text()))


def up(text, name: str) -> bool:
    return bool(re.search(rf"Server \w+/{name} is UP", text()))


def cacheable(*backends) -> None:
    """Make every answer cacheable: HAProxy's ``nocache`` only marks responses that were
    (2.6: explicit freshness needed), Weir marks every response carrying the cookie."""
    for backend in backends:
        backend.headers.append("Cache-Control: max-age=60")


def test_insert_indirect_nocache_like_haproxy(pool, weir, haproxy):
    web1, web2 = pool.start("web1"), pool.start("web2")
    cacheable(web1, web2)
    servers = [("web1", web1.address), ("web2", web2.address)]
    proxy = weir(farm_config(servers, backend=WEIR_INSERT, defaults="redispatch = true"))
    ha = haproxy(
        HAPROXY_CONFIG.format(
            port="{port}",
            cookie="cookie SERVERID insert indirect nocache httponly",
            web1=web1.address,
            web2=web2.address,
            check=HAPROXY_CHECK,
        )
    )
    both = SideBySide(proxy.port, ha.port)

    # New users: balanced, each gets a cookie, marked private.
    first = both.same("/")
    second = both.same("/")
    assert {first["server"], second["server"]} == {"web1", "web2"}
    assert first["set-cookie"] == [("SERVERID", first["server"], "/", True)]
    assert first["cache-control"] == ["max-age=60", "private"]

    # Returning users: their server, nothing re-sent, our cookie removed, others kept.
    for name in ("web1", "web2", "web1", "web2", "web2"):
        seen = both.same("/cookies", (f"a=1; SERVERID={name}; b=2", "c=3"))
        assert (seen["server"], seen["set-cookie"], seen["body"]) == (name, [], b"a=1; b=2\nc=3\n")
    seen = both.same("/cookies", (f"SERVERID={name}",))
    assert (seen["server"], seen["body"]) == (name, b"")

    # A cookie naming no server: balanced again, a new cookie.
    for _ in range(2):
        seen = both.same("/", ("SERVERID=web9",))
        assert seen["set-cookie"] == [("SERVERID", seen["server"], "/", True)]

    # The server goes down: the user is moved and gets a cookie for his new server.
    web1.health_status = 500
    assert wait_for(lambda: down(proxy.stderr, "web1") and down(ha.text, "web1"))
    seen = both.same("/", ("SERVERID=web1",))
    assert seen["server"] == "web2"
    assert seen["set-cookie"] == [("SERVERID", "web2", "/", True)]
    assert seen["cache-control"] == ["max-age=60", "private"]
    web1.health_status = 200
    assert wait_for(lambda: up(proxy.stderr, "web1") and up(ha.text, "web1"))
    seen = both.same("/", ("SERVERID=web2",))
    assert (seen["server"], seen["set-cookie"]) == ("web2", [])

    # The access logs tell the same cookie story (N/V/I/D, then I/N).
    weir_states = cookie_states(proxy.log_lines(wait_for=both.count))
    ha_states = cookie_states(ha.log_lines(wait_for=both.count))
    assert len(weir_states) == len(ha_states) == both.count
    assert weir_states == ha_states
    assert weir_states[:2] == ["NI", "NI"]
    assert weir_states[-2:] == ["DI", "VN"]


def test_prefix_like_haproxy(pool, weir, haproxy):
    web1, web2 = pool.start("web1"), pool.start("web2")
    cacheable(web1, web2)
    servers = [("web1", web1.address), ("web2", web2.address)]
    proxy = weir(farm_config(servers, backend=WEIR_PREFIX))
    ha = haproxy(
        HAPROXY_CONFIG.format(
            port="{port}",
            cookie="cookie JSESSIONID prefix",
            web1=web1.address,
            web2=web2.address,
            check="",
        )
    )
    both = SideBySide(proxy.port, ha.port)

    sessions = {}
    for session in ("abc", "def"):
        seen = both.same(f"/set-cookie/JSESSIONID={session}%3B%20path=/")
        server = seen["server"]
        assert seen["set-cookie"] == [("JSESSIONID", f"{server}~{session}", "/", False)]
        sessions[session] = server
    assert set(sessions.values()) == {"web1", "web2"}
    for _ in range(3):
        for session, server in sessions.items():
            seen = both.same("/cookies", (f"x=1; JSESSIONID={server}~{session}",))
            assert seen["server"] == server
            assert seen["body"] == f"x=1; JSESSIONID={session}\n".encode()
            assert seen["set-cookie"] == []
    # A user without a session gets no cookie in prefix mode.
    seen = both.same("/")
    assert seen["set-cookie"] == []
    weir_states = cookie_states(proxy.log_lines(wait_for=both.count))
    ha_states = cookie_states(ha.log_lines(wait_for=both.count))
    assert ha_states[:2] == ["NR", "NR"]  # HAProxy: a prefixed cookie is "rewritten"
    assert weir_states == ha_states, (weir_states, ha_states)


def test_rewrite_like_haproxy(pool, weir, haproxy):
    web1, web2 = pool.start("web1"), pool.start("web2")
    cacheable(web1, web2)
    servers = [("web1", web1.address), ("web2", web2.address)]
    rewrite = '[backends.app.cookie]\nname = "SERVERID"\nmode = "rewrite"\nindirect = false\n'
    proxy = weir(farm_config(servers, backend=rewrite + "nocache = false\n"))
    ha = haproxy(
        HAPROXY_CONFIG.format(
            port="{port}",
            cookie="cookie SERVERID rewrite",
            web1=web1.address,
            web2=web2.address,
            check="",
        )
    )
    both = SideBySide(proxy.port, ha.port)
    homes = []
    for _ in range(2):
        seen = both.same("/set-cookie/SERVERID=placeholder%3B%20path=/")
        assert seen["set-cookie"] == [("SERVERID", seen["server"], "/", False)]
        homes.append(seen["server"])
    assert set(homes) == {"web1", "web2"}
    for _ in range(2):
        for home in homes:
            seen = both.same("/cookies", (f"SERVERID={home}",))
            assert (seen["server"], seen["body"]) == (home, f"SERVERID={home}\n".encode())
    seen = both.same("/", ("SERVERID=web9",))
    assert seen["set-cookie"] == []
    weir_states = cookie_states(proxy.log_lines(wait_for=both.count))
    ha_states = cookie_states(ha.log_lines(wait_for=both.count))
    assert weir_states == ha_states, (weir_states, ha_states)
