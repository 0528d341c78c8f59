"""Persistence end to end: the real ``weir run``, real test servers, several clients.

Each test plays users who keep (or forge) their cookies by hand and checks
what they see (which server answered, ``Set-Cookie``, ``Cache-Control``),
what the servers see (``TestBackend.requests``), and the access log's
termination state, whose last two characters are the client cookie state and
what Weir did with the cookie (docs/persistence.md, docs/logging.md). Round
robin over two servers alternates, so a user who stays on one server for
many requests is being persisted. Waits are bounded polls; nothing is timed:
cookie dates are forged with ``encode_date`` instead of waiting for them to
expire.

Not covered here: DRAIN vs MAINT for persisted and new users. Setting a
server's admin state needs the runtime API (issue 4); add those tests with it.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from appliance.persist.cookie import decode_date, encode_date
from tests.support.farm import farm_config, parse, wait_for
from tests.support.proxy import Reader, Response

pytestmark = pytest.mark.integration

INSERT = (
    '[backends.app.cookie]\nname = "SERVERID"\nmode = "insert"\n'
    "indirect = true\nnocache = true\nhttponly = true\n"
)
FAST_CHECK = (
    '[backends.app.check]\ntype = "http"\npath = "/health"\ninter = "100ms"\n'
    'fastinter = "50ms"\ndowninter = "100ms"\nrise = 2\nfall = 2\n'
)
TIMEOUTS = 'connect = "200ms"\ncheck = "500ms"'


def request(
    port: int,
    path: str = "/",
    cookies: tuple[str, ...] | list[str] = (),
    *,
    method: str = "GET",
    body: bytes = b"",
    source: str = "127.0.0.1",
) -> Response:
    """One request on its own connection, from ``source``, one Cookie header per entry."""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n"
    head += "".join(f"Cookie: {c}\r\n" for c in cookies)
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(head.encode("latin-1") + body)
        return Reader(s).response(head_request=method == "HEAD")


def two(pool):
    return pool.start("web1"), pool.start("web2")


def farm(web1, web2, backend: str = "", **kw) -> str:
    return farm_config([("web1", web1.address), ("web2", web2.address)], backend=backend, **kw)


def checked(web1, web2, backend: str, **kw) -> str:
    """A farm whose servers are checked fast (inter 100ms, rise 2, fall 2)."""
    return farm(web1, web2, backend + FAST_CHECK, timeouts=TIMEOUTS, **kw)


def terms(proxy, n: int) -> list[str]:
    """The termination states of the first ``n`` access-log lines."""
    lines = proxy.log_lines(wait_for=n)
    assert len(lines) >= n, lines
    return [parse(line).term for line in lines[:n]]


def events(proxy, pattern: str) -> list[str]:
    return [ln for ln in proxy.stderr().splitlines() if re.search(pattern, ln)]


def other(name: str) -> str:
    return {"web1": "web2", "web2": "web1"}[name]


def cookie_values(backend) -> list[str]:
    """Every Cookie header value the server received (health checks included)."""
    return [v for seen in backend.requests for k, v in seen.headers if k.lower() == "cookie"]


# -- insert ---------------------------------------------------------------------------------


def test_insert_keeps_each_user_on_his_server(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))

    alice = request(proxy.port, "/a")
    assert alice.status == 200
    home = alice.header("X-Backend")
    assert alice.header_all("Set-Cookie") == [f"SERVERID={home}; path=/; HttpOnly"]
    assert alice.header("Cache-Control") == "private"
    bob = request(proxy.port, "/b")
    assert bob.header("X-Backend") == other(home)  # round robin moved on
    assert bob.header_all("Set-Cookie") == [f"SERVERID={other(home)}; path=/; HttpOnly"]

    # Interleaved, each with his cookie: round robin would alternate; they do not move.
    for i in range(20):
        for user, server in (("alice", home), ("bob", other(home))):
            resp = request(proxy.port, f"/{user}/{i}", [f"SERVERID={server}"])
            assert resp.status == 200
            assert resp.header("X-Backend") == server, (user, i, resp)
            assert resp.header_all("Set-Cookie") == []  # a valid cookie is not sent again
            assert resp.header("Cache-Control") is None

    states = terms(proxy, 42)
    assert states[:2] == ["--NI", "--NI"]
    assert set(states[2:]) == {"--VN"}
    # indirect: no server ever saw our cookie
    assert not [v for v in cookie_values(web1) + cookie_values(web2) if "SERVERID" in v]


def test_indirect_removes_only_our_cookie(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    home = request(proxy.port).header("X-Backend")

    resp = request(
        proxy.port,
        "/cookies",
        [f"lang=en; SERVERID={home}; theme=dark", "cart=42", f"SERVERID={home}"],
    )
    assert resp.header("X-Backend") == home
    # Other cookies reach the server intact, in order; a header left empty is dropped.
    assert resp.body == b"lang=en; theme=dark\ncart=42\n"
    resp = request(proxy.port, "/cookies", ["a=1", f"SERVERID={home}; b=2"])
    assert (resp.header("X-Backend"), resp.body) == (home, b"a=1\nb=2\n")
    assert terms(proxy, 3)[1:] == ["--VN", "--VN"]


def test_a_server_setting_our_cookie_does_not_duplicate_it(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    resp = request(proxy.port, "/set-cookie/SERVERID=mine%3B%20path=/app")
    home = resp.header("X-Backend")
    assert resp.header_all("Set-Cookie") == [f"SERVERID={home}; path=/; HttpOnly"]
    # Other cookies the application sets pass untouched next to ours.
    resp = request(proxy.port, "/set-cookie/lang=en%3B%20path=/", [f"SERVERID={home}"])
    assert resp.header("X-Backend") == home
    assert resp.header_all("Set-Cookie") == ["lang=en; path=/"]


def test_cache_control_public_becomes_private(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    # The first visit carries our cookie: it must not be stored by a shared cache.
    resp = request(proxy.port, "/")
    assert resp.header_all("Cache-Control") == ["private"]


# -- prefix ---------------------------------------------------------------------------------


def test_prefix_mode_prefixes_the_application_cookie(pool, weir):
    web1, web2 = two(pool)
    prefix = '[backends.app.cookie]\nname = "JSESSIONID"\nmode = "prefix"\n'
    proxy = weir(farm(web1, web2, prefix))

    resp = request(proxy.port, "/set-cookie/JSESSIONID=abc%3B%20path=/")
    home = resp.header("X-Backend")
    assert resp.header_all("Set-Cookie") == [f"JSESSIONID={home}~abc; path=/"]
    assert resp.header("Cache-Control") == "private"  # nocache defaults to true
    # A user without a session gets no cookie of Weir's in this mode.
    plain = request(proxy.port, "/")
    assert plain.header_all("Set-Cookie") == []

    for i in range(10):
        resp = request(proxy.port, "/cookies", [f"theme=dark; JSESSIONID={home}~abc"])
        assert resp.header("X-Backend") == home, (i, resp)
        assert resp.body == b"theme=dark; JSESSIONID=abc\n"  # the server sees its own value
        assert resp.header_all("Set-Cookie") == []
    # A new session id set by the application reaches the user, prefixed.
    resp = request(proxy.port, "/set-cookie/JSESSIONID=def", [f"JSESSIONID={home}~abc"])
    assert resp.header("X-Backend") == home
    assert resp.header_all("Set-Cookie") == [f"JSESSIONID={home}~def"]

    # HAProxy's codes: R, "the cookie provided by the server was REWRITTEN by the proxy,
    # which happens in cookie rewrite or cookie prefix modes" (P is "transmitted as-is").
    states = terms(proxy, 13)
    assert states[0] == "--NR"
    assert states[1] == "--NN"
    assert set(states[2:12]) == {"--VN"}
    assert states[12] == "--VR"


def test_prefix_without_a_prefix_is_invalid_and_passed_on(pool, weir):
    web1, web2 = two(pool)
    prefix = '[backends.app.cookie]\nname = "JSESSIONID"\nmode = "prefix"\n'
    proxy = weir(farm(web1, web2, prefix))
    served = {request(proxy.port, "/cookies", ["JSESSIONID=abc"]).header("X-Backend") for _ in "ab"}
    assert served == {"web1", "web2"}  # balanced
    resp = request(proxy.port, "/cookies", ["JSESSIONID=nosuch~abc"])
    assert resp.status == 200
    assert set(terms(proxy, 3)) == {"--IN"}


# -- rewrite --------------------------------------------------------------------------------


def test_rewrite_mode_replaces_the_placeholder(pool, weir):
    web1, web2 = two(pool)
    rewrite = '[backends.app.cookie]\nname = "SERVERID"\nmode = "rewrite"\n'
    proxy = weir(farm(web1, web2, rewrite))

    resp = request(proxy.port, "/set-cookie/SERVERID=placeholder%3B%20path=/%3B%20HttpOnly")
    home = resp.header("X-Backend")
    assert resp.header_all("Set-Cookie") == [f"SERVERID={home}; path=/; HttpOnly"]
    assert resp.header("Cache-Control") == "private"
    for i in range(10):
        resp = request(proxy.port, "/cookies", [f"SERVERID={home}"])
        assert resp.header("X-Backend") == home, (i, resp)
        assert resp.body == f"SERVERID={home}\n".encode()  # rewrite passes the cookie on
    states = terms(proxy, 11)
    assert states[0] == "--NR"
    assert set(states[1:]) == {"--VN"}


# -- maxidle / maxlife ----------------------------------------------------------------------


def test_maxidle_expired_and_forged_dates_are_rebalanced(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT + 'maxidle = "10m"\n'))

    first = request(proxy.port)
    home = first.header("X-Backend")
    (set_cookie,) = first.header_all("Set-Cookie")
    match = re.fullmatch(rf"SERVERID={home}\|([A-Za-z0-9+/]{{5}}); path=/; HttpOnly", set_cookie)
    assert match, set_cookie
    assert abs(decode_date(match.group(1).encode()) - time.time()) < 60

    # A fresh date: valid, not re-dated (a quarter of maxidle has not passed).
    fresh = f"SERVERID={home}|{match.group(1)}"
    for _ in range(4):
        resp = request(proxy.port, "/", [fresh])
        assert resp.header("X-Backend") == home
        assert resp.header_all("Set-Cookie") == []

    now = time.time()
    stale = f"SERVERID={home}|{encode_date(now - 3600).decode()}"  # idle for an hour
    future = f"SERVERID={home}|{encode_date(now + 3600).decode()}"  # forged
    garbage = f"SERVERID={home}|!!!!!"
    expired = [stale, stale, future, future, garbage, garbage]
    answered = []
    for cookie in expired:
        resp = request(proxy.port, "/", [cookie])
        assert resp.status == 200
        server = resp.header("X-Backend")
        answered.append(server)
        (renewed,) = resp.header_all("Set-Cookie")  # a new cookie with a new date
        m = re.fullmatch(rf"SERVERID={server}\|([A-Za-z0-9+/]{{5}}); path=/; HttpOnly", renewed)
        assert m, renewed
        assert abs(decode_date(m.group(1).encode()) - time.time()) < 60
    # ignored, so balanced: round robin alternates instead of sticking to home
    assert set(answered) == {"web1", "web2"}

    states = terms(proxy, 11)
    assert states[0] == "--NI"
    assert set(states[1:5]) == {"--VN"}
    assert set(states[5:]) == {"--EI"}


def test_maxlife_expired_first_date_is_rebalanced(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT + 'maxidle = "10m"\nmaxlife = "1h"\n'))
    now = time.time()
    last = encode_date(now).decode()
    born = encode_date(now - 7200).decode()  # first set two hours ago
    answered = set()
    for _ in range(2):
        resp = request(proxy.port, "/", [f"SERVERID=web1|{last}|{born}"])
        answered.add(resp.header("X-Backend"))
        assert len(resp.header_all("Set-Cookie")) == 1
    assert answered == {"web1", "web2"}
    # first date after the last one: forged
    resp = request(proxy.port, "/", [f"SERVERID=web1|{born}|{last}"])
    assert resp.status == 200
    assert set(terms(proxy, 3)) == {"--EI"}


# -- stick tables ---------------------------------------------------------------------------


def test_stick_on_source_address(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, '[backends.app.stick]\non = "src"\n'))
    clients = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    first = {ip: request(proxy.port, "/", source=ip).header("X-Backend") for ip in clients}
    assert set(first.values()) == {"web1", "web2"}  # learned from round robin's picks
    # Client k asks k+1 times in a row: round robin alone would move some of them.
    for i in range(4):
        for k, ip in enumerate(clients):
            for j in range(k + 1):
                assert request(proxy.port, f"/{i}/{j}", source=ip).header("X-Backend") == first[ip]
    # No cookie persistence on this backend: the cookie characters are '-'.
    assert set(terms(proxy, 44)) == {"----"}  # 4 first requests + 4 rounds of 1+2+3+4


def test_stick_on_learned_session_cookie(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, '[backends.app.stick]\non = "cookie:JSESSIONID"\n'))
    sessions = {}
    for _ in range(4):
        resp = request(proxy.port, "/session")
        (set_cookie,) = resp.header_all("Set-Cookie")
        session = re.fullmatch(r"JSESSIONID=([0-9a-f]{32}); path=/", set_cookie).group(1)
        sessions[session] = resp.header("X-Backend")
    assert set(sessions.values()) == {"web1", "web2"}
    for i in range(5):
        for session, server in sessions.items():
            resp = request(proxy.port, f"/page/{i}", [f"lang=en; JSESSIONID={session}"])
            assert resp.header("X-Backend") == server, (session, i)
            # the path parameter, for clients without cookies
            resp = request(proxy.port, f"/page/{i};jsessionid={session}?q=1")
            assert resp.header("X-Backend") == server, (session, i)
    # The cookie reaches the server unchanged: it is the application's.
    resp = request(proxy.port, "/cookies", [f"JSESSIONID={next(iter(sessions))}"])
    assert resp.body == f"JSESSIONID={next(iter(sessions))}\n".encode()
    # An unknown session id is balanced.
    unknown = {request(proxy.port, "/", ["JSESSIONID=" + "0" * 32]).header("X-Backend")}
    unknown.add(request(proxy.port, "/", ["JSESSIONID=" + "0" * 32]).header("X-Backend"))
    assert unknown == {"web1", "web2"}


# -- failures -------------------------------------------------------------------------------


def test_down_server_redispatches_with_a_new_cookie(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(checked(web1, web2, INSERT, defaults="redispatch = true"))
    assert wait_for(lambda: web1.requests and web2.requests)  # both are being checked
    home = request(proxy.port).header("X-Backend")
    dead = {"web1": web1, "web2": web2}[home]
    survivor = other(home)

    dead.health_status = 500
    assert wait_for(lambda: events(proxy, rf"Server app/{home} is DOWN"))
    resp = request(proxy.port, "/moved", [f"SERVERID={home}"])
    assert resp.status == 200
    assert resp.header("X-Backend") == survivor
    assert resp.header_all("Set-Cookie") == [f"SERVERID={survivor}; path=/; HttpOnly"]
    assert resp.header("Cache-Control") == "private"

    # The old server comes back: the user stays where he was moved.
    dead.health_status = 200
    assert wait_for(lambda: events(proxy, rf"Server app/{home} is UP"))
    for i in range(6):
        resp = request(proxy.port, f"/after/{i}", [f"SERVERID={survivor}"])
        assert resp.header("X-Backend") == survivor
        assert resp.header_all("Set-Cookie") == []
    states = terms(proxy, 8)
    assert states[:2] == ["--NI", "--DI"]
    assert set(states[2:]) == {"--VN"}
    moved = parse(proxy.log_lines(wait_for=2)[1])
    assert (moved.server, moved.status) == (survivor, 200)


def test_down_server_without_redispatch_is_503(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(checked(web1, web2, INSERT, defaults="redispatch = false"))
    assert wait_for(lambda: web1.requests and web2.requests)
    home = request(proxy.port).header("X-Backend")
    {"web1": web1, "web2": web2}[home].health_status = 500
    assert wait_for(lambda: events(proxy, rf"Server app/{home} is DOWN"))
    resp = request(proxy.port, "/refused", [f"SERVERID={home}"])
    assert resp.status == 503
    # New users are still served by the live server.
    assert request(proxy.port, "/new").header("X-Backend") == other(home)
    lines = proxy.log_lines(wait_for=3)
    refused = parse(lines[1])
    assert refused.status == 503 and refused.term[2] == "D", refused.raw
    assert refused.server == "<NOSRV>", refused.raw
    assert not [seen for b in (web1, web2) for seen in b.requests if seen.path == "/refused"]


def test_stick_table_entry_moves_when_its_server_goes_down(pool, weir):
    web1, web2 = two(pool)
    stick = '[backends.app.stick]\non = "src"\n'
    proxy = weir(checked(web1, web2, stick, defaults="redispatch = true"))
    assert wait_for(lambda: web1.requests and web2.requests)
    home = request(proxy.port).header("X-Backend")
    {"web1": web1, "web2": web2}[home].health_status = 500
    assert wait_for(lambda: events(proxy, rf"Server app/{home} is DOWN"))
    assert request(proxy.port).header("X-Backend") == other(home)
    {"web1": web1, "web2": web2}[home].health_status = 200
    assert wait_for(lambda: events(proxy, rf"Server app/{home} is UP"))
    assert {request(proxy.port).header("X-Backend") for _ in range(4)} == {other(home)}


# -- 302 redirection ------------------------------------------------------------------------


def test_redirection_persistence(pool, weir):
    web1 = pool.start("web1")
    proxy = weir(
        farm_config(
            [("web1", web1.address)],
            server_extra={"web1": {"redir": "http://web1.example.com"}},
        )
    )
    resp = request(proxy.port, "/x?y=1")
    assert resp.status == 302
    assert resp.header("Location") == "http://web1.example.com/x?y=1"
    head = request(proxy.port, "/h", method="HEAD")
    assert (head.status, head.header("Location")) == (302, "http://web1.example.com/h")
    assert not [seen for seen in web1.requests if seen.path in ("/x?y=1", "/h")]
    # Only GET and HEAD are redirected: a POST body would be lost.
    post = request(proxy.port, "/count", method="POST", body=b"hello")
    assert post.status == 200 and post.header("X-Backend") == "web1"
    assert [seen.method for seen in web1.requests if seen.path == "/count"] == ["POST"]
    lines = [parse(line) for line in proxy.log_lines(wait_for=3)]
    assert [(ln.status, ln.server, ln.term[:2]) for ln in lines[:2]] == [
        (302, "web1", "LR"),
        (302, "web1", "LR"),
    ]


# -- bad input ------------------------------------------------------------------------------

GARBAGE = [
    "SERVERID=nosuch",
    "SERVERID=",
    "SERVERID==web1",
    'SERVERID="web1',
    "SERVERID=web1~x",
    "SERVERID=we b1\t;",
    "SERVERID=\xff\xfe",  # obs-text; control characters are the HTTP parser's 400
    ";;;SERVERID;;;=;",
    "SERVERID=" + "web1" * 1500,  # over 4096 bytes: absent
    "x" * 5000,
]


def test_garbage_cookies_are_ignored_and_the_proxy_keeps_serving(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    for cookie in GARBAGE:
        resp = request(proxy.port, "/cookies", [cookie])
        assert resp.status == 200, cookie
        server = resp.header("X-Backend")
        # treated as no valid cookie: the user gets one for the server that answered
        assert resp.header_all("Set-Cookie") == [f"SERVERID={server}; path=/; HttpOnly"], cookie
        # indirect: whatever was under our name never reaches the server
        assert b"SERVERID=" not in resp.body, cookie
    states = terms(proxy, len(GARBAGE))
    assert {s[2] for s in states} <= {"I", "N"}, states
    assert {s[3] for s in states} == {"I"}
    assert states[0] == "--II"  # a server nobody has
    # Still serving, still persisting.
    resp = request(proxy.port, "/", ["SERVERID=web2"])
    assert (resp.status, resp.header("X-Backend")) == (200, "web2")
    assert proxy.proc.poll() is None
    assert "Traceback" not in proxy.stderr()


def test_unknown_server_cookie_rebalances(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    answered = {request(proxy.port, "/", ["SERVERID=web3"]).header("X-Backend") for _ in "abcd"}
    assert answered == {"web1", "web2"}
    assert set(terms(proxy, 4)) == {"--II"}


def test_log_captures_our_cookie_both_ways(pool, weir):
    web1, web2 = two(pool)
    proxy = weir(farm(web1, web2, INSERT))
    first = request(proxy.port, "/first")
    server = first.header("X-Backend")
    request(proxy.port, "/back", [f"SERVERID={server}; lang=fr"])
    request(proxy.port, "/odd", ["SERVERID=we b1"])
    lines = [parse(line) for line in proxy.log_lines(wait_for=3)]
    assert (lines[0].cookie_req, lines[0].cookie_resp) == ("-", f"SERVERID={server}")
    assert (lines[1].cookie_req, lines[1].cookie_resp) == (f"SERVERID={server}", "-")
    # A space would split the log field: it is escaped, as HAProxy escapes captures.
    assert lines[2].cookie_req == "SERVERID=we#20b1"
    assert lines[2].term.endswith("II")


def test_stick_on_source_address_over_ipv6(pool, weir):
    if not socket.has_ipv6:
        pytest.skip("this kernel has no IPv6")
    web1, web2 = two(pool)
    body = farm(web1, web2, '[backends.app.stick]\non = "src"\n').replace(
        'bind = ["127.0.0.1:{port}"]', 'bind = ["[::1]:{port}"]'
    )
    proxy = weir(body, wait=False)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("::1", proxy.port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, proxy.stderr()
            time.sleep(0.05)
    seen = set()
    for i in range(8):
        with socket.create_connection(("::1", proxy.port), timeout=10) as s:
            s.sendall(f"GET /v6/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            seen.add(Reader(s).response().header("X-Backend"))
    assert len(seen) == 1  # one IPv6 client, one server, whatever round robin would do
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert line.raw.split("]: ", 1)[1].startswith("::1:")
