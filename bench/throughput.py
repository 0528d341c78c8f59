"""Throughput and latency: wrk with keep-alive against HAProxy and Weir, same two nginx backends.

Both proxies run at the same time (one idles while the other is measured); wrk rounds alternate
haproxy, weir, haproxy, weir, ... after a warm-up of each. With two or more CPUs the proxy under
test is pinned to the first CPU and wrk and nginx to the others, so each proxy gets one core to
itself (``--no-pin`` to turn that off).

Output: one line per round (req/s, p50, p99, and the proxy's CPU use: 100% = one core busy),
a table of medians, then the two summary lines, the last one::

    weir/haproxy p99 ratio: X.XX (median of N)
    weir/haproxy req/s ratio: X.XX (median of N)

Each ratio is the median over rounds of weir's round-i figure divided by haproxy's round-i
figure (adjacent runs, so slow drifts of the shared machine cancel out).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import (
    BenchError,
    Processes,
    Proxy,
    check_log,
    cpu_seconds,
    cpu_split,
    find_tool,
    find_weir,
    run_main,
    start_backends,
    start_haproxy,
    start_weir,
    verify,
    workdir,
)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    errors_4xx_5xx: int  # wrk's "Non-2xx or 3xx responses"


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_BAD_STATUS = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str) -> WrkResult:
    """Parse the text wrk prints with ``--latency``."""
    percentiles = {m[1]: float(m[2]) * _UNIT_MS[m[3]] for m in _PERCENTILE.finditer(output)}
    rps = _RPS.search(output)
    requests = _REQUESTS.search(output)
    if rps is None or requests is None or set(percentiles) != {"50", "99"}:
        raise BenchError(f"cannot parse wrk's output:\n{output}")
    errors = _SOCKET_ERRORS.search(output)
    bad_status = _BAD_STATUS.search(output)
    return WrkResult(
        rps=float(rps[1]),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(requests[1]),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        errors_4xx_5xx=int(bad_status[1]) if bad_status else 0,
    )


@dataclass(frozen=True)
class Round:
    """One measured wrk run and the proxy's CPU use during it (100 = one core busy)."""

    wrk: WrkResult
    cpu_pct: float


def run_wrk(wrk: str, proxy: Proxy, seconds: int, connections: int, cpus: str | None) -> Round:
    """One wrk run (one thread, keep-alive) against the proxy; 4xx/5xx answers are fatal."""
    return run_wrk_together(wrk, [proxy], seconds, connections, cpus)[0]


def run_wrk_together(
    wrk: str, proxies: Sequence[Proxy], seconds: int, connections: int, cpus: str | None
) -> list[Round]:
    """One wrk per proxy, all running at the same time (``run_wrk`` for each)."""
    runs = []
    for proxy in proxies:
        argv = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            f"http://127.0.0.1:{proxy.port}/",
        ]
        if cpus:
            argv = ["taskset", "-c", cpus, *argv]
        runs.append((argv, cpu_seconds(proxy.proc.pid)))
    wall_before = time.monotonic()
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv, _ in runs
    ]
    outputs = [proc.communicate(timeout=seconds + 60) for proc in procs]
    wall = time.monotonic() - wall_before
    rounds = []
    for proxy, (_, cpu_before), proc, (stdout, stderr) in zip(
        proxies, runs, procs, outputs, strict=True
    ):
        cpu_pct = 100 * (cpu_seconds(proxy.proc.pid) - cpu_before) / wall
        if proc.returncode != 0:
            raise BenchError(f"wrk against {proxy.name} failed ({proc.returncode}):\n{stderr}")
        result = parse_wrk(stdout)
        if result.errors_4xx_5xx:
            raise BenchError(
                f"{proxy.name} answered {result.errors_4xx_5xx} of {result.requests} requests "
                f"with an error status (4xx/5xx):\n{stdout}"
            )
        rounds.append(Round(result, cpu_pct))
    return rounds


def ratio(weir: Sequence[float], haproxy: Sequence[float]) -> float:
    """Median over rounds of weir[i] / haproxy[i]."""
    return statistics.median(w / h for w, h in zip(weir, haproxy, strict=True))


def report(results: dict[str, list[Round]]) -> None:
    rounds = len(results["haproxy"])
    print(f"\nmedians of {rounds} rounds:")
    print(f"{'proxy':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu %':>8}{'sock err':>10}")
    for name, runs in results.items():
        print(
            f"{name:<10}{statistics.median(r.wrk.rps for r in runs):>10.0f}"
            f"{statistics.median(r.wrk.p50_ms for r in runs):>9.2f}"
            f"{statistics.median(r.wrk.p99_ms for r in runs):>9.2f}"
            f"{statistics.median(r.cpu_pct for r in runs):>8.0f}"
            f"{sum(r.wrk.socket_errors for r in runs):>10}"
        )
    weir, haproxy = results["weir"], results["haproxy"]
    p99 = ratio([r.wrk.p99_ms for r in weir], [r.wrk.p99_ms for r in haproxy])
    rps = ratio([r.wrk.rps for r in weir], [r.wrk.rps for r in haproxy])
    print(f"weir/haproxy p99 ratio: {p99:.2f} (median of {rounds})")
    print(f"weir/haproxy req/s ratio: {rps:.2f} (median of {rounds})")


def bench(args: argparse.Namespace) -> None:
    wrk = find_tool("wrk")
    weir = find_weir(args.weir)
    cpus = cpu_split(pin=not args.no_pin)
    print(
        f"throughput: wrk -t1 -c{args.connections} -d{args.duration}s --latency, "
        f"{args.rounds} alternating rounds, {cpus.describe()}",
        flush=True,
    )
    results: dict[str, list[Round]] = {"haproxy": [], "weir": []}
    with workdir() as directory, Processes(directory) as procs:
        backends = start_backends(procs, cpus.load)
        proxies = [
            start_haproxy(procs, backends, cpus.proxy),
            start_weir(procs, weir, backends, cpus.proxy),
        ]
        answered: dict[str, int] = {}  # requests each proxy answered, for the access-log check
        for proxy in proxies:
            answered[proxy.name] = verify(proxy)
        for proxy in proxies:
            warmup = run_wrk(wrk, proxy, args.warmup, args.connections, cpus.load)
            answered[proxy.name] += warmup.wrk.requests
        for round_no in range(1, args.rounds + 1):
            for proxy in proxies:
                measured = run_wrk(wrk, proxy, args.duration, args.connections, cpus.load)
                procs.ensure_running(proxy.proc)
                results[proxy.name].append(measured)
                answered[proxy.name] += measured.wrk.requests
                result = measured.wrk
                errors = f"  socket errors {result.socket_errors}" if result.socket_errors else ""
                print(
                    f"round {round_no}/{args.rounds}  {proxy.name:<8}{result.rps:>8.0f} req/s"
                    f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                    f"  proxy cpu {measured.cpu_pct:.0f}%{errors}",
                    flush=True,
                )
        for proxy in proxies:
            procs.stop(proxy.proc)  # a proxy may buffer its log until it stops
            check_log(proxy, answered[proxy.name])
    report(results)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per proxy (default 5)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per wrk round (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of unmeasured wrk per proxy first (default 2)",
    )
    parser.add_argument(
        "--connections", type=int, default=50, help="wrk keep-alive connections (default 50)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--weir", help="weir command (default: the one next to this Python)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1 or args.connections < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
