"""Request validation: malformed or oversized requests are refused and never forwarded.

Every refusal is a proxy-generated error page followed by closing the client
connection, logged with termination state ``PR--`` (the proxy refused the
request while reading it), backend/server ``www/<NOSRV>`` and request ``<BADREQ>``.
"""

from __future__ import annotations

import pytest

from tests.support.farm import farm_config, parse, wait_for
from tests.support.proxy import Reader, connect

pytestmark = pytest.mark.integration


def start(pool, weir, global_=""):
    web1 = pool.start("web1")
    proxy = weir(farm_config([("web1", web1.address)], global_=global_))
    return web1, proxy


def send_raw(port: int, data: bytes) -> tuple[int, bool]:
    """Send ``data``, read one response; return its status and whether the proxy then closed."""
    with connect(port) as s:
        s.sendall(data)
        r = Reader(s)
        resp = r.response()
        return resp.status, r.closed()


def assert_refused_log(proxy, status: int) -> None:
    lines = proxy.log_lines(wait_for=1)
    assert len(lines) == 1, lines
    line = parse(lines[0])
    assert line.status == status
    assert line.term == "PR--"
    assert line.server == "<NOSRV>"
    assert line.request == "<BADREQ>"


BAD_REQUESTS = {
    "content-length-and-transfer-encoding": (
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two-different-content-lengths": (
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "invalid-header-name": b"GET /x HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\n\r\n",
    "invalid-header-name-char": b"GET /x HTTP/1.1\r\nHost: t\r\nBad(name): 1\r\n\r\n",
    "control-char-in-header-value": b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
    "obs-fold": b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n",
    "missing-host-http11": b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "two-host-headers": b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "not-http": b"HELLO WORLD\r\n\r\n",
    "space-before-colon": b"GET /x HTTP/1.1\r\nHost : t\r\n\r\n",
}


@pytest.mark.parametrize("raw", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_invalid_request_is_refused_with_400_and_not_forwarded(pool, weir, raw):
    web1, proxy = start(pool, weir)
    status, closed = send_raw(proxy.port, raw)
    assert status == 400
    assert closed
    assert_refused_log(proxy, 400)
    assert web1.requests == []
    assert web1.connections == 0


def test_http10_without_host_is_accepted(pool, weir):
    web1, proxy = start(pool, weir)
    status, _ = send_raw(proxy.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert status == 200
    assert [seen.path for seen in web1.requests] == ["/old"]
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert (line.status, line.term, line.server) == (200, "----", "web1")


def test_bad_chunk_size_before_anything_was_forwarded_gets_400(pool, weir):
    """The head and the bad chunk arrive together: the request is refused as a whole."""
    web1, proxy = start(pool, weir)
    status, closed = send_raw(
        proxy.port,
        b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    )
    assert status == 400
    assert closed
    assert web1.requests == []
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert line.status == 400
    assert line.term[0] == "P"
    # The head was valid and parsed: its request line is logged, not <BADREQ>.
    assert line.request == "POST /count HTTP/1.1"


def test_bad_chunk_size_after_the_head_was_forwarded_cuts_both_sides(pool, weir):
    """The head already went to the server: the server connection is aborted, so the
    server never sees a complete request, and the client connection is closed (with a
    400 page, as no response byte was sent yet). The proxy detected it: state ``P...``."""
    web1, proxy = start(pool, weir)
    with connect(proxy.port) as s:
        s.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"5\r\nhello\r\n")
        assert wait_for(lambda: len(web1.requests) == 1)
        s.sendall(b"zz\r\nworld\r\n")
        answer = Reader(s).read_until_close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
    assert wait_for(lambda: web1.open_conns == 0), "the server connection was not cut"
    line = parse(proxy.log_lines(wait_for=1)[0])
    assert line.status == 400
    assert line.term[0] == "P"
    assert line.server == "web1"
    assert line.request == "POST /count HTTP/1.1"


def test_head_over_max_header_bytes_gets_431(pool, weir):
    web1, proxy = start(pool, weir, global_="max_header_bytes = 2048")
    headers = b"".join(b"X-Filler-%d: %b\r\n" % (i, b"v" * 60) for i in range(40))
    status, closed = send_raw(proxy.port, b"GET /x HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert status == 431
    assert closed
    assert_refused_log(proxy, 431)
    assert web1.requests == []


def test_uri_over_max_header_bytes_gets_414(pool, weir):
    web1, proxy = start(pool, weir, global_="max_header_bytes = 2048")
    uri = b"/" + b"u" * 3000
    status, closed = send_raw(proxy.port, b"GET " + uri + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 414
    assert closed
    assert_refused_log(proxy, 414)
    assert web1.requests == []


def test_head_just_under_max_header_bytes_is_forwarded(pool, weir):
    web1, proxy = start(pool, weir, global_="max_header_bytes = 2048")
    headers = b"".join(b"X-Filler-%d: %b\r\n" % (i, b"v" * 60) for i in range(20))
    request = b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + b"\r\n"
    status, _ = send_raw(proxy.port, request)
    assert status == 200
    assert len(web1.requests) == 1


def test_second_request_on_a_connection_is_validated_too(pool, weir):
    """A valid request, then an invalid one on the same keep-alive connection."""
    web1, proxy = start(pool, weir)
    with connect(proxy.port) as s:
        r = Reader(s)
        s.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        assert r.response().status == 200
        s.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert r.response().status == 400
        assert r.closed()
    lines = [parse(ln) for ln in proxy.log_lines(wait_for=2)]
    assert [(ln.status, ln.term) for ln in lines] == [(200, "----"), (400, "PR--")]
    assert [seen.path for seen in web1.requests] == ["/first"]
