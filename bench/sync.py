"""Stick-table sync (issue 6): two Weir peers against two HAProxy 2.6 peers, on loopback.

Each side is a pair of proxies, A and B, peers of each other, in front of the same two nginx
servers, which give every answer a new application session (``Set-Cookie: JSESSIONID=`` nginx's
32-hex-digit ``$request_id``). Both learn it into a replicated stick table: HAProxy with
``stick-table type string len 32 size 1m expire 30m peers mesh``, ``stick store-response
res.cook(JSESSIONID)`` and ``stick match req.cook(JSESSIONID)``; Weir with ``[backends.app.stick]
on = "cookie:JSESSIONID"`` and ``[ha.sync]``. Otherwise the configurations of bench/common.py
(same features, access logs on). Three measurements, both sides in the same run:

1. **Propagation lag.** A loader sends A new sessions at ``--rate`` per second in all (1,000: the
   loader's share plus the samples), over keep-alive connections. ``--samples`` times a second
   the benchmark itself asks A for a new session and, the moment the answer is in, asks B's CLI
   ``show table app key K`` over one connection in prompt mode, again and again, until the entry
   is there. Lag = end of the first answer that shows it minus arrival of the HTTP answer (A
   learned the entry before sending that answer). The CLI's own round trip (a key that is not
   there) is the resolution, printed as ``cli rtt``. Rounds alternate the sides.
2. **Full resync.** A (whose peer B is not running) is filled with ``--entries`` (100,000)
   entries with ``set table app key K data.server_id N``, the CLI command both proxies have;
   once A is past its own start-up resync, B is started empty and the time until B's ``show
   table`` counts them all is taken from B's launch, and from the first answer of its CLI. Weir
   also says how long its resync took (``show peers json``). B is restarted for each round.
3. **Push cost.** Sync on (A, with B as its peer) and off (C, the same configuration without
   ``[ha.sync]``, or without HAProxy's ``peers``) run *at the same time*, both pinned to the one
   proxy CPU of bench/throughput.py, each under its own ``wrk`` keep-alive: every answer sets a
   new session, so every request learns, and with sync pushes, a new entry (the worst case).
   The kernel shares the CPU between the two, so both see the same machine at the same moment:
   on this shared VM, whose speed drifts by 10-20% over tens of seconds, runs one after the
   other gave on/off ratios from 0.84 to 0.97 for the same code, runs side by side agree to
   about 0.01. B runs on the other CPU with wrk and nginx, which a pair on two machines would
   not share. ``--cost-rounds`` (10) rounds of ``--cost-duration`` (5) seconds, Weir's pair then
   HAProxy's; per side, the median over rounds of on/off req/s (the judged line) and of on/off
   CPU microseconds of the proxy per request (``bench.common.cpu_seconds``: what pushing costs
   the proxy itself; each proxy's CPU share is printed, about 50% each when both are CPU-bound).

Output: a table per measurement, then the summary lines, the last one::

    sync: lag median weir/haproxy R (p99 R); resync 100000: weir X s, haproxy Y s; push cost:
    sync on/off req/s R (haproxy R), cpu/request R (haproxy R)

    .venv/bin/python -m bench.sync [--only lag,resync,cost] [--rounds 3] [--cost-rounds 10] ...

``python -m bench.sync load PORT RATE SECONDS`` is the loader (it runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import math
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    Backend,
    BenchError,
    Processes,
    Proxy,
    cpu_split,
    find_tool,
    find_weir,
    free_port,
    haproxy_config,
    run_main,
    start_backends,
    weir_config,
    workdir,
)
from bench.throughput import run_wrk_together

ROOT = Path(__file__).resolve().parent.parent
TABLE = "app"
SESSION = re.compile(r"JSESSIONID=([0-9a-f]{32})")
USED = re.compile(r"used:(\d+)")
VISIBLE_BOUND = 2.0  # seconds a sampled entry may take to show up before it counts as not seen
RESYNC_BOUND = 60.0  # seconds a resync may take before the benchmark gives up
PEER_RESYNC_TIMEOUT = 5.0  # seconds a node looks for a teacher at start (HAProxy and Weir)
LOADER_CONNECTIONS = 16
FILL_BATCH = 500  # set table commands sent before reading their answers
SIDES = ("haproxy", "weir")
ABSENT = "f" * 32  # a key nginx never hands out
PARTS = ("lag", "resync", "cost")


# -- the CLI of either proxy -------------------------------------------------------------------


class Cli:
    """One connection to a proxy's CLI (HAProxy's stats socket, Weir's runtime socket) in
    prompt mode: each answer ends with an empty line and the prompt ``> ``."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.pipeline(["prompt", "set timeout cli 3600"])

    def ask(self, command: str) -> str:
        return self.pipeline([command])[0]

    def pipeline(self, commands: Sequence[str]) -> list[str]:
        """Send every command, then read one answer per command."""
        self.sock.sendall("".join(f"{c}\n" for c in commands).encode())
        answers = []
        while len(answers) < len(commands):
            end = self.buf.find(b"\n> ")
            if end < 0:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise BenchError(f"the CLI closed the connection after {answers[-1:]!r}")
                self.buf += chunk
                continue
            answers.append(self.buf[: end + 1].decode(errors="replace"))
            self.buf = self.buf[end + 3 :]
        return answers

    def used(self) -> int:
        """Entries in the table, from ``show table``'s header (the same on both proxies)."""
        found = USED.search(self.ask("show table"))
        if found is None:
            raise BenchError("no stick table in 'show table'")
        return int(found.group(1))

    def close(self) -> None:
        self.sock.close()


def cli_when_up(path: Path, proc: subprocess.Popen[bytes], bound: float = 15.0) -> Cli:
    """A CLI connection as soon as the proxy answers on ``path``."""
    deadline = time.monotonic() + bound
    while True:
        try:
            return Cli(path)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"no CLI on {path} (exit status {proc.poll()})") from None
            time.sleep(0.001)


# -- the two pairs -----------------------------------------------------------------------------


@dataclass
class Node:
    """One proxy of a pair: how to start it, and where it answers."""

    side: str  # "weir" or "haproxy"
    name: str  # "a", "b" or "c"
    port: int  # HTTP
    cli: Path
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, f"{self.side} {self.name} was not started"
        return self.proc

    def proxy(self) -> Proxy:
        return Proxy(self.side, self.port, self.process, self.log)


def haproxy_node(
    directory: Path,
    backends: Sequence[Backend],
    name: str,
    peer_ports: dict[str, int] | None,
) -> Node:
    """A HAProxy node; ``peer_ports`` (its own name and its peers') adds the ``peers`` section."""
    port = free_port()
    sock = directory / f"haproxy-{name}.sock"
    config = (
        haproxy_config(port, backends)
        + "    stick-table type string len 32 size 1m expire 30m"
        + (" peers mesh\n" if peer_ports is not None else "\n")
        + "    stick store-response res.cook(JSESSIONID)\n"
        "    stick match req.cook(JSESSIONID)\n"
        "global\n"
        f"    stats socket {sock} level admin\n"
    )
    if peer_ports is not None:
        peers = "".join(f"    peer {p} 127.0.0.1:{pp}\n" for p, pp in peer_ports.items())
        config += f"    localpeer {name}\npeers mesh\n{peers}"
    cfg = directory / f"haproxy-{name}.cfg"
    cfg.write_text(config)
    argv = [find_tool("haproxy"), "-db", "-f", str(cfg)]
    return Node("haproxy", name, port, sock, argv, directory / f"haproxy-{name}.log")


def weir_node(
    directory: Path,
    backends: Sequence[Backend],
    weir: str,
    name: str,
    peer_ports: dict[str, int] | None,
) -> Node:
    """A Weir node; ``peer_ports`` (its own name and its peers') adds ``[ha.sync]``."""
    port = free_port()
    home = directory / f"weir-{name}"
    home.mkdir()
    config = (
        weir_config(port, backends, home)
        + f'\n[backends.{TABLE}.stick]\non = "cookie:JSESSIONID"\nsize = 1000000\nexpire = "30m"\n'
    )
    if peer_ports is not None:
        others = ", ".join(
            f'{{ name = "{p}", address = "127.0.0.1:{pp}" }}'
            for p, pp in peer_ports.items()
            if p != name
        )
        config += (
            f'\n[ha.sync]\nlocal = "{name}"\nbind = "127.0.0.1:{peer_ports[name]}"\n'
            f"peers = [{others}]\n"
        )
    cfg = home / "weir.toml"
    cfg.write_text(config)
    return Node(
        "weir", name, port, home / "weir.sock", [weir, "run", "-c", str(cfg)], home / "weir.log"
    )


def pair(side: str, directory: Path, backends: Sequence[Backend], weir: str) -> tuple[Node, Node]:
    """Nodes a and b of one side, peers of each other (not started)."""
    peer_ports = {"a": free_port(), "b": free_port()}
    if side == "haproxy":
        a, b = (haproxy_node(directory, backends, n, peer_ports) for n in "ab")
    else:
        sub = directory / side
        sub.mkdir(exist_ok=True)
        a, b = (weir_node(sub, backends, weir, n, peer_ports) for n in "ab")
    return a, b


def start(procs: Processes, node: Node, cpus: str | None = None) -> None:
    node.proc = procs.start_listening(
        f"{node.side}-{node.name}",
        node.argv,
        node.port,
        cpus=cpus,
        stdout=node.log if node.side == "haproxy" else None,
    )


def resync_over(node: Node, cli: Cli) -> bool:
    """Whether ``node`` is past its own start-up resync, so that it teaches "finished"."""
    if node.side == "weir":
        return bool(json.loads(cli.ask("show peers json"))["resync"]["done"])
    flags = re.search(r"flags=0x([0-9a-f]+)", cli.ask("show peers"))
    return flags is not None and bool(int(flags.group(1), 16) & 0x2)  # PEERS_F_RESYNC_REMOTE


def wait_resync_over(node: Node, cli: Cli) -> None:
    deadline = time.monotonic() + PEER_RESYNC_TIMEOUT + 10
    while not resync_over(node, cli):
        if time.monotonic() > deadline:
            raise BenchError(f"{node.side} {node.name}: its start-up resync never ended")
        time.sleep(0.05)


def new_session(conn: http.client.HTTPConnection, who: str) -> str:
    """One request without a cookie; the session the answer set."""
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    found = SESSION.search(response.getheader("Set-Cookie") or "")
    if response.status != 200 or found is None:
        raise BenchError(f"{who}: GET / answered {response.status} without a new JSESSIONID")
    return found.group(1)


def wait_visible(cli: Cli, key: str, node: Node) -> None:
    deadline = time.monotonic() + VISIBLE_BOUND
    while f"key={key} " not in cli.ask(f"show table {TABLE} key {key}"):
        if time.monotonic() > deadline:
            raise BenchError(f"{node.side}: an entry learned on a never reached b's table")
        time.sleep(0.01)


# -- 1. propagation lag ------------------------------------------------------------------------


@dataclass
class LagRound:
    side: str
    lags_ms: list[float] = field(default_factory=list)
    not_seen: int = 0
    first_look: int = 0  # entries already there at the first look
    rtt_ms: list[float] = field(default_factory=list)  # the CLI's round trip, absent key
    loader: dict = field(default_factory=dict)  # what the loader reported


def alternate(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, side) for ``rounds`` rounds, the sides in turn, the order swapped every round."""
    for round_no in range(1, rounds + 1):
        for side in SIDES if round_no % 2 else SIDES[::-1]:
            yield round_no, side


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (an observed value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def sample_lag(a: Node, b: Node, seconds: float, per_second: float, result: LagRound) -> None:
    """Ask ``a`` for new sessions and look for each in ``b``'s table, into ``result``; after
    each sample, time one look for a key that is not there (the CLI's round trip under load)."""
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
    cli = Cli(b.cli)
    try:
        next_at = time.monotonic()
        end = next_at + seconds
        while next_at < end:
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at += 1 / per_second
            key = new_session(conn, a.side)
            answered = time.monotonic()
            command, wanted = f"show table {TABLE} key {key}", f"key={key} "
            for looks in itertools.count(1):
                seen = wanted in cli.ask(command)
                now = time.monotonic()
                if seen:
                    result.lags_ms.append((now - answered) * 1000)
                    result.first_look += looks == 1
                    break
                if now - answered > VISIBLE_BOUND:
                    result.not_seen += 1
                    break
            cli.ask(f"show table {TABLE} key {ABSENT}")
            result.rtt_ms.append((time.monotonic() - now) * 1000)
    finally:
        conn.close()
        cli.close()


def lag_round(a: Node, b: Node, args: argparse.Namespace) -> LagRound:
    loader_rate = args.rate - args.samples
    command = ["load", str(a.port), str(loader_rate), str(args.duration)]
    loader = subprocess.Popen(
        [sys.executable, "-m", "bench.sync", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    result = LagRound(a.side)
    try:
        time.sleep(min(1.0, args.duration / 4))  # the loader reaches its rate
        sample_lag(a, b, max(0.5, args.duration - 1.5), args.samples, result)
        out, _ = loader.communicate(timeout=args.duration + 60)
    finally:
        if loader.poll() is None:  # interrupted
            loader.kill()
            loader.wait()
    if loader.returncode != 0:
        raise BenchError(f"the loader failed (exit {loader.returncode})")
    result.loader = json.loads(out.strip().splitlines()[-1])
    if not result.lags_ms:
        raise BenchError(f"{a.side}: no sampled entry reached b")
    return result


def run_lag(
    procs: Processes, directory: Path, backends, weir: str, args
) -> dict[str, list[LagRound]]:
    pairs = {side: pair(side, directory, backends, weir) for side in SIDES}
    for a, b in pairs.values():
        start(procs, a)
        start(procs, b)
    for side, (a, b) in pairs.items():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
        cli = cli_when_up(b.cli, b.process)
        try:
            wait_visible(cli, new_session(conn, side), a)  # the pair syncs at all
        finally:
            conn.close()
            cli.close()
    results: dict[str, list[LagRound]] = {side: [] for side in SIDES}
    for round_no, side in alternate(args.rounds):
        a, b = pairs[side]
        result = lag_round(a, b, args)
        for node in (a, b):
            procs.ensure_running(node.process)
        results[side].append(result)
        print(
            f"lag round {round_no}/{args.rounds} {side:<8} "
            f"{len(result.lags_ms)} samples  median {statistics.median(result.lags_ms):.2f} ms"
            f"  p99 {percentile(result.lags_ms, 99):.2f} ms  not seen {result.not_seen}"
            f"  (loader: {result.loader['rate']:.0f} new sessions/s,"
            f" {result.loader['errors']} errors)",
            flush=True,
        )
    for a, b in pairs.values():
        for node in (a, b):
            procs.stop(node.process)
    return results


def lag_lines(results: dict[str, list[LagRound]], rate: int) -> tuple[list[str], str]:
    lines = [
        "",
        f"propagation lag at {rate} new entries/s (learned on a, seen in b's show table):",
        f"{'side':<9}{'samples':>8}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}"
        f"{'not seen':>10}{'1st look':>10}{'cli rtt ms':>12}",
    ]
    stats = {}
    for side, rounds in results.items():
        lags = [lag for r in rounds for lag in r.lags_ms]
        rtt = statistics.median(v for r in rounds for v in r.rtt_ms)
        stats[side] = (statistics.median(lags), percentile(lags, 99), len(lags))
        lines.append(
            f"{side:<9}{len(lags):>8}{stats[side][0]:>11.2f}{stats[side][1]:>9.2f}"
            f"{max(lags):>9.2f}{sum(r.not_seen for r in rounds):>10}"
            f"{sum(r.first_look for r in rounds) / len(lags):>10.0%}{rtt:>12.3f}"
        )
    weir, haproxy = stats["weir"], stats["haproxy"]
    lines.append(
        "(lag: from the HTTP answer to the end of the first CLI answer showing the entry;"
        " 1st look: entries already there at the first ask; cli rtt: median round trip of that"
        " command for an absent key, under the same load)"
    )
    lines.append(
        f"weir/haproxy lag ratio: median {weir[0] / haproxy[0]:.2f}, p99 {weir[1] / haproxy[1]:.2f}"
        f" ({weir[2]} and {haproxy[2]} samples)"
    )
    short = f"lag median weir/haproxy {weir[0] / haproxy[0]:.2f} (p99 {weir[1] / haproxy[1]:.2f})"
    return lines, short


# -- the loader --------------------------------------------------------------------------------


async def load(port: int, rate: float, seconds: float) -> dict:
    """New sessions at ``rate`` per second for ``seconds`` over keep-alive connections; late
    requests are sent at once, so the total is the rate times the seconds."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    slots = itertools.count()
    sent = errors = 0
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    start_at = loop.time()

    async def worker() -> None:
        nonlocal sent, errors
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (slot := next(slots)) < total:
            delay = start_at + slot / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port)
                reader, writer = connection
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if not head.startswith(b"HTTP/1.1 200 ") or b"JSESSIONID=" not in head:
                    errors += 1
                else:
                    sent += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                errors += 1
                if connection is not None:
                    connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(worker() for _ in range(LOADER_CONNECTIONS)))
    elapsed = loop.time() - start_at
    return {"sent": sent, "errors": errors, "seconds": elapsed, "rate": sent / elapsed}


# -- 2. full resync ----------------------------------------------------------------------------


@dataclass
class ResyncRound:
    side: str
    from_launch: float  # seconds from b's launch until it held every entry
    from_cli: float  # seconds from b's CLI's first answer until then
    own: float | None  # Weir: the resync time b reports


def fill(cli: Cli, entries: int, servers: int) -> None:
    """``entries`` new entries (32-hex-digit keys) through ``set table``, pipelined."""
    for first in range(0, entries, FILL_BATCH):
        commands = [
            f"set table {TABLE} key {n:032x} data.server_id {1 + n % servers}"
            for n in range(first, min(entries, first + FILL_BATCH))
        ]
        for answer in cli.pipeline(commands):
            if answer.strip():
                raise BenchError(f"set table answered {answer.strip()!r}")


def resync_round(procs: Processes, a: Node, b: Node, entries: int) -> ResyncRound:
    launched = time.monotonic()
    proc = subprocess.Popen(
        b.argv,
        cwd=procs.directory,
        stdin=subprocess.DEVNULL,
        stdout=open(b.log, "ab"),  # noqa: SIM115  (closed with the process)
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        cli = cli_when_up(b.cli, proc)
        up = time.monotonic()
        try:
            while (used := cli.used()) < entries:
                if proc.poll() is not None or time.monotonic() - up > RESYNC_BOUND:
                    raise BenchError(
                        f"{b.side} b holds {used} of {entries} entries "
                        f"{time.monotonic() - up:.1f} s after start"
                    )
                time.sleep(0.002)
            done = time.monotonic()
            own = None
            if b.side == "weir":
                resync = json.loads(cli.ask("show peers json"))["resync"]
                own = resync["seconds"]
        finally:
            cli.close()
    finally:
        Processes.stop(proc)
    return ResyncRound(b.side, done - launched, done - up, own)


def run_resync(
    procs: Processes, directory: Path, backends, weir: str, args
) -> dict[str, list[ResyncRound]]:
    sub = directory / "resync"
    sub.mkdir()
    pairs = {side: pair(side, sub, backends, weir) for side in SIDES}
    clis = {}
    for side, (a, _) in pairs.items():
        start(procs, a)
        clis[side] = cli_when_up(a.cli, a.process)
    try:
        for side in pairs:
            t0 = time.monotonic()
            fill(clis[side], args.entries, len(backends))
            if clis[side].used() != args.entries:
                raise BenchError(f"{side} a holds {clis[side].used()} entries, not {args.entries}")
            print(
                f"resync: {side} a filled with {args.entries} entries by set table in "
                f"{time.monotonic() - t0:.2f} s",
                flush=True,
            )
        for side, (a, _) in pairs.items():
            wait_resync_over(a, clis[side])
    finally:
        for cli in clis.values():
            cli.close()
    results: dict[str, list[ResyncRound]] = {side: [] for side in SIDES}
    for round_no, side in alternate(args.resync_rounds):
        a, b = pairs[side]
        result = resync_round(procs, a, b, args.entries)
        procs.ensure_running(a.process)
        results[side].append(result)
        own = f", its own resync {result.own:.3f} s" if result.own is not None else ""
        print(
            f"resync round {round_no}/{args.resync_rounds} {side:<8} {args.entries} entries "
            f"{result.from_launch:.3f} s from launch, {result.from_cli:.3f} s from its CLI"
            f"{own}",
            flush=True,
        )
    for a, _ in pairs.values():
        procs.stop(a.process)
    return results


def resync_lines(results: dict[str, list[ResyncRound]], entries: int) -> tuple[list[str], str]:
    lines = [
        "",
        f"full resync of {entries} entries (b started empty, a full; medians):",
        f"{'side':<9}{'rounds':>7}{'from launch s':>15}{'from cli s':>12}{'own s':>8}",
    ]
    medians = {}
    for side, rounds in results.items():
        launch = statistics.median(r.from_launch for r in rounds)
        medians[side] = statistics.median(r.from_cli for r in rounds)
        own = [r.own for r in rounds if r.own is not None]
        own_text = f"{statistics.median(own):>8.3f}" if own else f"{'-':>8}"
        lines.append(f"{side:<9}{len(rounds):>7}{launch:>15.3f}{medians[side]:>12.3f}{own_text}")
    lines.append(
        "(from cli: from the first answer of b's CLI to its table holding every entry;"
        " own: the start-up resync as Weir's show peers json reports it)"
    )
    lines.append(
        f"resync {entries}: weir {medians['weir']:.3f} s, haproxy {medians['haproxy']:.3f} s"
        " (from cli, median)"
    )
    short = f"resync {entries}: weir {medians['weir']:.3f} s, haproxy {medians['haproxy']:.3f} s"
    return lines, short


# -- 3. push cost ------------------------------------------------------------------------------


@dataclass
class CostRound:
    side: str
    sync: bool
    rps: float
    cpu_pct: float
    us_per_request: float


@dataclass
class CostResult:
    rounds: list[CostRound] = field(default_factory=list)
    peer: dict = field(default_factory=dict)  # weir a's view of b at the end (show peers json)

    def of(self, side: str, sync: bool) -> list[CostRound]:
        return [r for r in self.rounds if r.side == side and r.sync == sync]


def cost_nodes(sub: Path, backends, weir: str, side: str) -> tuple[Node, Node, Node]:
    """Sync on (a, with b as its peer), its peer b, and sync off (c) of one side."""
    peer_ports = {"a": free_port(), "b": free_port()}
    if side == "weir":
        return (
            weir_node(sub, backends, weir, "a", peer_ports),
            weir_node(sub, backends, weir, "b", peer_ports),
            weir_node(sub, backends, weir, "c", None),
        )
    return (
        haproxy_node(sub, backends, "a", peer_ports),
        haproxy_node(sub, backends, "b", peer_ports),
        haproxy_node(sub, backends, "c", None),
    )


def run_cost(procs: Processes, directory: Path, backends, weir: str, args) -> CostResult:
    wrk = find_tool("wrk")
    cpus = cpu_split(pin=not args.no_pin)
    print(
        f"push cost: sync on and off at the same time, each under wrk -t1 -c{args.connections}"
        f" -d{args.cost_duration}s, {cpus.describe()}"
    )
    result = CostResult()
    for side in ("weir", "haproxy"):
        sub = directory / f"cost-{side}"
        sub.mkdir()
        on, receiver, off = cost_nodes(sub, backends, weir, side)
        start(procs, receiver, cpus.load)
        start(procs, on, cpus.proxy)
        start(procs, off, cpus.proxy)
        cli = cli_when_up(receiver.cli, receiver.process)
        conn = http.client.HTTPConnection("127.0.0.1", on.port, timeout=5)
        try:
            wait_visible(cli, new_session(conn, side), on)
        finally:
            conn.close()
            cli.close()
        together = [on.proxy(), off.proxy()]
        run_wrk_together(wrk, together, 2, args.connections, cpus.load)  # warm-up
        for round_no in range(1, args.cost_rounds + 1):
            measured = run_wrk_together(
                wrk, together, args.cost_duration, args.connections, cpus.load
            )
            for node, run in zip((on, off), measured, strict=True):
                procs.ensure_running(node.process)
                rps = run.wrk.rps
                us = run.cpu_pct / 100 / rps * 1e6 if rps else float("nan")
                result.rounds.append(CostRound(side, node is on, rps, run.cpu_pct, us))
            on_run, off_run = result.rounds[-2:]
            print(
                f"cost round {round_no}/{args.cost_rounds} {side:<8} on {on_run.rps:7.0f} req/s"
                f" (cpu {on_run.cpu_pct:.0f}%, {on_run.us_per_request:.1f} us/request), off "
                f"{off_run.rps:7.0f} req/s (cpu {off_run.cpu_pct:.0f}%, "
                f"{off_run.us_per_request:.1f} us/request)",
                flush=True,
            )
        if side == "weir":
            cli = Cli(on.cli)
            try:
                deadline = time.monotonic() + 10
                while True:  # the peer catches up once the load stops
                    result.peer = json.loads(cli.ask("show peers json"))["peers"][0]
                    if result.peer["tables"][0]["lag"] == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
            finally:
                cli.close()
        for node in (on, off, receiver):
            procs.stop(node.process)
    return result


def cost_lines(result: CostResult) -> tuple[list[str], str]:
    lines = [
        "",
        "push cost (every answer learns a new entry; medians; the peer b shares wrk's CPU):",
        f"{'':<18}{'req/s':>10}{'cpu %':>8}{'us cpu/req':>12}",
    ]
    ratios, cpu_ratios = {}, {}
    for side in ("weir", "haproxy"):
        on, off = result.of(side, True), result.of(side, False)
        for name, rounds in (("sync on", on), ("sync off", off)):
            lines.append(
                f"{side + ' ' + name:<18}{statistics.median(r.rps for r in rounds):>10.0f}"
                f"{statistics.median(r.cpu_pct for r in rounds):>8.0f}"
                f"{statistics.median(r.us_per_request for r in rounds):>12.1f}"
            )
        ratios[side] = statistics.median(a.rps / b.rps for a, b in zip(on, off, strict=True))
        cpu_ratios[side] = statistics.median(
            a.us_per_request / b.us_per_request for a, b in zip(on, off, strict=True)
        )
    table = result.peer["tables"][0]
    lines.append(
        f"(weir sync on: {result.peer['updates_sent']} updates pushed to b, {table['acked']} of "
        f"{table['local_update']} acknowledged, lag {table['lag']} after the load; "
        f"errors {result.peer['errors'] or 'none'})"
    )
    for side in ("weir", "haproxy"):
        lines.append(
            f"{side} sync on/off: req/s ratio {ratios[side]:.3f}, cpu us/request ratio "
            f"{cpu_ratios[side]:.3f} (median of {len(result.of(side, True))})"
        )
    return lines, (
        f"push cost: sync on/off req/s {ratios['weir']:.3f} (haproxy {ratios['haproxy']:.3f}), "
        f"cpu/request {cpu_ratios['weir']:.2f} (haproxy {cpu_ratios['haproxy']:.2f})"
    )


# -- the benchmark -----------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> None:
    weir = find_weir(args.weir)
    for tool in ("haproxy", "nginx", "wrk"):
        find_tool(tool)
    parts = args.only
    print(
        f"sync: parts {', '.join(parts)}; lag: {args.rate} new entries/s, "
        f"{args.samples} samples/s, "
        f"{args.rounds} rounds of {args.duration} s per side; resync: {args.entries} entries, "
        f"{args.resync_rounds} rounds per side; cost: {args.cost_rounds} rounds of "
        f"{args.cost_duration} s, on and off side by side (a shared machine: compare ratios, "
        "not absolute numbers)",
        flush=True,
    )
    lines: list[str] = []
    short: list[str] = []
    with workdir() as directory, Processes(directory) as procs:
        backends = start_backends(procs, cpu_split(pin=not args.no_pin).load, new_session=True)
        steps: list[tuple[str, Callable[[], tuple[list[str], str]]]] = [
            ("lag", lambda: lag_lines(run_lag(procs, directory, backends, weir, args), args.rate)),
            (
                "resync",
                lambda: resync_lines(
                    run_resync(procs, directory, backends, weir, args), args.entries
                ),
            ),
            ("cost", lambda: cost_lines(run_cost(procs, directory, backends, weir, args))),
        ]
        for name, step in steps:
            if name in parts:
                part_lines, part_short = step()
                lines += part_lines
                short.append(part_short)
    print("\n".join(lines))
    print("sync: " + "; ".join(short))


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"--only: a comma-separated list of {', '.join(PARTS)}")
    return parts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", type=parse_parts, default=list(PARTS), help="lag,resync,cost")
    parser.add_argument("--rounds", type=int, default=3, help="lag rounds (3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per lag round (10)")
    parser.add_argument("--cost-rounds", type=int, default=10, help="cost rounds (10)")
    parser.add_argument("--cost-duration", type=int, default=5, help="seconds per cost round (5)")
    parser.add_argument("--rate", type=int, default=1000, help="new entries/s for lag (1000)")
    parser.add_argument("--samples", type=int, default=50, help="lag samples per second (50)")
    parser.add_argument("--entries", type=int, default=100_000, help="resync size (100000)")
    parser.add_argument("--resync-rounds", type=int, default=3, help="resync rounds (3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--weir", help="weir command (default: the one next to this Python)")
    args = parser.parse_args(argv)
    counts = (args.rounds, args.duration, args.cost_rounds, args.cost_duration, args.entries)
    if min(*counts, args.resync_rounds, args.connections) < 1:
        parser.error(
            "--rounds, --duration, --cost-rounds, --cost-duration, --entries, --resync-rounds,"
            " --connections: >= 1"
        )
    if not 0 < args.samples < args.rate:
        parser.error("--samples must be above 0 and below --rate")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["load"] and len(argv) == 4:
        result = asyncio.run(load(int(argv[1]), float(argv[2]), float(argv[3])))
        print(json.dumps(result))
        return 0
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
