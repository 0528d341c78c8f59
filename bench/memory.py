"""Memory per idle keep-alive client connection, HAProxy and Weir in the same run.

Each round starts a fresh proxy in front of the same two nginx backends, sends it a few
requests, reads its resident set size (VmRSS from /proc, summed over the proxy and any child
processes), then has a separate client process open CONNS connections that each make one
complete keep-alive request and stay open and idle. After a short settle time the RSS is read
again: (after - before) / CONNS is the cost of one idle keep-alive client connection. The
client then checks that the proxy had closed none of them, and closes them all.

Rounds alternate haproxy, weir, haproxy, weir, ...; the last line is::

    weir idle keep-alive: N bytes/conn (haproxy: M bytes/conn)

with N and M the medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    MAXCONN,
    BenchError,
    Processes,
    Proxy,
    check_log,
    find_tool,
    find_weir,
    rss_bytes,
    run_main,
    start_backends,
    start_proxy,
    verify,
    workdir,
)

CLIENT = Path(__file__).with_name("idle_clients.py")
PROXIES = ("haproxy", "weir")


def _client_line(client: subprocess.Popen[str], what: str) -> str:
    assert client.stdout is not None
    line = client.stdout.readline().strip()
    if not line:
        raise BenchError(f"idle-connection client exited (status {client.wait()}) before {what}")
    return line


def measure(proxy: Proxy, conns: int, settle: float) -> int:
    """Bytes of proxy RSS per idle keep-alive client connection."""
    time.sleep(settle)
    before = rss_bytes(proxy.proc.pid)
    client = subprocess.Popen(
        [sys.executable, str(CLIENT), "127.0.0.1", str(proxy.port), str(conns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _client_line(client, "its connections were ready")
        if not ready.startswith(f"READY ok={conns} "):
            raise BenchError(
                f"{proxy.name}: not every keep-alive connection completed its request: {ready}"
            )
        time.sleep(settle)
        after = rss_bytes(proxy.proc.pid)
        assert client.stdin is not None
        client.stdin.write("check\n")
        client.stdin.flush()
        still_open = int(_client_line(client, "reporting open connections").split()[1])
        if still_open != conns:
            raise BenchError(
                f"{proxy.name} closed {conns - still_open} of {conns} idle "
                "keep-alive connections before the measurement ended"
            )
        client.stdin.write("close\n")
        client.stdin.flush()
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        for pipe in (client.stdin, client.stdout):
            if pipe is not None:
                pipe.close()
    per_conn = (after - before) // conns
    print(
        f"  {proxy.name:<8} RSS {before / 2**20:7.1f} MiB -> {after / 2**20:7.1f} MiB "
        f"with {conns} idle connections: {per_conn} bytes/conn",
        flush=True,
    )
    return per_conn


def bench(args: argparse.Namespace) -> None:
    find_tool("haproxy")
    weir = find_weir(args.weir)
    print(
        f"memory: {args.conns} idle keep-alive client connections, {args.rounds} alternating "
        "rounds, a fresh proxy each",
        flush=True,
    )
    results: dict[str, list[int]] = {name: [] for name in PROXIES}
    with workdir() as directory, Processes(directory) as procs:
        backends = start_backends(procs)
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", flush=True)
            for name in PROXIES:
                proxy = start_proxy(name, procs, weir, backends)
                try:
                    answered = verify(proxy)
                    results[name].append(measure(proxy, args.conns, args.settle))
                    procs.ensure_running(proxy.proc)
                finally:
                    procs.stop(proxy.proc)
                check_log(proxy, answered + args.conns)
    haproxy = round(statistics.median(results["haproxy"]))
    weir_bytes = round(statistics.median(results["weir"]))
    print(f"\nmedians of {args.rounds} rounds:")
    for name in PROXIES:
        print(f"{name:<10}{round(statistics.median(results[name])):>10} bytes/conn")
    print(f"weir idle keep-alive: {weir_bytes} bytes/conn (haproxy: {haproxy} bytes/conn)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--conns", type=int, default=8000, help="idle client connections (default 8000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per proxy (default 3)")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds to wait before each RSS reading (default 2)",
    )
    parser.add_argument("--weir", help="weir command (default: the one next to this Python)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 1 <= args.conns <= MAXCONN - 100:
        parser.error(f"--rounds must be at least 1, --conns between 1 and {MAXCONN - 100}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
