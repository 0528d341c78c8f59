"""``weir ha`` against the real keepalived on the wire, VRRPv3 and VRRPv2, both directions.

In one lab, keepalived (Debian's, 2.2.7 here) runs in lb1's namespace and ``weir ha`` in
lb2's. Each election scenario (VRID 51, 198.18.0.100/24 on eth0) checks who holds the VIP
with ``ip -n NS addr``, kills the master with -9 (keepalived: its VRRP child and its
parent), checks that the other side takes the VIP, restarts the killed side and checks
that it preempts back. keepalived's state is read from its console log (``-l``), Weir's
from its state files. v3 runs at 100 ms (keepalived accepts a fractional ``advert_int``
only in v3), v2 at keepalived's 1 s, where Master_Down_Interval is ~3.6 s. At the end of
each test keepalived's log must show no rejected advertisement and Weir's drop counters
(state files, written at SIGTERM) must be empty.

The steady run: both daemons run two virtual routers at once, VRID 51 in VRRPv3 at 100 ms
(keepalived master) and VRID 52 in VRRPv2 at 1 s (Weir master), so that one 60-second
window shows no transition on either side, in both versions and both directions (the
issue's "no flapping over a 60-second steady run"). Then a split brain in v3: lb2's bridge
port is detached with the carrier kept (``Lab.link_down(keep_carrier=True)``), both sides
become MASTER with the VIP, and after ``link_up`` exactly one MASTER (the higher priority)
remains. Its timing is measured in test_vrrp_lab.py, between two Weir nodes.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ha.lab import Lab
from tests.lab.vrrp import SKIP_REASON as LAB_SKIP_REASON
from tests.lab.vrrp import VIP, Vr, VrrpNode, WeirNode, addresses, lab_fixture, master_is, wait_for

pytestmark = pytest.mark.lab

KEEPALIVED = "/usr/sbin/keepalived"

if not os.path.exists(KEEPALIVED):
    SKIP_REASON = f"keepalived interop: needs {KEEPALIVED} (Debian package keepalived)"
elif os.geteuid() != 0:
    SKIP_REASON = "keepalived interop: needs root (network namespaces, raw sockets)"
else:
    SKIP_REASON = LAB_SKIP_REASON and f"keepalived interop: {LAB_SKIP_REASON}"

VIP2 = "198.18.0.101"
HIGH, LOW = 150, 100
STEADY = 60.0  # seconds without a transition
# (advert interval, bound on every wait in seconds) per VRRP version
TIMING = {3: ("100ms", 10.0), 2: ("1s", 20.0)}

_STATE_RE = re.compile(r"\(VI_(\d+)\) Entering (MASTER|BACKUP|FAULT) STATE")


def seconds(interval: str) -> float:
    return float(interval[:-2]) / 1000 if interval.endswith("ms") else float(interval[:-1])


class Keepalived:
    """keepalived in a lab namespace, one ``vrrp_instance VI_<vrid>`` per ``Vr``."""

    def __init__(self, lab: Lab, host: str, workdir: Path, routers: Sequence[Vr]) -> None:
        self.lab, self.host, self.routers = lab, host, list(routers)
        self.log = workdir / f"{host}.log"
        self.config = workdir / "keepalived.conf"
        self.pidfile = workdir / "keepalived.pid"
        self.vrrp_pidfile = workdir / "keepalived-vrrp.pid"
        self.proc: Any = None
        self.runs = 0
        instances = [
            f"vrrp_instance VI_{vr.vrid} {{\n"
            "    state BACKUP\n"
            "    interface eth0\n"
            f"    version {vr.version}\n"
            f"    virtual_router_id {vr.vrid}\n"
            f"    priority {vr.priority}\n"
            f"    advert_int {seconds(vr.interval):g}\n"
            f"    virtual_ipaddress {{\n        {vr.vip}/24\n    }}\n"
            "}\n"
            for vr in self.routers
        ]
        self.config.write_text(
            "global_defs {\n    router_id weir_interop\n}\n" + "".join(instances)
        )
        self._offset = 0  # where the current run's log starts

    def start(self) -> None:
        for pidfile in (self.pidfile, self.vrrp_pidfile):
            pidfile.unlink(missing_ok=True)
        self.runs += 1
        with self.log.open("a") as log:
            log.write(f"=== keepalived run {self.runs}\n")
            log.flush()
            self._offset = self.log.stat().st_size
            argv = [KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-R", "-f", str(self.config)]
            argv += ["-p", str(self.pidfile), "-r", str(self.vrrp_pidfile)]
            self.proc = self.lab.popen(self.host, argv, stdout=log, stderr=log)

    def _run_log(self) -> str:
        with self.log.open() as log:
            log.seek(self._offset)
            return log.read()

    def state(self, vrid: int | None = None) -> str | None:
        vrid = vrid or self.routers[0].vrid
        states = [s for v, s in _STATE_RE.findall(self._run_log()) if int(v) == vrid]
        return states[-1] if states else None

    def holds_vip(self, vip: str = VIP) -> bool:
        return vip in addresses(self.lab, self.host)

    def transitions(self) -> int:
        return len(_STATE_RE.findall(self.log.read_text()))

    def kill(self) -> None:
        """kill -9 the VRRP child (so no priority 0 goes out), then the parent."""
        assert self.proc is not None
        pid = int(self.vrrp_pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


Side = Keepalived | WeirNode

# what keepalived logs when it rejects an advertisement (checksum, interval, addresses, ...);
# "received lower priority (100) advert ... - discarding" is the protocol (a preempting
# backup ignores a lower master), not a rejection
_KEEPALIVED_LOWER = "received lower priority"
_KEEPALIVED_REJECTS = re.compile(
    r"checksum|invalid|mismatch|not present|discard|bad |wrong|error", re.IGNORECASE
)


def check_both_understood_each_other(keepalived: Keepalived, weir: WeirNode) -> None:
    """Nothing either side received from the other was rejected."""
    rejects = [
        line
        for line in keepalived.log.read_text().splitlines()
        if _KEEPALIVED_REJECTS.search(line) and _KEEPALIVED_LOWER not in line
    ]
    assert not rejects, "keepalived rejected packets:\n" + "\n".join(rejects)
    assert weir.stop() == 0
    for vr in weir.routers:
        status = weir.status(vr.vrid)  # written at exit
        assert status is not None and status["drops"] == {}, weir.log.read_text()


lab = lab_fixture("wk", SKIP_REASON)


def pair(lab: Lab, tmp_path: Path, version: int, weir_master: bool) -> tuple[Side, Side]:
    """(master, backup) by priority: keepalived on lb1, Weir on lb2, both started."""
    weir_prio, ka_prio = (HIGH, LOW) if weir_master else (LOW, HIGH)
    interval = TIMING[version][0]
    keepalived = Keepalived(lab, "lb1", tmp_path, [Vr(51, ka_prio, VIP, version, interval)])
    weir = WeirNode(lab, "lb2", tmp_path, [Vr(51, weir_prio, VIP, version, interval)])
    keepalived.start()
    weir.start()
    return (weir, keepalived) if weir_master else (keepalived, weir)


def by_kind(sides: Sequence[Side]) -> tuple[Keepalived, WeirNode]:
    [keepalived] = [s for s in sides if isinstance(s, Keepalived)]
    [weir] = [s for s in sides if isinstance(s, WeirNode)]
    return keepalived, weir


@pytest.mark.parametrize("weir_master", [True, False], ids=["weir-master", "keepalived-master"])
@pytest.mark.parametrize("version", [3, 2], ids=["v3", "v2"])
def test_election_takeover_and_preemption_with_keepalived(
    lab: Lab, tmp_path: Path, version: int, weir_master: bool
) -> None:
    bound = TIMING[version][1]
    master, backup = pair(lab, tmp_path, version, weir_master)
    sides: list[VrrpNode] = [master, backup]
    wait_for(master_is(master, backup), f"{master.host} MASTER, {backup.host} BACKUP", sides, bound)

    master.kill()
    wait_for(
        lambda: backup.state() == "MASTER" and backup.holds_vip(),
        f"{backup.host} takes over the VIP",
        sides,
        bound,
    )

    master.start()  # both clean up a VIP the killed daemon left behind, then preempt
    wait_for(master_is(master, backup), f"{master.host} preempts back", sides, bound)
    check_both_understood_each_other(*by_kind([master, backup]))


def test_sixty_seconds_without_a_transition_in_v3_and_v2_at_once(lab: Lab, tmp_path: Path) -> None:
    # keepalived masters VRID 51 (v3, 100 ms), Weir masters VRID 52 (v2, 1 s).
    fast, slow = TIMING[3][0], TIMING[2][0]
    keepalived = Keepalived(
        lab, "lb1", tmp_path, [Vr(51, HIGH, VIP, 3, fast), Vr(52, LOW, VIP2, 2, slow)]
    )
    weir = WeirNode(lab, "lb2", tmp_path, [Vr(51, LOW, VIP, 3, fast), Vr(52, HIGH, VIP2, 2, slow)])
    keepalived.start()
    weir.start()
    sides: list[VrrpNode] = [keepalived, weir]

    def steady() -> bool:
        return (
            keepalived.state(51) == "MASTER"
            and keepalived.holds_vip(VIP)
            and weir.state(51) == "BACKUP"
            and not weir.holds_vip(VIP)
            and weir.state(52) == "MASTER"
            and weir.holds_vip(VIP2)
            and keepalived.state(52) == "BACKUP"
            and not keepalived.holds_vip(VIP2)
        )

    wait_for(steady, "keepalived MASTER of 51, Weir MASTER of 52", sides, TIMING[2][1])
    before = [s.transitions() for s in (keepalived, weir)]
    time.sleep(STEADY)
    after = [s.transitions() for s in (keepalived, weir)]
    assert after == before, f"transitions during the steady run: {before} -> {after}"
    assert steady()
    check_both_understood_each_other(keepalived, weir)


@pytest.mark.parametrize("weir_master", [True, False], ids=["weir-master", "keepalived-master"])
def test_split_brain_heals_with_keepalived(lab: Lab, tmp_path: Path, weir_master: bool) -> None:
    version = 3
    bound = TIMING[version][1]
    master, backup = pair(lab, tmp_path, version, weir_master)
    sides: list[VrrpNode] = [master, backup]
    wait_for(master_is(master, backup), f"{master.host} MASTER, {backup.host} BACKUP", sides, bound)

    lab.link_down(backup.host, keep_carrier=True)  # a silent partition: both elect themselves
    wait_for(
        lambda: all(s.state() == "MASTER" and s.holds_vip() for s in sides),
        "both MASTER while partitioned",
        sides,
        bound,
    )
    lab.link_up(backup.host)
    wait_for(master_is(master, backup), "exactly one MASTER after the link is back", sides, bound)
    check_both_understood_each_other(*by_kind([master, backup]))
