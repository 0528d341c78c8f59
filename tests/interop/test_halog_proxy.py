"""halog (Debian package haproxy) reads the access log of a real ``weir run``.

A known mix of requests goes through a two-server farm; after weir stops,
``halog -srv`` and ``halog -st`` must count exactly what was sent, with zero
parsing errors.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.farm import farm_config
from tests.support.proxy import Reader, connect, get

pytestmark = pytest.mark.interop

HALOG = Path("/usr/sbin/halog")
if not HALOG.exists():
    pytest.skip(
        "halog not found at /usr/sbin/halog: install the Debian package 'haproxy'",
        allow_module_level=True,
    )


def halog(path: Path, *flags: str) -> tuple[list[list[str]], str]:
    """Run halog on the file; return its output rows and its summary line
    ("N lines in, M lines out, K parsing errors", on stderr)."""
    with path.open("rb") as log:
        done = subprocess.run(
            [str(HALOG), *flags], stdin=log, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    rows = [row.split() for row in done.stdout.splitlines() if not row.startswith("#")]
    return rows, summary


def test_halog_counts_what_went_through_the_proxy(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(farm_config([("web1", web1.address), ("web2", web2.address)]))
    sent: Counter[tuple[str, int]] = Counter()
    paths = ["/"] * 30 + ["/status/500"] * 5 + ["/status/404"] * 3
    for path in paths:
        resp = get(proxy.port, path)
        sent[(f"app/{resp.header('x-backend')}", resp.status)] += 1
    for _ in range(2):  # refused by the proxy itself: no server chosen
        with connect(proxy.port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            sent[("www/<NOSRV>", Reader(s).response().status)] += 1
    assert sum(n for (srv, status), n in sent.items() if status == 200) == 30
    assert len(proxy.log_lines(wait_for=40)) == 40
    assert proxy.stop() == 0

    lines_in = len(proxy.log_path.read_text().splitlines())
    rows, srv_summary = halog(proxy.log_path, "-srv")
    # columns: srv_name 1xx 2xx 3xx 4xx 5xx other tot_req req_ok pct_ok avg_ct avg_rt
    by_server = {row[0]: row for row in rows}
    assert set(by_server) == {srv for srv, _ in sent}
    for srv, row in by_server.items():
        classes = Counter()
        for (s, status), n in sent.items():
            if s == srv:
                classes[status // 100] += n
        assert [int(n) for n in row[1:6]] == [classes[c] for c in (1, 2, 3, 4, 5)], row
        assert int(row[7]) == sum(classes.values()), row

    rows, st_summary = halog(proxy.log_path, "-st")
    statuses = Counter()
    for (_, status), n in sent.items():
        statuses[status] += n
    assert {int(row[0]): int(row[1]) for row in rows} == {200: 30, 500: 5, 404: 3, 400: 2}
    assert statuses == Counter({200: 30, 500: 5, 404: 3, 400: 2})

    # Every line of the log file is one halog can read: no parsing errors.
    for summary in (srv_summary, st_summary):
        assert summary.startswith(f"{lines_in} lines in,"), summary
        assert summary.endswith(" 0 parsing errors"), summary
