"""Check pieces without sockets: response assembly and judging, status lists, timing."""

from __future__ import annotations

import pytest

from appliance.checks.http import MAX_RESPONSE, HttpResponse, check_request, parse_statuses
from appliance.checks.observe import failure_error, status_error
from appliance.checks.scheduler import interval
from appliance.checks.state import CheckResult, Event, ServerState, ramp
from appliance.config.load import ConfigError, load_text
from appliance.config.model import CheckConfig
from appliance.proxy.http import InvalidResponse

pytestmark = pytest.mark.unit
ANY = parse_statuses("200-399")


def judged(*pieces: bytes, closed: bool = False, expect_body: str = "") -> CheckResult:
    response = HttpResponse()
    for piece in pieces:
        response.feed(piece)
    if closed:
        response.closed()
    return response.judge(ANY, expect_body, 0.003)


def test_parse_statuses():
    assert parse_statuses("200") == ((200, 200),)
    assert parse_statuses("200, 204-206") == ((200, 200), (204, 206))


def test_request():
    config = CheckConfig(method="HEAD", path="/ping", host="www.example.com")
    assert check_request(config, "127.0.0.1:80") == (
        b"HEAD /ping HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: weir-check\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    assert b"Host: 127.0.0.1:80\r\n" in check_request(CheckConfig(), "127.0.0.1:80")


def test_a_response_in_pieces():
    result = judged(b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 2\r\n\r\no", b"k")
    assert (result.ok, result.reason, result.code) == (True, "Layer7 check passed", 200)


def test_wrong_status_carries_the_reason_phrase():
    result = judged(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    assert (result.reason, result.code, result.info) == (
        "Layer7 wrong status",
        500,
        "Internal Server Error",
    )


def test_unfinished_response_is_invalid():
    result = judged(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", closed=True)
    assert (result.ok, result.reason) == (False, "Layer7 invalid response")


def test_body_until_close_and_chunked_bodies():
    assert judged(b"HTTP/1.0 200 OK\r\n\r\nall good", closed=True, expect_body="good").ok
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ngood\r\n0\r\n\r\n"
    assert judged(chunked, expect_body="good").ok
    assert not judged(chunked, expect_body="bad").ok


def test_response_is_cut_at_the_cap():
    response = HttpResponse()
    response.feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_RESPONSE + 10))
    assert response.complete
    assert len(response.body) == MAX_RESPONSE


def test_garbage_is_refused():
    with pytest.raises(InvalidResponse):
        HttpResponse().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(InvalidResponse):
        HttpResponse().feed(b"x" * (MAX_RESPONSE + 1))


def test_head_and_bodiless_statuses_end_with_the_head():
    response = HttpResponse(head_only=True)
    response.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert response.complete
    response = HttpResponse()
    response.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert response.complete


def test_interval_follows_the_state():
    config = CheckConfig(inter=2.0, fastinter=0.5, downinter=5.0, rise=2, fall=2)
    state = ServerState("app", "web1", rise=2, fall=2)
    bad = CheckResult(False, "Layer4 timeout")
    good = CheckResult(True, "Layer4 check passed")
    assert interval(state, config) == 2.0
    state.feed(Event.CHECK_FAILED, bad)
    assert interval(state, config) == 0.5  # going down
    state.feed(Event.CHECK_FAILED, bad)
    assert interval(state, config) == 5.0  # down
    state.feed(Event.CHECK_PASSED, good)
    assert interval(state, config) == 0.5  # going up


def test_allbackups_is_a_backend_key():
    text = (
        '[frontends.www]\nbind = ["127.0.0.1:8080"]\ndefault_backend = "app"\n'
        '[backends.app]\nallbackups = true\n[[backends.app.servers]]\nname = "a"\n'
        'address = "127.0.0.1:9001"\n'
    )
    assert load_text(text).backends["app"].allbackups is True
    assert load_text(text.replace("allbackups = true\n", "")).backends["app"].allbackups is False


def test_slowstart_ramp():
    assert [ramp(10, t, 10.0) for t in (0, 0.5, 1, 4.2, 9.99, 10, 11)] == [
        1,
        1,
        1,
        5,
        10,
        10,
        10,
    ]
    assert ramp(0, 1, 10.0) == 0
    assert ramp(200, 5, 10.0) == 100


def test_slowstart_ramps_maxconn_like_the_weight():
    # HAProxy ramps both; at least one connection, and "unlimited" (0) stays so.
    assert [ramp(100, t, 10.0) for t in (0, 2.5, 5, 10)] == [1, 25, 50, 100]
    assert ramp(0, 5, 10.0) == 0


def test_what_observation_counts():
    assert status_error("layer7", 500).info == "Wrong http response"
    assert status_error("layer7", 503).reason == "Health analyze"
    assert status_error("layer7", 501) is None  # the request's fault, as in HAProxy
    assert status_error("layer7", 505) is None
    assert status_error("layer7", 404) is None
    assert status_error("layer4", 500) is None
    assert status_error("none", 500) is None
    for observe in ("layer4", "layer7"):
        for reason in ("Layer4 connection problem", "Layer4 timeout"):
            assert failure_error(observe, reason).info == "L4 unsuccessful connection"
    assert failure_error("layer7", "Layer7 invalid response").info == "Invalid http response"
    assert failure_error("layer4", "Layer7 invalid response") is None
    assert failure_error("none", "Layer4 timeout") is None


CHECKED = (
    '[frontends.www]\nbind = ["127.0.0.1:8080"]\ndefault_backend = "app"\n'
    '[backends.app]\n[backends.app.check]\n{keys}\n[[backends.app.servers]]\nname = "a"\n'
    'address = "127.0.0.1:9001"\n'
)


def test_observe_keys():
    check = load_text(CHECKED.format(keys="")).backends["app"].check
    assert (check.observe, check.error_limit) == ("none", 10)
    check = (
        load_text(CHECKED.format(keys='observe = "layer7"\nerror_limit = 3')).backends["app"].check
    )
    assert (check.observe, check.error_limit) == ("layer7", 3)
    with pytest.raises(ConfigError, match="must be one of none, layer4, layer7"):
        load_text(CHECKED.format(keys='observe = "layer5"'))
    with pytest.raises(ConfigError, match="error_limit"):
        load_text(CHECKED.format(keys="error_limit = 0"))
