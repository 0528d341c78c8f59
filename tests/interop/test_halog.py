"""The access log read by HAProxy's own log analyser, halog (Debian package haproxy).

A few hundred lines covering the termination states Weir emits are formatted,
written through a FileSink and summarised by ``halog -srv``, ``-st``, ``-tc``
and ``-cc``: halog must report zero parsing errors and the counts generated.
"""

import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from appliance.log.httplog import HttpLogFormatter, escape_request_line
from appliance.log.sink import FileSink

pytestmark = pytest.mark.interop

HALOG = Path("/usr/sbin/halog")
if not HALOG.exists():
    pytest.skip(
        "halog not found at /usr/sbin/halog: install the Debian package 'haproxy'",
        allow_module_level=True,
    )

SERVERS = ("web1", "web2", "web3")

# termination state -> (status, TR, Tw, Tc, Tr, server chosen?, request read?)
# Timers follow HAProxy: -1 for every phase the request did not reach.
SCENARIOS: dict[str, tuple[int, int, int, int, int, bool, bool]] = {
    "----": (200, 0, 0, 1, 3, True, True),
    "--NI": (200, 0, 0, 1, 2, True, True),
    "--VN": (304, 1, 0, 0, 1, True, True),
    "CD--": (200, 0, 0, 1, 5, True, True),  # client went away while the body was sent
    "cD--": (200, 0, 0, 1, 4, True, True),  # client timeout during the body
    "SC--": (503, 0, 0, -1, -1, True, True),  # server refused the connection
    "sC--": (503, 0, 0, -1, -1, True, True),  # connect timeout
    "sH--": (504, 0, 0, 1, -1, True, True),  # server timeout before the headers
    "sQ--": (503, 0, 3000, -1, -1, False, True),  # timeout in the backend queue
    "PR--": (403, 0, -1, -1, -1, False, True),  # Weir refused the request
    "CR--": (400, -1, -1, -1, -1, False, False),  # client aborted before a full request
}


def generate(count: int) -> tuple[list[str], list[dict[str, Any]]]:
    fmt = HttpLogFormatter(hostname="lb1", pid=4242)
    rng = random.Random(20261126)
    base = time.mktime((2026, 11, 3, 23, 59, 58, 0, 0, -1))  # day < 10: padded header
    lines, records = [], []
    for i in range(count):
        term = rng.choice(list(SCENARIOS))
        status, tr, tw, tc, tr_resp, has_server, has_request = SCENARIOS[term]
        server = rng.choice(SERVERS) if has_server else ""
        backend = "app" if has_server or term == "sQ--" else "www"
        ta = max(tr, 0) + max(tw, 0) + max(tc, 0) + max(tr_resp, 0) + rng.randint(0, 50)
        accept = base + i * 0.0137
        retries = rng.choice((0, 0, 0, 1, 3))
        raw = f"GET /item/{i}?q={rng.random()} HTTP/1.1".encode()
        if rng.random() < 0.1:
            raw = b'GET /odd/"quoted"/caf\xc3\xa9\t#frag HTTP/1.1'
        lines.append(
            fmt.format(
                client_ip=rng.choice(("127.0.0.1", "::1", "2001:db8::7")),
                client_port=rng.randint(1024, 65535),
                accept_ts=accept,
                frontend="www",
                backend=backend,
                server=server,
                tr=tr,
                tw=tw,
                tc=tc,
                tr_resp=tr_resp,
                ta=ta,
                status=status,
                bytes_out=rng.randint(0, 100000),
                termination=term,
                actconn=rng.randint(1, 500),
                feconn=rng.randint(1, 500),
                beconn=rng.randint(0, 500),
                srv_conn=rng.randint(0, 100),
                retries=retries,
                redispatched=retries > 0 and rng.random() < 0.5,
                srv_queue=0,
                backend_queue=rng.randint(0, 5) if term == "sQ--" else 0,
                request_line=escape_request_line(raw) if has_request else "",
                req_cookie=rng.choice(("-", "SERVERID=web1")),
                now=accept + ta / 1000,
            )
        )
        records.append({"srv": f"{backend}/{server or '<NOSRV>'}", "status": status, "term": term})
    return lines, records


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    lines, records = generate(600)
    path = tmp_path_factory.mktemp("halog") / "access.log"
    sink = FileSink(str(path))
    for line in lines:
        sink.write(line)
    sink.close()
    return path, records


def halog(path: Path, *flags: str) -> list[list[str]]:
    """Run halog on the file; return its output rows after checking its summary."""
    with path.open("rb") as log:
        done = subprocess.run(
            [str(HALOG), *flags], stdin=log, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    # Without -q, halog ends with "N lines in, M lines out, K parsing errors" on stderr.
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.endswith(" 0 parsing errors"), summary
    assert summary.startswith(f"{sum(1 for _ in path.open())} lines in,"), summary
    return [row.split() for row in done.stdout.splitlines() if not row.startswith("#")]


def test_per_server_counts(generated: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = generated
    rows = halog(path, "-srv")
    # columns: srv_name 1xx 2xx 3xx 4xx 5xx other tot_req req_ok pct_ok avg_ct avg_rt
    assert {row[0]: int(row[7]) for row in rows} == Counter(r["srv"] for r in records)
    for row in rows:
        classes = Counter(r["status"] // 100 for r in records if r["srv"] == row[0])
        assert [int(n) for n in row[1:6]] == [classes[c] for c in (1, 2, 3, 4, 5)], row[0]


def test_status_counts(generated: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = generated
    rows = halog(path, "-st")
    assert {int(row[0]): int(row[1]) for row in rows} == Counter(r["status"] for r in records)


def test_termination_counts(generated: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = generated
    rows = halog(path, "-tc")
    assert {row[0]: int(row[1]) for row in rows} == Counter(r["term"][:2] for r in records)


def test_cookie_counts(generated: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = generated
    rows = halog(path, "-cc")
    assert {row[0]: int(row[1]) for row in rows} == Counter(r["term"][2:] for r in records)


def test_error_filter_counts_5xx(generated: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = generated
    rows = halog(path, "-e", "-st")
    assert {int(row[0]): int(row[1]) for row in rows} == Counter(
        r["status"] for r in records if r["status"] >= 500
    )
