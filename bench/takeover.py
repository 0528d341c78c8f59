"""Takeover time of the failover pair (issue 5, "Takeover drill"): ``weir ha`` against keepalived.

Each side is a VRRP pair in its own network-namespace lab (ha/lab.py): lb1 (priority 150) is
the master, lb2 (priority 100) the backup, both VRRPv3 with a 100 ms advertisement interval,
one VIP (198.18.0.100/24). Each node also runs a tiny HTTP server on 0.0.0.0:8000 that answers
its own name, so whoever holds the VIP answers on it. A drill:

1. both daemons run, lb1 is MASTER and holds the VIP, lb2 is BACKUP without it;
2. a probe in the client namespace opens a fresh TCP connection to the VIP for every request
   (50 ms timeout on each step, 5 ms pause between requests) and prints one JSON line per
   request with its start and end time on CLOCK_MONOTONIC, which every namespace shares;
3. once the probe has an answer from lb1, and 100-200 ms later (so the kill lands anywhere in
   the advertisement cycle), the benchmark reads the clock and kill -9s lb1's daemon (the
   daemon's own pid; keepalived: its VRRP child, then its parent);
4. the probe stops after three answers in a row from lb2. Takeover time = end of the first
   answer from lb2 minus the kill time;
5. lb1's daemon is started again and the drill ends when lb1 has preempted (the state of
   step 1), so every drill starts from the same state.

kill -9 leaves the VIP on lb1 and its HTTP server running, as on a real box whose VRRP daemon
died: the client keeps reaching lb1 until lb2's gratuitous ARPs move it. So the takeover time
is Master_Down_Interval (3 x 100 ms + skew, minus where in the cycle the kill fell) plus the
time to add the VIP and send the ARPs. Each drill also records the last answer from lb1 before
the kill, the last one after it (stale answers) and the requests that failed after it.

The sides alternate (weir, keepalived, weir, ...), each in its own lab, so both see the same
machine. Output: one line per drill, a table per side (n, min, median, p95, max), then::

    weir takeover: median X ms, p95 Y ms (N drills)
    keepalived takeover: median X ms, p95 Y ms (N drills)
    weir/keepalived takeover median ratio: R (N drills each)

p95 is the nearest-rank percentile (an observed value). ``--variant NAME:LINES`` adds a third
side, ``weir-NAME``: Weir with extra ``[ha.vrrp]`` lines (``;`` separates lines, ``{peer}`` and
``{self}`` stand for the other node's and this node's address), for options such as a faster
takeover. Needs root (network namespaces, raw sockets) and Debian's keepalived.

    .venv/bin/python -m bench.takeover [--drills 20] [--variant NAME:LINES] [--weir CMD]

``python -m bench.takeover serve NAME PORT`` and ``... probe ADDR PORT UNTIL`` are the two
programs the benchmark runs inside the namespaces.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from bench.common import BenchError, find_weir, run_main, workdir
from ha.lab import HOST_IF, Lab, LabError, check_environment

ROOT = Path(__file__).resolve().parent.parent
KEEPALIVED = "/usr/sbin/keepalived"
VIP = "198.18.0.100"
PREFIXLEN = 24
VRID = 51
PORT = 8000
MASTER, BACKUP = "lb1", "lb2"
PRIORITIES = {MASTER: 150, BACKUP: 100}
ADVERT_MS = 100
REQUEST_TIMEOUT = 0.05  # seconds for each of connect, send, read: a dead path is a failure
PROBE_PAUSE = 0.005  # seconds between two requests: the resolution of the measure
CONFIRM = 3  # answers in a row from the backup that end a drill
KILL_DELAY = (0.1, 0.2)  # seconds between the probe's first answer and the kill (uniform)
STEADY_BOUND = 20.0  # seconds for a pair to reach (or get back to) master lb1, backup lb2
PROBE_BOUND = 15.0  # seconds a probe runs at most
DEFAULT_DRILLS = 20


@dataclass(frozen=True)
class Side:
    """One configuration under test: keepalived, or Weir with extra ``[ha.vrrp]`` lines."""

    name: str
    daemon: str  # "weir" or "keepalived"
    extra: tuple[str, ...] = ()


BASE_SIDES = (Side("weir", "weir"), Side("keepalived", "keepalived"))
_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")


def parse_variant(text: str) -> Side:
    """``NAME:LINE;LINE`` -> the Weir side ``weir-NAME`` with those ``[ha.vrrp]`` lines."""
    name, sep, lines = text.partition(":")
    if not sep or not _VARIANT_NAME.match(name):
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME:LINES, NAME of a-z, 0-9 and '-' (at most 16)"
        )
    extra = tuple(line.strip() for line in lines.split(";") if line.strip())
    if not extra:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: no configuration line")
    return Side(f"weir-{name}", "weir", extra)


def cannot_run() -> str | None:
    """Why the takeover benchmark cannot run on this machine, or None if it can."""
    try:
        check_environment()
    except LabError as exc:
        return f"the namespace lab {exc}"
    if not os.access(KEEPALIVED, os.X_OK):
        return f"{KEEPALIVED} not found: install the Debian package 'keepalived'"
    return None


# the two programs run inside the namespaces ------------------------------------------------


def serve(name: str, port: int) -> None:
    """HTTP/1.0 server on 0.0.0.0:``port`` answering ``name`` to every GET (until killed)."""
    body = f"{name}\n".encode()

    class NodeName(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: hundreds of requests per drill."""

    ThreadingHTTPServer(("0.0.0.0", port), NodeName).serve_forever()


def fetch(address: str, port: int, timeout: float) -> str:
    """GET / on a fresh connection, at most ``timeout`` per step; the body, stripped."""
    deadline = time.monotonic() + 3 * timeout
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            sock.settimeout(max(0.001, min(timeout, deadline - time.monotonic())))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.") or status.split()[1:2] != [b"200"]:
        raise OSError(f"answer {status[:60]!r}")
    return body.decode(errors="replace").strip()


def probe(address: str, port: int, until: str, out: IO[str], bound: float = PROBE_BOUND) -> bool:
    """Request ``address`` over and over, one JSON line per request on ``out``.

    Stops after CONFIRM answers in a row from ``until`` (True) or after ``bound`` seconds
    (False). A line is ``{"t0": start, "t1": end, "node": NAME}`` or ``... "error": WHAT}``.
    """
    end, streak = time.monotonic() + bound, 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            result = {"node": fetch(address, port, REQUEST_TIMEOUT)}
        except OSError as exc:
            result = {"error": str(exc) if type(exc) is OSError else type(exc).__name__}
        t1 = time.monotonic()
        out.write(json.dumps({"t0": t0, "t1": t1, **result}) + "\n")
        out.flush()
        streak = streak + 1 if result.get("node") == until else 0
        if streak >= CONFIRM:
            return True
        time.sleep(PROBE_PAUSE)
    return False


# what one drill measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    """One kill -9 of the master and what the client saw, in ms relative to the kill."""

    side: str
    takeover_ms: float  # first answer from the backup
    master_before_ms: float  # last answer from the master before the kill (negative)
    master_after_ms: float | None  # last (stale) answer from the master after the kill
    failed: int  # requests after the kill that got no answer
    requests: int  # requests after the kill
    errors: tuple[str, ...] = ()  # what those failed requests got, each kind once


def analyse(side: str, lines: Sequence[str], kill_at: float) -> Drill:
    """Turn a probe's JSON lines and the kill time into a :class:`Drill`.

    An answer counts at its end time. Raises BenchError if the probe never reached the master
    before the kill, heard the backup before it, or did not end with CONFIRM answers in a row
    from the backup.
    """
    records = [json.loads(line) for line in lines if line.strip()]
    before = [r for r in records if r["t1"] <= kill_at]
    after = [r for r in records if r["t1"] > kill_at]
    if any(r.get("node") == BACKUP for r in before):
        raise BenchError(f"{side}: {BACKUP} answered on the VIP before the kill")
    master_before = [r["t1"] for r in before if r.get("node") == MASTER]
    if not master_before:
        raise BenchError(f"{side}: the client had no answer from {MASTER} before the kill")
    backup_after = [r["t1"] for r in after if r.get("node") == BACKUP]
    if [r.get("node") for r in after[-CONFIRM:]] != [BACKUP] * CONFIRM:
        seen = "none" if not backup_after else "not the last ones"
        raise BenchError(
            f"{side}: the client did not end with {CONFIRM} answers in a row from {BACKUP} "
            f"on the VIP within {PROBE_BOUND:g}s (answers from {BACKUP}: {seen})"
        )
    master_after = [r["t1"] for r in after if r.get("node") == MASTER]
    return Drill(
        side=side,
        takeover_ms=(backup_after[0] - kill_at) * 1000,
        master_before_ms=(master_before[-1] - kill_at) * 1000,
        master_after_ms=(master_after[-1] - kill_at) * 1000 if master_after else None,
        failed=sum(1 for r in after if "node" not in r),
        requests=len(after),
        errors=tuple(sorted({r["error"] for r in after if "node" not in r})),
    )


@dataclass(frozen=True)
class Distribution:
    """One side's takeover times in ms."""

    n: int
    min: float
    median: float
    p95: float
    max: float


def distribution(values: Sequence[float]) -> Distribution:
    """n, min, median, nearest-rank p95 and max of ``values`` (not empty)."""
    ordered = sorted(values)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    return Distribution(len(ordered), ordered[0], statistics.median(ordered), p95, ordered[-1])


# the VRRP speakers ---------------------------------------------------------------------------


class Speaker:
    """One VRRP daemon on a lab node: started, observed (state, VIP) and killed with -9."""

    def __init__(self, lab: Lab, host: str, directory: Path) -> None:
        self.lab, self.host, self.directory = lab, host, directory
        self.priority = PRIORITIES[host]
        self.peer = lab.ip_of(BACKUP if host == MASTER else MASTER)
        self.log = directory / f"{host}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def state(self) -> str | None:
        raise NotImplementedError

    def forget_state(self) -> None:
        """Remove what the previous run left that ``state`` would read."""

    def start(self) -> None:
        self.forget_state()
        with self.log.open("ab") as log:
            self.proc = self.lab.popen(
                self.host, self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def kill(self) -> float:
        """kill -9 the process that sends the advertisements; the monotonic time just before."""
        raise NotImplementedError

    def holds_vip(self) -> bool:
        ns = self.lab.ns(self.host)
        out = subprocess.run(
            ["ip", "-j", "-n", ns, "-4", "addr", "show", "dev", HOST_IF],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode != 0:
            raise BenchError(f"ip -n {ns} addr: {out.stderr.strip()}")
        return VIP in {a["local"] for link in json.loads(out.stdout) for a in link["addr_info"]}

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:].strip() or "(empty)"
        except OSError:
            return "(no log)"

    def _wait_gone(self, pid: int) -> None:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)


class WeirSpeaker(Speaker):
    """``weir ha -c lbN.toml``; its state file says its state."""

    def __init__(self, lab: Lab, host: str, directory: Path, weir: str, side: Side) -> None:
        super().__init__(lab, host, directory)
        self.weir = weir
        self.state_file = directory / f"{host}.json"
        self.config = directory / f"{host}.toml"
        own = lab.ip_of(host)
        extra = [line.replace("{peer}", self.peer).replace("{self}", own) for line in side.extra]
        self.config.write_text(
            "\n".join(
                [
                    "[ha.vrrp]",
                    f'interface = "{HOST_IF}"',
                    f"vrid = {VRID}",
                    f"priority = {self.priority}",
                    "version = 3",
                    f'advert_interval = "{ADVERT_MS}ms"',
                    f'vips = ["{VIP}/{PREFIXLEN}"]',
                    "track_proxy = false",  # no proxy runs in the lab
                    f"state_file = {json.dumps(str(self.state_file))}",
                    *extra,
                    "",
                ]
            )
        )

    def argv(self) -> list[str]:
        return [self.weir, "ha", "-c", str(self.config)]

    def forget_state(self) -> None:
        self.state_file.unlink(missing_ok=True)

    def state(self) -> str | None:
        try:
            return json.loads(self.state_file.read_text())["state"]
        except (OSError, ValueError, KeyError):
            return None

    def kill(self) -> float:
        assert self.proc is not None
        # `ip netns exec` execs the command, so this pid is the daemon itself; check it.
        cmdline = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().split(b"\0")
        if b"ha" not in cmdline:
            raise BenchError(f"pid {self.proc.pid} is not weir ha: {cmdline}")
        at = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return at


class KeepalivedSpeaker(Speaker):
    """keepalived in the foreground, VRRP only; a notify script writes its state to a file."""

    def __init__(self, lab: Lab, host: str, directory: Path) -> None:
        super().__init__(lab, host, directory)
        self.config = directory / f"{host}.conf"
        self.pidfile = directory / f"{host}.pid"
        self.vrrp_pidfile = directory / f"{host}-vrrp.pid"
        self.state_file = directory / f"{host}.state"
        notify = directory / f"{host}-notify.sh"
        notify.write_text(
            "#!/bin/sh\n"
            "# keepalived notify: GROUP|INSTANCE NAME STATE PRIORITY\n"
            f"printf '%s\\n' \"$3\" > {self.state_file}.tmp && mv {self.state_file}.tmp "
            f"{self.state_file}\n"
        )
        notify.chmod(0o755)
        self.config.write_text(
            "global_defs {\n"
            f"    router_id weir_bench_{host}\n"
            "    vrrp_version 3\n"
            "    script_user root\n"
            "}\n"
            f"vrrp_instance VI_{VRID} {{\n"
            "    state BACKUP\n"
            f"    interface {HOST_IF}\n"
            f"    virtual_router_id {VRID}\n"
            f"    priority {self.priority}\n"
            f"    advert_int {ADVERT_MS / 1000:g}\n"
            f"    virtual_ipaddress {{\n        {VIP}/{PREFIXLEN}\n    }}\n"
            f"    notify {notify}\n"
            "}\n"
        )

    def argv(self) -> list[str]:
        # -n foreground, -l -D log to the console in detail, -G no syslog, -P VRRP only,
        # -R no respawn of a killed child, and pid files of our own (one keepalived per node)
        return [
            *(KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-R", "-f", str(self.config)),
            *("-p", str(self.pidfile), "-r", str(self.vrrp_pidfile)),
        ]

    def forget_state(self) -> None:
        for path in (self.state_file, self.pidfile, self.vrrp_pidfile):
            path.unlink(missing_ok=True)

    def state(self) -> str | None:
        try:
            return self.state_file.read_text().strip() or None
        except OSError:
            return None

    def kill(self) -> float:
        """The VRRP child first (so no priority-0 advertisement goes out), then the parent."""
        assert self.proc is not None
        child = int(self.vrrp_pidfile.read_text().split()[0])
        at = time.monotonic()
        os.kill(child, signal.SIGKILL)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._wait_gone(child)
        return at


# a pair in its lab ---------------------------------------------------------------------------


class Pair:
    """One side's lab: HTTP servers on lb1 and lb2, its two VRRP speakers, and the drill."""

    def __init__(self, side: Side, directory: Path, weir: str) -> None:
        self.side = side
        self.directory = directory
        self.lab = Lab(f"tko-{side.name}"[:24])
        self.speakers: dict[str, Speaker] = {}
        self.weir = weir

    def __enter__(self) -> Pair:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.lab.up()
            for host in (MASTER, BACKUP):
                self._start_server(host)
            for host in (MASTER, BACKUP):
                self._check_server(host)
            for host in (MASTER, BACKUP):
                speaker = self._speaker(host)
                self.speakers[host] = speaker
                speaker.start()
            self.wait_steady("at start")
        except BaseException:
            self.lab.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.lab.down()  # stops every process started in it, then removes the namespaces

    def _speaker(self, host: str) -> Speaker:
        if self.side.daemon == "keepalived":
            return KeepalivedSpeaker(self.lab, host, self.directory)
        return WeirSpeaker(self.lab, host, self.directory, self.weir, self.side)

    def _python(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bench.takeover", *args]

    def _start_server(self, host: str) -> None:
        with (self.directory / f"{host}-http.log").open("ab") as log:
            self.lab.popen(
                host,
                self._python("serve", host, str(PORT)),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _check_server(self, host: str) -> None:
        """The client reaches ``host``'s HTTP server on the node's own address."""
        out = self.lab.run(
            "client",
            self._python("probe", self.lab.ip_of(host), str(PORT), host, "10"),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            tail = out.stdout.strip().splitlines()[-1:] or [out.stderr.strip()]
            raise BenchError(f"{self.side.name}: {host}'s HTTP server does not answer: {tail[0]}")

    def steady(self) -> bool:
        master, backup = self.speakers[MASTER], self.speakers[BACKUP]
        return (
            master.state() == "MASTER"
            and backup.state() == "BACKUP"
            and master.holds_vip()
            and not backup.holds_vip()
        )

    def wait_steady(self, when: str) -> None:
        deadline = time.monotonic() + STEADY_BOUND
        while not self.steady():
            for speaker in self.speakers.values():
                if speaker.proc is not None and speaker.proc.poll() is not None:
                    raise BenchError(self._trouble(f"{speaker.host}'s daemon exited {when}"))
            if time.monotonic() > deadline:
                raise BenchError(
                    self._trouble(
                        f"not MASTER {MASTER} with the VIP and BACKUP {BACKUP} without it "
                        f"{STEADY_BOUND:g}s {when}"
                    )
                )
            time.sleep(0.02)

    def _trouble(self, what: str) -> str:
        states = ", ".join(
            f"{h} {s.state()} (VIP: {s.holds_vip()})" for h, s in self.speakers.items()
        )
        logs = "\n".join(f"--- {h} log:\n{s.log_tail()}" for h, s in self.speakers.items())
        return f"{self.side.name}: {what}; now {states}\n{logs}"

    def drill(self) -> Drill:
        """Kill the master while the client probes the VIP; back to the steady state after."""
        master = self.speakers[MASTER]
        proc = self.lab.popen(
            "client",
            self._python("probe", VIP, str(PORT), BACKUP, str(PROBE_BOUND)),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if json.loads(line).get("node") == MASTER:
                break
        else:
            proc.wait()
            last = lines[-1].strip() if lines else proc.stderr.read().strip()
            raise BenchError(self._trouble(f"the client never reached {MASTER}: {last}"))
        time.sleep(random.uniform(*KILL_DELAY))
        kill_at = master.kill()
        lines.extend(proc.stdout)
        proc.wait()
        master.start()
        self.wait_steady("after the drill")
        try:
            return analyse(self.side.name, lines, kill_at)
        except BenchError as exc:
            raise BenchError(self._trouble(str(exc))) from None


# the benchmark -------------------------------------------------------------------------------


def run_drills(
    sides: Sequence[Side],
    drills: int,
    directory: Path,
    weir: str,
    report: Callable[[int, Drill], None] = lambda index, drill: None,
) -> dict[str, list[Drill]]:
    """``drills`` drills per side, alternating sides; ``report`` sees each as it ends."""
    with ExitStack() as stack:
        pairs = [stack.enter_context(Pair(s, directory / s.name, weir)) for s in sides]
        results: dict[str, list[Drill]] = {side.name: [] for side in sides}
        for index in range(1, drills + 1):
            for pair in pairs:
                drill = pair.drill()
                results[pair.side.name].append(drill)
                report(index, drill)
    return results


def describe(index: int, drills: int, drill: Drill) -> str:
    stale = (
        f"{MASTER} answered until {drill.master_after_ms:+.0f} ms"
        if drill.master_after_ms is not None
        else f"no answer from {MASTER} after the kill"
    )
    return (
        f"drill {index:2d}/{drills} {drill.side:<12} takeover {drill.takeover_ms:6.1f} ms "
        f"(last {MASTER} answer {drill.master_before_ms:+.1f} ms before the kill; {stale}; "
        f"{drill.failed} of {drill.requests} requests failed"
        + (f": {', '.join(drill.errors)})" if drill.errors else ")")
    )


def summary_lines(results: dict[str, list[Drill]]) -> list[str]:
    """The table and the summary lines, the weir/keepalived ratio last."""
    dists = {
        side: distribution([d.takeover_ms for d in drills]) for side, drills in results.items()
    }
    lines = [
        "",
        f"{'side':<12} {'n':>3} {'min':>8} {'median':>8} {'p95':>8} {'max':>8} {'failed':>8}",
    ]
    for side, dist in dists.items():
        failed = sum(d.failed for d in results[side])
        lines.append(
            f"{side:<12} {dist.n:3d} {dist.min:8.1f} {dist.median:8.1f} {dist.p95:8.1f} "
            f"{dist.max:8.1f} {failed:8d}"
        )
    lines.append("(takeover in ms from the kill -9 to the first answer from the backup; failed:")
    lines.append(" requests after the kill that got no answer within 3 x 50 ms)")
    lines.append("")
    for side, dist in dists.items():
        lines.append(
            f"{side} takeover: median {dist.median:.0f} ms, p95 {dist.p95:.0f} ms ({dist.n} drills)"
        )
    reference = dists["keepalived"]
    others = [side for side in dists if side not in ("weir", "keepalived")]
    for side in [*others, "weir"]:
        lines.append(
            f"{side}/keepalived takeover median ratio: "
            f"{dists[side].median / reference.median:.2f} ({reference.n} drills each)"
        )
    return lines


def bench(args: argparse.Namespace) -> None:
    reason = cannot_run()
    if reason:
        raise BenchError(f"the takeover benchmark cannot run: {reason}")
    weir = find_weir(args.weir)
    sides = [*BASE_SIDES, *args.variant]
    print(
        f"takeover drills: {args.drills} per side, alternating {', '.join(s.name for s in sides)};"
        f" VRRPv3, advert interval {ADVERT_MS} ms, priorities {PRIORITIES[MASTER]}/"
        f"{PRIORITIES[BACKUP]}, kill -9 of the master's daemon",
        flush=True,
    )
    with workdir() as directory:
        results = run_drills(
            sides,
            args.drills,
            directory,
            weir,
            lambda index, drill: print(describe(index, args.drills, drill), flush=True),
        )
    print("\n".join(summary_lines(results)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.takeover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--drills", type=int, default=DEFAULT_DRILLS, help=f"drills per side ({DEFAULT_DRILLS})"
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME:LINES",
        help="also measure weir-NAME: Weir with these extra [ha.vrrp] lines (';' between lines)",
    )
    parser.add_argument("--weir", help="weir command (default: the one next to this Python)")
    args = parser.parse_args(argv)
    if args.drills < 1:
        parser.error("--drills must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"] and len(argv) == 3:
        serve(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["probe"] and len(argv) in (4, 5):
        bound = float(argv[4]) if len(argv) == 5 else PROBE_BOUND
        return 0 if probe(argv[1], int(argv[2]), argv[3], sys.stdout, bound) else 1
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
