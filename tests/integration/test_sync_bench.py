"""The stick-table sync benchmark (bench/sync.py) still runs: every part, with tiny sizes.

Real Weir and HAProxy pairs, nginx and wrk, as ``make bench`` runs them, but a few seconds of
each part. Nothing here judges a number: the figures belong to ``make bench``. What is checked
is that each part produced its table and the last line that ``make bench`` shows.
"""

from __future__ import annotations

import argparse
import re

import pytest

import bench.__main__ as bench_main
from bench import sync
from bench.common import BenchError, find_tool

pytestmark = pytest.mark.integration

TINY = [
    "--rate", "100", "--samples", "10", "--duration", "2", "--rounds", "1",
    "--cost-rounds", "1", "--cost-duration", "1",
    "--entries", "300", "--resync-rounds", "1", "--connections", "4",
]  # fmt: skip


def test_every_part_runs_and_ends_with_the_summary_line(capsys) -> None:
    for tool in ("haproxy", "nginx", "wrk"):
        try:
            find_tool(tool)
        except BenchError as exc:
            pytest.skip(f"sync benchmark: {exc}")
    assert sync.main(TINY) == 0
    out = capsys.readouterr().out.splitlines()
    for side in ("haproxy", "weir"):  # a row in the lag table and one in the resync table
        assert len([line for line in out if re.fullmatch(rf"{side}( +[\d.%-]+)+", line)]) == 2, out
    assert any(line.startswith("weir/haproxy lag ratio: median ") for line in out), out
    assert any(line.startswith("resync 300: weir ") for line in out), out
    for side in ("weir", "haproxy"):
        assert any(line.startswith(f"{side} sync on/off: req/s ratio ") for line in out), out
    pushed = re.search(r"(\d+) of (\d+) acknowledged", "\n".join(out))
    assert pushed and pushed.group(1) == pushed.group(2) != "0", out  # b acknowledged every push
    assert re.fullmatch(
        r"sync: lag median weir/haproxy [\d.]+ \(p99 [\d.]+\); "
        r"resync 300: weir [\d.]+ s, haproxy [\d.]+ s; push cost: sync on/off req/s [\d.]+ "
        r"\(haproxy [\d.]+\), cpu/request [\d.]+ \(haproxy [\d.]+\)",
        out[-1],
    ), out[-1]


@pytest.mark.unit
def test_options_and_percentiles() -> None:
    assert sync.parse_args(["--only", "resync,lag"]).only == ["resync", "lag"]
    for bad in (["--only", "lag,speed"], ["--samples", "1000"], ["--entries", "0"]):
        with pytest.raises(SystemExit):
            sync.parse_args(bad)
    assert sync.percentile([float(v) for v in range(1, 101)], 99) == 99.0
    assert sync.percentile([3.0], 99) == 3.0


@pytest.mark.unit
def test_make_bench_runs_it() -> None:
    args = argparse.Namespace(rounds=1, duration=1, weir="/x/weir", drills=1)
    commands = dict(bench_main.plan(args))
    assert commands["sync"][-4:] == ["-m", "bench.sync", "--weir", "/x/weir"]
