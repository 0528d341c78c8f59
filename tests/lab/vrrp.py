"""Helpers shared by the VRRP lab tests: ``weir ha`` on a lab node, bounded waits, who is master.

``WeirNode`` writes a node's configuration (``[ha.vrrp]`` for the first ``Vr``, one
``[[ha.vrrp.instances]]`` per further ``Vr``, each with its own state file in the test's
directory), starts ``weir ha`` in the node's namespace and reads its state files and
addresses. Nothing is timed here: every wait is bounded, and the few measurements the
tests make come from the daemons' own timestamps (the state file's ``since``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from ha.lab import Lab
from tests.lab.marks import SKIP_REASON

VIP = "198.18.0.100"
WAIT = 10.0  # seconds: the bound on a wait at 100 ms advertisements (elections take < 1 s)


def lab_fixture(prefix: str, skip_reason: str = SKIP_REASON) -> Any:
    """A ``lab`` fixture: a fresh lab named PREFIX-<random>, down at teardown, even on failure."""

    @pytest.fixture
    def lab(tmp_path: Path) -> Iterator[Lab]:
        if skip_reason:
            pytest.skip(skip_reason)
        lab = Lab(prefix, state_path=tmp_path / "lab.json")
        try:
            lab.up()
            yield lab
        finally:
            lab.down()  # stops every process started in it, then removes the namespaces

    return lab


class VrrpNode(Protocol):
    """A VRRP speaker in a lab namespace (``weir ha`` or keepalived)."""

    host: str
    log: Path

    def state(self) -> str | None: ...

    def holds_vip(self) -> bool: ...


def wait_for(
    condition: Callable[[], bool], what: str, nodes: Sequence[VrrpNode], bound: float
) -> None:
    """Poll ``condition`` for at most ``bound`` seconds; on failure show every node's log."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {n.host} ({type(n).__name__})\n{n.log.read_text()}" for n in nodes
            )
            pytest.fail(f"not within {bound:g}s: {what}\n{logs}")
        time.sleep(0.05)


def master_is(master: VrrpNode, backup: VrrpNode) -> Callable[[], bool]:
    """``master`` is MASTER with the VIP and ``backup`` BACKUP without it."""
    return lambda: (
        master.state() == "MASTER"
        and master.holds_vip()
        and backup.state() == "BACKUP"
        and not backup.holds_vip()
    )


def addresses(lab: Lab, host: str) -> set[str]:
    """The IPv4 addresses on ``host``'s eth0."""
    out = subprocess.run(
        ["ip", "-j", "-n", lab.ns(host), "-4", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {a["local"] for link in json.loads(out.stdout) for a in link["addr_info"]}


def mac_of(lab: Lab, host: str) -> str:
    out = subprocess.run(
        ["ip", "-j", "-n", lab.ns(host), "link", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)[0]["address"]


@dataclass(frozen=True)
class Vr:
    """One virtual router in a node's configuration."""

    vrid: int = 51
    priority: int = 100
    vip: str = VIP
    version: int = 3
    interval: str = "100ms"
    extra: str = ""  # more keys, one per line


class WeirNode:
    """One lab node's ``weir ha``: its config, state files and log, (re)started on demand."""

    def __init__(
        self, lab: Lab, host: str, workdir: Path, routers: Sequence[Vr], head: str = ""
    ) -> None:
        self.lab = lab
        self.host = host
        self.workdir = workdir
        self.routers = list(routers)
        self.log = workdir / f"{host}.log"
        self.config = workdir / f"{host}.toml"
        tables = []
        for n, vr in enumerate(self.routers):
            tables.append(
                ("[ha.vrrp]\n" if n == 0 else "[[ha.vrrp.instances]]\n")
                + ('interface = "eth0"\n' if n == 0 else "")
                + f"vrid = {vr.vrid}\n"
                f"priority = {vr.priority}\n"
                f"version = {vr.version}\n"
                f'advert_interval = "{vr.interval}"\n'
                f'vips = ["{vr.vip}/24"]\n'
                f'state_file = "{self.state_file(vr.vrid)}"\n' + vr.extra
            )
        self.config.write_text(head + "\n".join(tables))
        self.proc: subprocess.Popen[Any] | None = None
        self.runs = 0

    def state_file(self, vrid: int | None = None) -> Path:
        return self.workdir / f"{self.host}-{vrid or self.routers[0].vrid}.json"

    def start(self) -> None:
        for vr in self.routers:
            self.state_file(vr.vrid).unlink(missing_ok=True)
        self.runs += 1
        with self.log.open("a") as log:
            log.write(f"=== weir ha run {self.runs}\n")
            log.flush()
            self.proc = self.lab.popen(
                self.host,
                [sys.executable, "-m", "appliance.cli", "ha", "-c", str(self.config)],
                stdout=log,
                stderr=log,
            )

    def status(self, vrid: int | None = None) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file(vrid).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def state(self, vrid: int | None = None) -> str | None:
        status = self.status(vrid)
        return status["state"] if status else None

    def holds_vip(self, vip: str = VIP) -> bool:
        return vip in addresses(self.lab, self.host)

    def transitions(self) -> int:
        return self.log.read_text().count("Entering ")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)
