"""Cookie persistence (appliance/persist/cookie.py): the article's "Persistence" by cookie.

Each test reads as one exchange: the client's Cookie headers go in through
``on_request``, the server's Set-Cookie headers through ``on_response``, and
the decisions say what the proxy forwards and what the log shows.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import CookieConfig
from appliance.persist.cookie import (
    DATE_SKEW,
    MAX_COOKIE_BYTES,
    NO_COOKIE,
    CookiePersistence,
    decode_date,
    encode_date,
    format_set_cookie,
    make_private,
    parse_cookie_header,
    parse_set_cookie,
    prefix_value,
    remove_cookie,
    serialise_cookie_header,
    split_prefixed,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0  # wall-clock seconds; cookie dates are absolute
SERVERS = {"web1": "server-1", "web2": "server-2"}


def persistence(**options: object) -> CookiePersistence[str]:
    return CookiePersistence(CookieConfig(**options), SERVERS)  # type: ignore[arg-type]


def pair_of(set_cookie: bytes) -> bytes:
    """What a browser sends back for a Set-Cookie: its name=value pair."""
    return set_cookie.partition(b";")[0]


# --- parsing and serialising -----------------------------------------------------------------


def test_cookie_header_pairs_with_spaces_quotes_and_empty_segments() -> None:
    header = b' a=1;b = 2 ;; c="x y";\td=; e=f=g ;'
    assert parse_cookie_header(header) == [
        (b"a", b"1"),
        (b"b", b"2"),
        (b"c", b'"x y"'),
        (b"d", b""),
        (b"e", b"f=g"),
    ]


def test_pair_without_equals_is_a_nameless_cookie() -> None:
    # RFC 6265bis and browsers: document.cookie = "abc" comes back as "abc".
    assert parse_cookie_header(b"abc; SERVERID") == [(b"", b"abc"), (b"", b"SERVERID")]
    assert serialise_cookie_header([(b"", b"abc"), (b"a", b"1")]) == b"abc; a=1"


def test_oversized_cookie_is_absent() -> None:
    big = b"big=" + b"x" * MAX_COOKIE_BYTES
    assert parse_cookie_header(b"a=1; " + big + b"; b=2") == [(b"a", b"1"), (b"b", b"2")]
    exact = b"k=" + b"v" * (MAX_COOKIE_BYTES - 2)
    assert parse_cookie_header(exact) == [(b"k", b"v" * (MAX_COOKIE_BYTES - 2))]


def test_garbage_bytes_are_kept_not_fatal() -> None:
    assert parse_cookie_header(b"\xff\x00=\x01\xfe; ok=1") == [
        (b"\xff\x00", b"\x01\xfe"),
        (b"ok", b"1"),
    ]
    assert parse_cookie_header(b"") == []
    assert parse_cookie_header(b";;; ; \t") == []


def test_remove_cookie_keeps_other_cookies_order_and_bytes() -> None:
    assert remove_cookie(b'a=1;SERVERID=web1; b="q"', b"SERVERID") == b'a=1; b="q"'
    assert remove_cookie(b"SERVERID=web1", b"SERVERID") is None
    assert remove_cookie(b"SERVERID=a; SERVERID=b", b"SERVERID") is None
    untouched = b"a=1;b=2;  XSERVERID=3"
    assert remove_cookie(untouched, b"SERVERID") is untouched


def test_set_cookie_parts() -> None:
    header = b"JSESSIONID=abc; Path=/app;HttpOnly; Max-Age=60 ;  Secure"
    cookie = parse_set_cookie(header)
    assert cookie is not None
    assert (cookie.name, cookie.value) == (b"JSESSIONID", b"abc")
    assert cookie.attributes == (
        (b"Path", b"/app"),
        (b"HttpOnly", None),
        (b"Max-Age", b"60"),
        (b"Secure", None),
    )
    assert cookie.raw_attributes == b"; Path=/app;HttpOnly; Max-Age=60 ;  Secure"
    assert cookie.with_value(b"web1~abc") == (
        b"JSESSIONID=web1~abc; Path=/app;HttpOnly; Max-Age=60 ;  Secure"
    )


def test_set_cookie_without_a_cookie() -> None:
    assert parse_set_cookie(b"") is None
    assert parse_set_cookie(b"; path=/") is None
    assert parse_set_cookie(b"=") is None
    assert parse_set_cookie(b"n=" + b"v" * MAX_COOKIE_BYTES) is None
    nameless = parse_set_cookie(b"token; path=/")
    assert nameless is not None and (nameless.name, nameless.value) == (b"", b"token")


def test_format_set_cookie_in_haproxy_order() -> None:
    assert format_set_cookie(b"S", b"v", domain=b".example.com", httponly=True, secure=True) == (
        b"S=v; path=/; domain=.example.com; HttpOnly; Secure"
    )


def test_dates_use_haproxy_encoding() -> None:
    # HAProxy 2.6 answered "SERVERID=web1|awfxh|awfxh" at Unix time 1795682690.
    assert encode_date(1795682690) == b"awfxh"
    assert decode_date(b"awfxh") == 1795682692  # rounded up to 4 seconds
    assert encode_date(decode_date(b"awfxh")) == b"awfxh"  # type: ignore[arg-type]
    for bad in (b"", b"awfx", b"awfxhh", b"awf-h", b"AAAAA", b"\xff\xff\xff\xff\xff"):
        assert decode_date(bad) is None


def test_make_private() -> None:
    assert make_private([]) == [b"private"]
    assert make_private([b"public, max-age=60"]) == [b"max-age=60", b"private"]
    assert make_private([b"max-age=60, PUBLIC, must-revalidate"]) == [
        b"max-age=60, must-revalidate",
        b"private",
    ]
    assert make_private([b"public"]) == [b"private"]
    assert make_private([b"private, max-age=5"]) is None
    assert make_private([b"no-store"]) is None
    assert make_private([b"private", b"public"]) == [b"private"]
    # A qualified private leaves the rest of the response storable.
    assert make_private([b'private="Set-Cookie"']) == [b'private="Set-Cookie"', b"private"]


# --- insert mode -----------------------------------------------------------------------------


def test_first_visit_inserts_the_cookie() -> None:
    p = persistence()
    request = p.on_request([], NOW)
    assert request is NO_COOKIE and request.state == "N" and request.server is None
    response = p.on_response([b"x=1; path=/"], "web1", request, NOW)
    assert response.state == "I"
    assert response.set_cookie_headers == [b"x=1; path=/", b"SERVERID=web1; path=/; HttpOnly"]


def test_attributes_domain_secure_httponly() -> None:
    p = persistence(domain=".example.com", secure=True, httponly=False)
    response = p.on_response([], "web2", NO_COOKIE, NOW)
    assert response.set_cookie_headers == [b"SERVERID=web2; path=/; domain=.example.com; Secure"]


def test_returning_client_goes_to_its_server_and_indirect_hides_the_cookie() -> None:
    p = persistence()
    request = p.on_request([b"a=1; SERVERID=web2;b=2", b"SERVERID=web2", b"c=3"], NOW)
    assert (request.state, request.server, request.server_cookie) == ("V", "server-2", b"web2")
    # Several headers, several cookies each: ours gone, the rest as it was.
    assert request.cookie_headers == [b"a=1; b=2", b"c=3"]
    response = p.on_response([], "web2", request, NOW)
    assert response.state == "N" and response.set_cookie_headers is None
    assert not response.uncacheable and response.cache_control is None


def test_headers_without_our_cookie_are_passed_as_they_are() -> None:
    p = persistence()
    headers = [b"a=1;b=2", b"SERVERID=web1"]
    request = p.on_request(headers, NOW)
    assert request.cookie_headers is not None
    assert request.cookie_headers[0] is headers[0]
    assert request.cookie_headers == [b"a=1;b=2"]  # the header holding only ours is dropped


def test_without_indirect_the_server_sees_the_cookie_and_it_is_not_resent() -> None:
    p = persistence(indirect=False)
    request = p.on_request([b"SERVERID=web1; a=1"], NOW)
    assert request.state == "V" and request.cookie_headers is None
    assert p.on_response([], "web1", request, NOW).state == "N"


def test_unknown_server_is_invalid_and_reinserted() -> None:
    p = persistence()
    request = p.on_request([b"SERVERID=web9; a=1"], NOW)
    assert (request.state, request.server) == ("I", None)
    assert request.cookie_headers == [b"a=1"]  # indirect removes it even when invalid
    assert p.counters.invalid == 1
    response = p.on_response([], "web1", request, NOW)
    assert response.state == "I"
    assert response.set_cookie_headers == [b"SERVERID=web1; path=/; HttpOnly"]


@pytest.mark.parametrize(
    "value",
    [b"", b"\xff\xfe", b"web1\x00", b"WEB1", b"web1 x", b'"web', b"web1~x"],
)
def test_garbage_values_are_invalid(value: bytes) -> None:
    p = persistence()
    request = p.on_request([b"SERVERID=" + value], NOW)
    assert request.state == "I" and request.server is None


def test_quoted_value_is_understood() -> None:
    request = persistence().on_request([b'SERVERID="web1"'], NOW)
    assert (request.state, request.server) == ("V", "server-1")


def test_oversized_cookie_of_ours_is_absent_counted_and_still_removed() -> None:
    p = persistence()
    request = p.on_request([b"a=1; SERVERID=web1" + b"x" * MAX_COOKIE_BYTES], NOW)
    assert request.state == "N" and request.server is None
    assert request.cookie_headers == [b"a=1"]
    assert p.counters.oversized == 1


def test_first_usable_occurrence_decides() -> None:
    p = persistence()
    assert p.on_request([b"SERVERID=zzz; SERVERID=web2"], NOW).server == "server-2"
    assert p.on_request([b"SERVERID=web1", b"SERVERID=web2"], NOW).server == "server-1"
    assert p.on_request([b"SERVERID=zzz; SERVERID=yyy"], NOW).state == "I"


def test_server_down_is_d_and_redispatch_persists_on_the_new_server() -> None:
    p = persistence()
    request = p.on_request([b"SERVERID=web1"], NOW, available=lambda s: s != "server-1")
    assert (request.state, request.server) == ("D", "server-1")
    # The caller redispatched to web2: the client is moved there for good.
    response = p.on_response([], "web2", request, NOW)
    assert response.state == "I"
    assert response.set_cookie_headers == [b"SERVERID=web2; path=/; HttpOnly"]
    # Without redispatch (or a draining server the caller still uses): nothing to change.
    assert p.on_response([], "web1", request, NOW).state == "N"


def test_connection_redispatch_after_a_valid_cookie_inserts_the_new_server() -> None:
    p = persistence()
    request = p.on_request([b"SERVERID=web1"], NOW)
    assert request.state == "V"
    assert p.on_response([], "web2", request, NOW).set_cookie_headers == [
        b"SERVERID=web2; path=/; HttpOnly"
    ]


def test_server_setting_our_cookie_is_replaced_never_duplicated() -> None:
    p = persistence()
    response = p.on_response(
        [b"SERVERID=placeholder; path=/", b"a=1", b"SERVERID=again"], "web1", NO_COOKIE, NOW
    )
    assert response.state == "I"
    assert response.set_cookie_headers == [b"a=1", b"SERVERID=web1; path=/; HttpOnly"]
    # A valid client: the server's copy is removed, ours is not re-sent.
    request = p.on_request([b"SERVERID=web1"], NOW)
    response = p.on_response([b"SERVERID=x", b"b=2"], "web1", request, NOW)
    assert response.state == "D" and response.set_cookie_headers == [b"b=2"]
    assert not response.uncacheable
    # Oversized, it is removed all the same.
    response = p.on_response([b"SERVERID=" + b"x" * MAX_COOKIE_BYTES], "web1", request, NOW)
    assert response.set_cookie_headers == [] and p.counters.oversized == 1


def test_server_without_cookie_value_deletes_the_clients_cookie() -> None:
    p = persistence(domain="example.com")
    request = p.on_request([b"SERVERID=web1"], NOW)
    response = p.on_response([], None, request, NOW)
    assert response.state == "D"
    assert response.set_cookie_headers == [
        b"SERVERID=; Expires=Thu, 01-Jan-1970 00:00:01 GMT; path=/; domain=example.com; HttpOnly"
    ]
    assert p.on_response([], "", NO_COOKIE, NOW).state == "N"


def test_nocache_makes_responses_with_our_cookie_private() -> None:
    p = persistence()
    response = p.on_response([], "web1", NO_COOKIE, NOW, cache_control=[b"public, max-age=600"])
    assert response.uncacheable
    assert response.cache_control == [b"max-age=600", b"private"]
    already = p.on_response([], "web1", NO_COOKIE, NOW, cache_control=[b"no-store"])
    assert already.uncacheable and already.cache_control is None
    off = persistence(nocache=False).on_response([], "web1", NO_COOKIE, NOW, [b"public"])
    assert not off.uncacheable and off.cache_control is None


def test_invalid_configuration_is_refused_with_context() -> None:
    with pytest.raises(ValueError, match="cookie mode 'sticky'"):
        CookiePersistence(CookieConfig(mode="sticky"), SERVERS)
    with pytest.raises(ValueError, match=r"'a\|b'.*insert mode"):
        CookiePersistence(CookieConfig(), {"a|b": 1})
    with pytest.raises(ValueError, match=r"'a~b'.*prefix mode"):
        CookiePersistence(CookieConfig(mode="prefix"), {"a~b": 1})
    with pytest.raises(ValueError, match="'a b'"):
        CookiePersistence(CookieConfig(mode="rewrite"), {"a b": 1})


# --- insert mode with dates (maxidle, maxlife) -----------------------------------------------


def dated_cookie(last: float, first: float | None = None) -> bytes:
    value = b"SERVERID=web1|" + encode_date(last)
    return value if first is None else value + b"|" + encode_date(first)


def test_maxidle_cookie_carries_the_last_date() -> None:
    p = persistence(maxidle=600)
    response = p.on_response([], "web1", NO_COOKIE, NOW)
    assert response.set_cookie_headers == [
        b"SERVERID=web1|" + encode_date(NOW) + b"; path=/; HttpOnly"
    ]
    request = p.on_request([pair_of(response.set_cookie_headers[0])], NOW + 100)
    assert (request.state, request.server) == ("V", "server-1")
    assert request.last_date == decode_date(encode_date(NOW))


def test_maxidle_refresh_once_a_quarter_old() -> None:
    p = persistence(maxidle=600)
    fresh = p.on_request([dated_cookie(NOW)], NOW + 140)
    assert p.on_response([], "web1", fresh, NOW + 140).state == "N"
    stale = p.on_request([dated_cookie(NOW)], NOW + 160)
    response = p.on_response([], "web1", stale, NOW + 160)
    assert response.state == "U" and response.uncacheable
    assert response.set_cookie_headers == [
        b"SERVERID=web1|" + encode_date(NOW + 160) + b"; path=/; HttpOnly"
    ]


def test_maxidle_expiry() -> None:
    p = persistence(maxidle=600)
    request = p.on_request([dated_cookie(NOW)], NOW + 700)
    assert (request.state, request.server) == ("E", None)
    assert request.cookie_headers == []  # still hidden from the server
    response = p.on_response([], "web2", request, NOW + 700)
    assert response.state == "I"
    assert response.set_cookie_headers == [
        b"SERVERID=web2|" + encode_date(NOW + 700) + b"; path=/; HttpOnly"
    ]


def test_maxlife_keeps_the_first_date_through_refreshes_then_expires() -> None:
    p = persistence(maxidle=600, maxlife=3600)
    inserted = p.on_response([], "web1", NO_COOKIE, NOW).set_cookie_headers
    assert inserted == [
        b"SERVERID=web1|" + encode_date(NOW) + b"|" + encode_date(NOW) + b"; path=/; HttpOnly"
    ]
    cookie = pair_of(inserted[0])
    t = NOW
    for _ in range(13):  # an active user, every 5 minutes
        t += 300
        request = p.on_request([cookie], t)
        if t - NOW > 3600:
            assert request.state == "E"
            break
        assert request.state == "V"
        response = p.on_response([], "web1", request, t)
        assert response.state == "U"
        cookie = pair_of(response.set_cookie_headers[0])  # type: ignore[index]
        assert cookie.endswith(b"|" + encode_date(NOW))  # the first date never moves
    else:
        pytest.fail("maxlife never expired the cookie")


def test_maxlife_alone() -> None:
    p = persistence(maxlife=3600)
    request = p.on_request([dated_cookie(NOW, NOW)], NOW + 3000)
    assert request.state == "V"
    assert p.on_response([], "web1", request, NOW + 3000).state == "N"  # no idle date to refresh
    assert p.on_request([dated_cookie(NOW, NOW)], NOW + 3700).state == "E"


def test_cookie_without_required_dates_is_old_and_ignored() -> None:
    p = persistence(maxidle=600, maxlife=3600)
    request = p.on_request([b"SERVERID=web1"], NOW)
    assert (request.state, request.server) == ("O", None)
    assert p.on_response([], "web1", request, NOW).state == "I"
    assert p.on_request([dated_cookie(NOW)], NOW).state == "O"  # first date missing
    # Unknown servers stay invalid whatever their dates.
    assert p.on_request([b"SERVERID=web9"], NOW).state == "I"


@pytest.mark.parametrize(
    "dates",
    [
        b"",
        b"|",
        b"garbage",
        b"AAAA!",
        b"AAAAA",  # zero is no date
        encode_date(NOW) + b"|" + encode_date(NOW) + b"|" + encode_date(NOW),
        encode_date(NOW + DATE_SKEW + 8),  # in the future: trying to buy time
        encode_date(NOW + 3000) + b"|" + encode_date(NOW),
        encode_date(NOW) + b"|" + encode_date(NOW + 400),  # first after last
        encode_date(NOW) + b"|",
        encode_date(NOW) + b"|xx",
    ],
)
def test_forged_or_garbled_dates_expire_the_cookie(dates: bytes) -> None:
    p = persistence(maxidle=600)
    request = p.on_request([b"SERVERID=web1|" + dates], NOW)
    assert (request.state, request.server) == ("E", None)
    assert p.counters.forged == 1
    assert p.on_response([], "web1", request, NOW).state == "I"


def test_small_clock_skew_is_tolerated() -> None:
    p = persistence(maxidle=600)
    assert p.on_request([dated_cookie(NOW + 30)], NOW).state == "V"


def test_dates_dropped_when_the_configuration_no_longer_wants_them() -> None:
    p = persistence()
    request = p.on_request([dated_cookie(NOW, NOW)], NOW)
    assert request.state == "V" and request.dated
    response = p.on_response([], "web1", request, NOW)
    assert response.state == "U"
    assert response.set_cookie_headers == [b"SERVERID=web1; path=/; HttpOnly"]
    q = persistence(maxidle=600)  # maxlife was switched off: the first date goes
    request = q.on_request([dated_cookie(NOW, NOW)], NOW + 10)
    assert q.on_response([], "web1", request, NOW + 10).set_cookie_headers == [
        b"SERVERID=web1|" + encode_date(NOW + 10) + b"; path=/; HttpOnly"
    ]


# --- prefix mode -----------------------------------------------------------------------------


def prefix_persistence(**options: object) -> CookiePersistence[str]:
    return persistence(name="JSESSIONID", mode="prefix", **options)


def test_prefix_round_trip() -> None:
    p = prefix_persistence()
    response = p.on_response(
        [b"JSESSIONID=abc123; Path=/shop; HttpOnly", b"lang=fr"], "web1", NO_COOKIE, NOW
    )
    assert response.state == "R" and response.uncacheable
    assert response.set_cookie_headers == [
        b"JSESSIONID=web1~abc123; Path=/shop; HttpOnly",
        b"lang=fr",
    ]
    request = p.on_request([b"lang=fr; JSESSIONID=web1~abc123"], NOW)
    assert (request.state, request.server, request.app_cookie) == ("V", "server-1", b"abc123")
    assert request.cookie_headers == [b"lang=fr; JSESSIONID=abc123"]


def test_prefix_keeps_quotes_outside() -> None:
    p = prefix_persistence()
    response = p.on_response([b'JSESSIONID="a b"'], "web2", NO_COOKIE, NOW)
    assert response.set_cookie_headers == [b'JSESSIONID="web2~a b"']
    request = p.on_request([b'JSESSIONID="web2~a b"'], NOW)
    assert request.server == "server-2" and request.cookie_headers == [b'JSESSIONID="a b"']


def test_prefix_unknown_or_missing_prefix() -> None:
    p = prefix_persistence()
    unknown = p.on_request([b"JSESSIONID=web9~abc"], NOW)
    assert unknown.state == "I" and unknown.cookie_headers == [b"JSESSIONID=abc"]
    bare = p.on_request([b"JSESSIONID=abc"], NOW)
    assert bare.state == "I" and bare.cookie_headers is None  # the application's, untouched
    assert p.counters.invalid == 2


def test_prefix_does_not_insert_and_passes_deletions() -> None:
    p = prefix_persistence()
    assert p.on_response([], "web1", NO_COOKIE, NOW).state == "N"
    deletion = [b"JSESSIONID=; Max-Age=0"]
    response = p.on_response(deletion, "web1", NO_COOKIE, NOW)
    assert response.state == "P" and response.set_cookie_headers is None
    assert not response.uncacheable


def test_prefix_indirect_never_drops_a_new_session_id() -> None:
    p = prefix_persistence(indirect=True)
    request = p.on_request([b"JSESSIONID=web1~old"], NOW)
    response = p.on_response([b"JSESSIONID=new; Path=/"], "web1", request, NOW)
    assert response.set_cookie_headers == [b"JSESSIONID=web1~new; Path=/"]


def test_prefix_redispatch_when_down() -> None:
    p = prefix_persistence()
    request = p.on_request([b"JSESSIONID=web1~abc"], NOW, available=lambda s: False)
    assert request.state == "D" and request.cookie_headers == [b"JSESSIONID=abc"]
    response = p.on_response([b"JSESSIONID=fresh"], "web2", request, NOW)
    assert response.set_cookie_headers == [b"JSESSIONID=web2~fresh"]


# --- rewrite mode ----------------------------------------------------------------------------


def test_rewrite_replaces_the_placeholder_value() -> None:
    p = persistence(mode="rewrite", indirect=False)
    response = p.on_response([b"SERVERID=XXX; path=/; Secure"], "web2", NO_COOKIE, NOW)
    assert response.state == "R" and response.uncacheable
    assert response.set_cookie_headers == [b"SERVERID=web2; path=/; Secure"]
    request = p.on_request([b"SERVERID=web2"], NOW)
    assert request.state == "V" and request.cookie_headers is None  # the server sees it
    assert p.on_response([], "web2", request, NOW).state == "N"


def test_rewrite_indirect_removes_the_servers_cookie_for_valid_clients() -> None:
    p = persistence(mode="rewrite", indirect=True)
    request = p.on_request([b"SERVERID=web1"], NOW)
    assert request.cookie_headers is None  # only insert mode strips requests
    response = p.on_response([b"SERVERID=XXX; path=/"], "web1", request, NOW)
    assert response.state == "D" and response.set_cookie_headers == []
    moved = p.on_response([b"SERVERID=XXX; path=/"], "web2", request, NOW)
    assert moved.state == "R" and moved.set_cookie_headers == [b"SERVERID=web2; path=/"]


def test_rewrite_without_server_cookie_passes_it_on() -> None:
    p = persistence(mode="rewrite")
    response = p.on_response([b"SERVERID=XXX"], None, NO_COOKIE, NOW)
    assert response.state == "P" and response.set_cookie_headers is None


# --- properties ------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 6265 cookie-octet: visible ASCII except DQUOTE, comma, semicolon and backslash.
OCTETS = [c for c in range(0x21, 0x7F) if c not in b'",;\\']

names = st.text(TOKEN_CHARS, min_size=1, max_size=20).map(str.encode)
octets = st.lists(st.sampled_from(OCTETS), max_size=40).map(bytes)
values = st.one_of(octets, octets.map(lambda v: b'"' + v + b'"'))


@given(st.lists(st.tuples(names, values), max_size=10))
def test_serialise_then_parse_is_identity(cookies: list[tuple[bytes, bytes]]) -> None:
    assert parse_cookie_header(serialise_cookie_header(cookies)) == cookies


@given(names, values, st.booleans(), st.booleans())
def test_set_cookie_format_then_parse(
    name: bytes, value: bytes, httponly: bool, secure: bool
) -> None:
    cookie = parse_set_cookie(format_set_cookie(name, value, httponly=httponly, secure=secure))
    assert cookie is not None and (cookie.name, cookie.value) == (name, value)
    expected = [(b"path", b"/")] + [(b"HttpOnly", None)] * httponly + [(b"Secure", None)] * secure
    assert list(cookie.attributes) == expected


@given(st.text(TOKEN_CHARS.replace("~", ""), min_size=1, max_size=10).map(str.encode), st.binary())
def test_prefix_encode_then_decode_is_identity(server: bytes, session: bytes) -> None:
    assert split_prefixed(prefix_value(server, session)) == (server, session)


@given(st.floats(min_value=4, max_value=2**32 - 8))
def test_date_round_trip(seconds: float) -> None:
    decoded = decode_date(encode_date(seconds))
    assert decoded is not None and 0 <= decoded - int(seconds) <= 3


@given(st.binary(max_size=300))
def test_parsers_never_raise(data: bytes) -> None:
    parse_cookie_header(data)
    parse_set_cookie(data)
    remove_cookie(data, b"SERVERID")
    split_prefixed(data)
    decode_date(data[:5])
    make_private([data])


@given(st.lists(st.binary(max_size=120), max_size=4), st.binary(max_size=120))
def test_decisions_never_raise(cookie_headers: list[bytes], set_cookie: bytes) -> None:
    for p in (
        persistence(maxidle=60, maxlife=600),
        prefix_persistence(),
        persistence(mode="rewrite"),
    ):
        request = p.on_request(cookie_headers, NOW, available=lambda s: s == "server-1")
        assert request.state in "NIDVEO"
        response = p.on_response([set_cookie], "web1", request, NOW)
        assert response.state in "NIUPRD"
