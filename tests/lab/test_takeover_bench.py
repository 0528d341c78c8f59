"""The takeover benchmark (bench/takeover.py) still works: its arithmetic, and two real drills.

The unit tests feed :func:`bench.takeover.analyse` the JSON lines a probe prints. The lab test
runs the benchmark's own drill code, two drills per side (``weir ha`` and keepalived), and
checks only that every drill ended with the backup answering on the VIP: takeover times belong
to ``make bench``, not to assertions here.
"""

from __future__ import annotations

import argparse
import json

import pytest

import bench.__main__ as bench_main
from bench import takeover
from bench.common import BenchError, find_weir
from bench.takeover import (
    BACKUP,
    BASE_SIDES,
    CONFIRM,
    MASTER,
    PROBE_BOUND,
    analyse,
    cannot_run,
    distribution,
    parse_variant,
    run_drills,
    summary_lines,
)

KILL = 100.0  # the kill time, on the probe's clock


def line(t1: float, node: str | None = None, error: str = "TimeoutError") -> str:
    result = {"node": node} if node else {"error": error}
    return json.dumps({"t0": t1 - 0.001, "t1": t1, **result})


def steady_then_backup(*after: str, takeover: float = 0.300) -> list[str]:
    """Two answers from the master before the kill, then ``after`` lines, then the backup
    answering from ``takeover`` seconds after the kill on."""
    lines = [line(KILL - 0.020, MASTER), line(KILL - 0.004, MASTER), *after]
    return lines + [line(KILL + takeover + 0.006 * i, BACKUP) for i in range(CONFIRM)]


@pytest.mark.unit
def test_takeover_is_the_first_backup_answer_after_the_kill() -> None:
    lines = steady_then_backup(line(KILL + 0.100, MASTER), line(KILL + 0.200))
    drill = analyse("weir", lines, KILL)
    assert drill.takeover_ms == pytest.approx(300.0)
    assert drill.master_before_ms == pytest.approx(-4.0)
    assert drill.master_after_ms == pytest.approx(100.0)
    assert (drill.failed, drill.requests, drill.errors) == (1, 2 + CONFIRM, ("TimeoutError",))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line(KILL - 0.01, BACKUP), *steady_then_backup()], "before the kill"),
        (steady_then_backup()[2:], f"no answer from {MASTER}"),
        (steady_then_backup()[:2], f"answers from {BACKUP}: none"),
        ([*steady_then_backup(), line(KILL + 0.5, MASTER)], "not the last ones"),
    ],
    ids=["backup-before-kill", "master-never-answered", "no-takeover", "flapped-back"],
)
def test_a_drill_that_did_not_start_or_end_right_is_an_error(lines, message) -> None:
    with pytest.raises(BenchError, match=message):
        analyse("weir", lines, KILL)


@pytest.mark.unit
def test_distribution_uses_the_nearest_rank_p95() -> None:
    dist = distribution([float(v) for v in range(20, 0, -1)])
    assert (dist.n, dist.min, dist.median, dist.p95, dist.max) == (20, 1, 10.5, 19, 20)
    assert distribution([7.0]).p95 == 7.0


@pytest.mark.unit
def test_variants_and_the_summary_lines() -> None:
    side = parse_variant("hint:a = 1; b = '{peer}'")
    assert (side.name, side.daemon, side.extra) == ("weir-hint", "weir", ("a = 1", "b = '{peer}'"))
    for bad in ("hint", "Hint:a = 1", "hint:  ;"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)

    results = {
        side: [analyse(side, steady_then_backup(takeover=takeover), KILL)]
        for side, takeover in (("weir", 0.3), ("keepalived", 0.4), ("weir-hint", 0.2))
    }
    out = summary_lines(results)
    assert out[-5:] == [
        "weir takeover: median 300 ms, p95 300 ms (1 drills)",
        "keepalived takeover: median 400 ms, p95 400 ms (1 drills)",
        "weir-hint takeover: median 200 ms, p95 200 ms (1 drills)",
        "weir-hint/keepalived takeover median ratio: 0.50 (1 drills each)",
        "weir/keepalived takeover median ratio: 0.75 (1 drills each)",
    ]


@pytest.mark.lab
def test_two_drills_per_side_each_end_with_the_backup_answering(tmp_path) -> None:
    reason = cannot_run()
    if reason:
        pytest.skip(f"takeover benchmark: {reason}")
    seen = []
    results = run_drills(BASE_SIDES, 2, tmp_path, find_weir(), lambda i, d: seen.append((i, d)))
    assert [(i, d.side) for i, d in seen] == [
        (1, "weir"),
        (1, "keepalived"),
        (2, "weir"),
        (2, "keepalived"),
    ]
    for side, drills in results.items():
        assert len(drills) == 2, side
        for drill in drills:  # analyse() checked that the probe ended on BACKUP
            assert 0 < drill.takeover_ms < PROBE_BOUND * 1000, drill
            assert drill.master_before_ms <= 0, drill


@pytest.mark.unit
def test_make_bench_runs_the_drill_only_where_it_can(monkeypatch, capsys) -> None:
    args = argparse.Namespace(rounds=1, duration=1, weir=None, drills=3)
    monkeypatch.setattr(takeover, "cannot_run", lambda: None)
    name, command = bench_main.plan(args)[-1]
    assert name == "takeover" and command[-5:] == [
        "bench.takeover",
        "--drills",
        "3",
        "--variant",
        "hint:hint_port = 7999",
    ]
    monkeypatch.setattr(takeover, "cannot_run", lambda: "the namespace lab needs root")
    assert "takeover" not in dict(bench_main.plan(args))

    for name in ("find_tool", "find_weir", "sigterm_as_interrupt"):
        monkeypatch.setattr(bench_main, name, lambda *args: None)
    monkeypatch.setattr(bench_main, "run", lambda command: (0, "summary line"))
    assert bench_main.main([]) == 0
    assert capsys.readouterr().out.endswith("takeover: not run (the namespace lab needs root)\n")
