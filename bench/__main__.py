"""``make bench``: run every benchmark, Weir against HAProxy, and print each one's summary.

Runs bench.throughput, bench.memory, bench.stick_table, when the file exists
bench.bench_balance, bench.sync (stick-table sync: Weir and HAProxy peers), and, as root with
keepalived installed, bench.takeover (the VRRP drill in the namespace lab), each in its own
process with its output shown as it comes; then prints the last line of each (the summary a
script can read), or why one was not run. Exits 0 if every benchmark that could run ran, 1 if
one failed, 2 if a needed program is missing (the message names the Debian package).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from bench import takeover
from bench.common import PACKAGES, BenchError, find_tool, find_weir, sigterm_as_interrupt

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = Path(__file__).with_name("bench_balance.py")


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, command) for each benchmark to run."""
    weir = ["--weir", args.weir] if args.weir else []
    throughput = ["--rounds", str(args.rounds), "--duration", str(args.duration), *weir]
    benchmarks = [
        ("throughput", [sys.executable, "-m", "bench.throughput", *throughput]),
        ("memory", [sys.executable, "-m", "bench.memory", *weir]),
        ("stick_table", [sys.executable, "-m", "bench.stick_table"]),
    ]
    if OPTIONAL.exists():
        benchmarks.append(("balance", [sys.executable, "-m", "bench.bench_balance"]))
    benchmarks.append(("sync", [sys.executable, "-m", "bench.sync", *weir]))
    if takeover.cannot_run() is None:
        # Also Weir with the takeover hint (docs/failover.md), a third side of the same run.
        drills = ["--drills", str(args.drills), "--variant", "hint:hint_port = 7999", *weir]
        benchmarks.append(("takeover", [sys.executable, "-m", "bench.takeover", *drills]))
    return benchmarks


def run(command: list[str]) -> tuple[int, str]:
    """Run one benchmark, echoing its output; returns its exit status and last output line.

    It runs in its own session: on Ctrl-C or SIGTERM we send it one SIGTERM, on which it stops
    its own children and exits.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    last = ""
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            last = line.strip() or last
        return proc.wait(), last
    finally:
        if proc.poll() is None:  # we were interrupted
            proc.terminate()
            proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (default 5)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per throughput round (default 10)"
    )
    parser.add_argument(
        "--drills",
        type=int,
        default=takeover.DEFAULT_DRILLS,
        help=f"takeover drills per side (default {takeover.DEFAULT_DRILLS})",
    )
    parser.add_argument("--weir", help="weir command (default: the one next to this Python)")
    args = parser.parse_args(argv)
    missing = []
    for check in (*(partial(find_tool, tool) for tool in PACKAGES), partial(find_weir, args.weir)):
        try:
            check()
        except BenchError as exc:
            missing.append(str(exc))
    if missing:
        print("\n".join(f"bench: cannot run: {problem}" for problem in missing), file=sys.stderr)
        return 2
    sigterm_as_interrupt()
    benchmarks = plan(args)
    summaries, failed = [], False
    try:
        for name, command in benchmarks:
            print(f"\n=== {name} ===", flush=True)
            status, last = run(command)
            failed = failed or status != 0
            summaries.append(
                f"{name}: {last}" if status == 0 else f"{name}: FAILED (exit {status})"
            )
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    if "balance" not in dict(benchmarks):
        summaries.append(f"balance: not run ({OPTIONAL.relative_to(ROOT)} does not exist)")
    if "takeover" not in dict(benchmarks):
        summaries.append(f"takeover: not run ({takeover.cannot_run()})")
    print("\n=== summary ===")
    print("\n".join(summaries))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
