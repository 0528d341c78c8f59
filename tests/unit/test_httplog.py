"""The httplog access line: HAProxy's `option httplog` format, field by field."""

import calendar
import os
import time
from collections.abc import Iterator

import pytest

from appliance.log.httplog import REQUEST_LINE_MAX, HttpLogFormatter, escape_request_line

pytestmark = pytest.mark.unit

# 26 Nov 2026 07:19:28 UTC; the extra half millisecond keeps float rounding away
# from the millisecond boundary.
T0 = calendar.timegm((2026, 11, 26, 7, 19, 28)) + 0.9025

EXAMPLE = (
    "Nov 26 07:19:28 lb1 weir[6718]: 127.0.0.1:60080 [26/Nov/2026:07:19:28.902] www app/web1 "
    '0/0/0/1/1 200 144 - - --NI 1/1/0/0/0 0/0 "GET /x1 HTTP/1.1"'
)


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Pin local time to UTC so the expected lines are fixed strings."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def line(fmt: HttpLogFormatter, accept_ts: float = T0, now: float = T0, **fields: object) -> str:
    """Format the example request, with some fields replaced."""
    args: dict[str, object] = dict(
        client_ip="127.0.0.1",
        client_port=60080,
        frontend="www",
        backend="app",
        server="web1",
        tr=0,
        tw=0,
        tc=0,
        tr_resp=1,
        ta=1,
        status=200,
        bytes_out=144,
        termination="--NI",
        actconn=1,
        feconn=1,
        beconn=0,
        srv_conn=0,
        retries=0,
        redispatched=False,
        srv_queue=0,
        backend_queue=0,
        request_line="GET /x1 HTTP/1.1",
    )
    args.update(fields)
    return fmt.format(accept_ts=accept_ts, now=now, **args)


@pytest.fixture
def fmt() -> HttpLogFormatter:
    return HttpLogFormatter(hostname="lb1", pid=6718)


def test_example_line_is_exact(fmt: HttpLogFormatter) -> None:
    assert line(fmt) == EXAMPLE


def test_example_line_with_all_arguments_positional(fmt: HttpLogFormatter) -> None:
    got = fmt.format(
        "127.0.0.1", 60080, T0, "www", "app", "web1", 0, 0, 0, 1, 1, 200, 144, "--NI",
        1, 1, 0, 0, 0, False, 0, 0, "GET /x1 HTTP/1.1", "-", "-", T0,
    )  # fmt: skip
    assert got == EXAMPLE


def test_local_time_is_used_for_header_and_accept_date() -> None:
    os.environ["TZ"] = "Asia/Kolkata"  # UTC+05:30, no DST
    time.tzset()
    got = line(HttpLogFormatter(hostname="lb1", pid=6718))
    assert got.startswith("Nov 26 12:49:28 lb1 weir[6718]: 127.0.0.1:60080 ")
    assert "[26/Nov/2026:12:49:28.902]" in got


def test_unfinished_phases_log_minus_one(fmt: HttpLogFormatter) -> None:
    got = line(fmt, tr=-1, tw=-1, tc=-1, tr_resp=-1, ta=5000, status=-1, termination="cR--")
    assert " www app/web1 -1/-1/-1/-1/5000 -1 144 - - cR-- " in got


def test_no_server_chosen_logs_nosrv(fmt: HttpLogFormatter) -> None:
    got = line(fmt, backend="www", server="", status=503, termination="SC--", tc=-1, tr_resp=-1)
    assert " www www/<NOSRV> 0/0/-1/-1/1 503 " in got


def test_ipv6_client_is_printed_without_brackets(fmt: HttpLogFormatter) -> None:
    got = line(fmt, client_ip="2001:db8::1", client_port=443)
    assert ": 2001:db8::1:443 [26/Nov/2026:07:19:28.902] " in got


def test_redispatch_prefixes_retries_with_plus(fmt: HttpLogFormatter) -> None:
    assert " 3/2/1/1/+2 0/0 " in line(
        fmt, actconn=3, feconn=2, beconn=1, srv_conn=1, retries=2, redispatched=True
    )
    assert " 1/1/0/0/2 0/0 " in line(fmt, retries=2)


def test_queues_and_cookies(fmt: HttpLogFormatter) -> None:
    got = line(fmt, srv_queue=4, backend_queue=7, req_cookie="SERVERID=web1", res_cookie="-")
    assert " 144 SERVERID=web1 - --NI 1/1/0/0/0 4/7 " in got


def test_day_below_ten_is_space_padded_in_header_only(fmt: HttpLogFormatter) -> None:
    ts = calendar.timegm((2026, 3, 5, 1, 2, 3)) + 0.0075
    got = line(fmt, accept_ts=ts, now=ts)
    assert got.startswith("Mar  5 01:02:03 lb1 weir[6718]: ")
    assert "[05/Mar/2026:01:02:03.007]" in got


def test_empty_request_line_logs_badreq(fmt: HttpLogFormatter) -> None:
    assert line(fmt, request_line="", status=400, termination="PR--").endswith(' "<BADREQ>"')


def test_escape_keeps_printable_ascii_and_spaces() -> None:
    assert escape_request_line(b"GET /a?b=c&d=%20e HTTP/1.1") == "GET /a?b=c&d=%20e HTTP/1.1"


def test_escape_quotes_hash_control_and_non_ascii() -> None:
    raw = b'GET /"q"#f\t\x00\x1f\x7f/caf\xc3\xa9 HTTP/1.1'
    assert escape_request_line(raw) == "GET /#22q#22#23f#09#00#1F#7F/caf#C3#A9 HTTP/1.1"


def test_escape_truncates_long_lines_before_escaping() -> None:
    raw = b"GET /" + b"a" * 5000 + b" HTTP/1.1"
    assert escape_request_line(raw) == (b"GET /" + b"a" * (REQUEST_LINE_MAX - 5)).decode()
    assert escape_request_line(b'"' * 2000) == "#22" * REQUEST_LINE_MAX


def test_escaped_line_goes_inside_quotes(fmt: HttpLogFormatter) -> None:
    got = line(fmt, request_line=escape_request_line(b'GET /"x" HTTP/1.1'))
    assert got.endswith(' "GET /#22x#22 HTTP/1.1"')


def test_date_cache_follows_milliseconds_and_seconds(fmt: HttpLogFormatter) -> None:
    base = calendar.timegm((2026, 12, 31, 23, 59, 59))
    stamps = [
        (base + 0.0005, "[31/Dec/2026:23:59:59.000]"),
        (base + 0.0015, "[31/Dec/2026:23:59:59.001]"),
        (base + 0.9995, "[31/Dec/2026:23:59:59.999]"),
        (base + 1.0005, "[01/Jan/2027:00:00:00.000]"),
        (base + 1.5005, "[01/Jan/2027:00:00:00.500]"),
        (base + 0.2505, "[31/Dec/2026:23:59:59.250]"),  # a late log for an older request
    ]
    for ts, expected in stamps:
        assert expected in line(fmt, accept_ts=ts, now=ts)


def test_header_cache_follows_seconds(fmt: HttpLogFormatter) -> None:
    base = calendar.timegm((2026, 12, 31, 23, 59, 59))
    assert line(fmt, now=base + 0.9).startswith("Dec 31 23:59:59 lb1 ")
    assert line(fmt, now=base + 1.0).startswith("Jan  1 00:00:00 lb1 ")
    assert line(fmt, now=base + 1.7).startswith("Jan  1 00:00:00 lb1 ")
    assert line(fmt, now=base + 2.0).startswith("Jan  1 00:00:01 lb1 ")


def test_header_defaults_to_the_current_time(fmt: HttpLogFormatter) -> None:
    before = time.strftime("%b %e %H:%M:%S", time.localtime())
    got = fmt.format(
        "127.0.0.1", 1, T0, "www", "app", "web1", 0, 0, 0, 1, 1, 200, 1, "----",
        1, 1, 0, 0, 0, False, 0, 0, "GET / HTTP/1.1",
    )  # fmt: skip
    after = time.strftime("%b %e %H:%M:%S", time.localtime())
    assert got[:15] in (before, after)


def test_event_line(fmt: HttpLogFormatter) -> None:
    got = fmt.event("Server app/web1 is DOWN, reason: Layer4 connection problem.", ts=T0)
    assert got == (
        "Nov 26 07:19:28 lb1 weir[6718]: "
        "Server app/web1 is DOWN, reason: Layer4 connection problem."
    )


def test_default_hostname_and_pid() -> None:
    got = HttpLogFormatter().event("Proxy www started.", ts=T0)
    assert got.endswith(f" {os.uname().nodename} weir[{os.getpid()}]: Proxy www started.")
