"""A Weir failover pair with stick-table sync in the namespace lab (tests/lab/test_sync_drill.py).

lb1 and lb2 each run ``weir run`` and ``weir ha`` from one configuration file: a frontend on
0.0.0.0:80 in front of web1 (id 1) and web2 (id 2), a ``[backends.app.stick]`` table learning
the application's ``JSESSIONID`` from its ``Set-Cookie``, ``[ha.sync]`` between the two nodes,
and ``[ha.vrrp]`` for the VIP 198.18.0.100 (lb1 priority 150, lb2 100, 100 ms adverts,
``track_proxy = false``: the drill kills both processes at once, and restarts ``weir ha`` only
once the proxy has resynced). web1 and web2 run the application server of
``tests.lab.sessions``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ha.lab import Lab
from tests.integration.test_sync import parse_table, unix_ask
from tests.lab.vrrp import Vr, WeirNode

ROOT = Path(__file__).resolve().parents[2]
WEIR = [sys.executable, "-m", "appliance.cli"]
HTTP_PORT = 80
SYNC_PORT = 7777
SERVER_IDS = {"web1": 1, "web2": 2}
PRIORITIES = {"lb1": 150, "lb2": 100}
PEER = {"lb1": "lb2", "lb2": "lb1"}
BOUND = 15.0  # seconds: the bound on each wait (start-up, resync, election)


def node_head(lab: Lab, host: str, workdir: Path) -> str:
    """The proxy and sync part of ``host``'s configuration (``[ha.vrrp]`` follows)."""
    peer = PEER[host]
    servers = "".join(
        f'[[backends.app.servers]]\nname = "{name}"\naddress = "{lab.ip_of(name)}:{HTTP_PORT}"\n'
        f"id = {server_id}\n"
        for name, server_id in SERVER_IDS.items()
    )
    return (
        "[global]\n"
        f'log = "{workdir / host}-access.log"\n'
        f'runtime_socket = "{workdir / host}.sock"\n'
        'grace = "1s"\n'
        "[frontends.www]\n"
        f'bind = ["0.0.0.0:{HTTP_PORT}"]\n'
        'default_backend = "app"\n'
        "[backends.app]\n"
        'balance = "roundrobin"\n'
        "[backends.app.stick]\n"
        'on = "cookie:JSESSIONID"\n'
        'expire = "30m"\n'
        f"{servers}"
        "[ha.sync]\n"
        f'local = "{host}"\n'
        f'bind = "{lab.ip_of(host)}:{SYNC_PORT}"\n'
        f'peers = [{{ name = "{peer}", address = "{lab.ip_of(peer)}:{SYNC_PORT}" }}]\n'
    )


class SyncNode:
    """One LB node: its ``weir run`` (started and killed here) and its ``weir ha`` (``vrrp``)."""

    def __init__(self, lab: Lab, host: str, workdir: Path) -> None:
        self.lab, self.host = lab, host
        self.vrrp = WeirNode(
            lab,
            host,
            workdir,
            [Vr(priority=PRIORITIES[host], extra="track_proxy = false\n")],
            node_head(lab, host, workdir),
        )
        self.socket = workdir / f"{host}.sock"
        self.log = self.vrrp.log  # both processes write there
        self.proxy: subprocess.Popen[Any] | None = None
        self.proxy_runs = 0

    def start_proxy(self) -> None:
        self.proxy_runs += 1
        with self.log.open("a") as log:
            log.write(f"=== weir run {self.proxy_runs}\n")
            log.flush()
            self.proxy = self.lab.popen(
                self.host,
                [*WEIR, "run", "-c", str(self.vrrp.config)],
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + BOUND
        while not self.answers():
            if self.proxy.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"weir run on {self.host} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            return "Pid: " in self.ask("show info")
        except OSError:
            return False

    def ask(self, command: str) -> str:
        return unix_ask(self.socket, command)

    def peer(self) -> dict[str, Any]:
        """This node's ``show peers json``."""
        return json.loads(self.ask("show peers json"))

    def table(self) -> dict[str, int]:
        """key -> server id."""
        return {k: sid for k, (sid, _) in parse_table(self.ask("show table app")).items()}

    def pids(self) -> list[int]:
        """The pids of ``weir run`` and ``weir ha`` (``ip netns exec`` execs the command)."""
        pids = []
        for proc, verb in ((self.proxy, b"run"), (self.vrrp.proc, b"ha")):
            assert proc is not None and proc.poll() is None, f"{self.host}: {verb!r} is not running"
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert verb in cmdline, (proc.pid, cmdline)
            pids.append(proc.pid)
        return pids

    def reap(self) -> None:
        """Wait for both processes after a kill from elsewhere."""
        for proc in (self.proxy, self.vrrp.proc):
            assert proc is not None
            proc.wait(timeout=10)

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"


class SyncPair:
    """The lab's two web servers and two nodes; ``up`` starts everything and waits for lb1 to be
    MASTER with an established sync session."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.nodes = {host: SyncNode(lab, host, workdir) for host in ("lb1", "lb2")}

    def up(self) -> SyncPair:
        for name in SERVER_IDS:
            with (self.workdir / f"{name}.log").open("ab") as log:
                self.lab.popen(
                    name,
                    [sys.executable, "-m", "tests.lab.sessions", "serve", name, str(HTTP_PORT)],
                    cwd=ROOT,
                    stdout=log,
                    stderr=log,
                )
        for node in self.nodes.values():
            node.start_proxy()
        for node in self.nodes.values():
            node.vrrp.start()
        self.wait(self.steady, "lb1 MASTER with the VIP, lb2 BACKUP, sync established")
        # Started together, each node answers the other's resync request "partial" (it is not
        # up to date itself) and then waits PEER_RESYNC_TIMEOUT (5 s) before it considers itself
        # up to date. A node restarted before that would not learn from it (docs/sync.md).
        self.wait(lambda: all(n.peer()["resync"]["done"] for n in self.nodes.values()), "resync")
        return self

    def wait(self, condition: Any, what: str, bound: float = BOUND) -> None:
        deadline = time.monotonic() + bound
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {h}\n{n.log_tail()}" for h, n in self.nodes.items())
                raise AssertionError(f"not within {bound:g}s: {what}\n{logs}")
            time.sleep(0.05)

    def established(self) -> bool:
        try:
            return all(n.peer()["peers"][0]["state"] == "established" for n in self.nodes.values())
        except (OSError, ValueError):
            return False

    def steady(self) -> bool:
        lb1, lb2 = self.nodes["lb1"].vrrp, self.nodes["lb2"].vrrp
        return (
            lb1.state() == "MASTER"
            and lb2.state() == "BACKUP"
            and lb1.holds_vip()
            and not lb2.holds_vip()
            and self.established()
        )

    def taken_over(self) -> bool:
        lb2 = self.nodes["lb2"].vrrp
        return lb2.state() == "MASTER" and lb2.holds_vip()

    def restore_lb1(self) -> float:
        """Restart lb1's proxy, wait for its start-up resync from lb2, then its ``weir ha`` and
        its preemption. Returns the resync's duration as lb1 reports it (seconds)."""
        lb1 = self.nodes["lb1"]
        lb1.start_proxy()

        def resynced() -> bool:
            resync = lb1.peer()["resync"]
            return bool(resync["done"])

        self.wait(resynced, "lb1's start-up resync")
        resync = lb1.peer()["resync"]
        assert "learned from lb2" in resync["state"], resync
        lb1.vrrp.start()
        self.wait(self.steady, "lb1 preempts back, sync established")
        return float(resync["seconds"])
