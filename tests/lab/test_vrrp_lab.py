"""``weir ha`` on two lab nodes: election, takeover after kill -9 and SIGTERM, preemption.

lb1 (priority 150) and lb2 (priority 100) run the real daemon in their namespaces with a
100 ms advertisement interval and share 198.18.0.100/24. Each node also runs a tiny HTTP
server that answers its own name, so the client sees through the VIP which node holds it.
All waits are bounded; nothing is timed (takeover times belong in bench/).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.cli import main
from ha.lab import Lab
from tests.lab.marks import needs_lab
from tests.lab.vrrp import (
    VIP,
    WAIT,
    Vr,
    WeirNode,
    lab_fixture,
    mac_of,
    master_is,
    wait_for,
)

pytestmark = pytest.mark.lab

PRIORITIES = {"lb1": 150, "lb2": 100}


lab = lab_fixture("wv")


def start_pair(
    lab: Lab, workdir: Path, *, interval: str = "100ms", extra: str = ""
) -> tuple[WeirNode, WeirNode]:
    """``weir ha`` on lb1 (priority 150) and lb2 (100) for VRID 51; lb1 MASTER when it returns."""
    nodes = tuple(
        WeirNode(
            lab, host, workdir, [Vr(priority=PRIORITIES[host], interval=interval, extra=extra)]
        )
        for host in ("lb1", "lb2")
    )
    for node in nodes:
        node.start()
    bound = WAIT if interval == "100ms" else 30.0
    wait_for(master_is(*nodes), "lb1 MASTER with the VIP, lb2 BACKUP", nodes, bound)
    return nodes  # type: ignore[return-value]


@pytest.fixture
def pair(lab, tmp_path) -> tuple[Lab, WeirNode, WeirNode]:
    """A fresh lab with ``weir ha`` on lb1 and lb2; every process stopped at teardown."""
    return (lab, *start_pair(lab, tmp_path))


_FETCH = """
import sys, time, urllib.request
expect, end, answer = sys.argv[1], time.monotonic() + float(sys.argv[2]), ""
while time.monotonic() < end:
    try:
        with urllib.request.urlopen("http://198.18.0.100:8000/node.txt", timeout=0.5) as r:
            answer = r.read().decode().strip()
    except OSError as exc:
        answer = repr(exc)
    if answer == expect:
        break
    time.sleep(0.05)
print(answer)
"""


def client_sees(lab: Lab, node: str) -> str:
    """What the client's bounded request loop to the VIP got last (``node`` when it worked)."""
    out = lab.run(
        "client",
        [sys.executable, "-c", _FETCH, node, str(WAIT)],
        capture_output=True,
        text=True,
        timeout=WAIT + 10,
    )
    return out.stdout.strip()


@needs_lab
def test_election_kill9_takeover_and_preemption(pair) -> None:
    lab, lb1, lb2 = pair
    assert lb1.proc is not None
    lb1.proc.send_signal(signal.SIGKILL)
    lb1.proc.wait(timeout=5)
    wait_for(
        lambda: lb2.state() == "MASTER" and lb2.holds_vip(), "lb2 takes over", [lb1, lb2], WAIT
    )

    lb1.start()  # removes the VIP the killed daemon left behind, then preempts
    wait_for(master_is(lb1, lb2), "lb1 preempts back, lb2 releases the VIP", [lb1, lb2], WAIT)
    assert "Entering MASTER STATE" in lb1.log.read_text()


@needs_lab
def test_sigterm_hands_over_at_once_and_the_client_follows_the_vip(pair, tmp_path) -> None:
    lab, lb1, lb2 = pair
    for node in (lb1, lb2):
        root = tmp_path / f"www-{node.host}"
        root.mkdir()
        (root / "node.txt").write_text(f"{node.host}\n")
        lab.popen(
            node.host,
            [sys.executable, "-m", "http.server", "8000", "--bind", "0.0.0.0"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    assert client_sees(lab, "lb1") == "lb1"

    assert lb1.proc is not None
    lb1.proc.send_signal(signal.SIGTERM)
    assert lb1.proc.wait(timeout=5) == 0
    assert not lb1.holds_vip()
    assert lb1.state() == "INITIALIZE"
    assert "sent priority 0" in lb1.log.read_text()
    wait_for(
        lambda: lb2.state() == "MASTER" and lb2.holds_vip(), "lb2 takes over", [lb1, lb2], WAIT
    )
    assert client_sees(lab, "lb2") == "lb2"


def test_weir_ha_without_a_vrrp_section_is_a_user_error(tmp_path, capsys) -> None:
    config = tmp_path / "weir.toml"
    config.write_text('[global]\nlog = "stdout"\n')
    assert main(["ha", "-c", str(config)]) == 1
    assert "[ha.vrrp]" in capsys.readouterr().err
    config.write_text('[ha.vrrp]\npriority = 300\nvips = ["198.18.0.100/24"]\n')
    assert main(["ha", "-c", str(config)]) == 1
    assert "ha.vrrp.priority" in capsys.readouterr().err
    config.write_text(
        '[ha.vrrp]\nvrid = 51\nvips = ["198.18.0.100/24"]\n'
        '[[ha.vrrp.instances]]\nvrid = 51\nvips = ["198.18.0.101/24"]\n'
    )
    assert main(["ha", "-c", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"{config}:5: ha.vrrp.instances[0].vrid: VRID 51 (VRRPv3 on eth1) is already used "
        "by [ha.vrrp] (line 1)\n"
    )


def test_weir_ha_on_a_missing_interface_is_a_one_line_runtime_error(tmp_path, capsys) -> None:
    config = tmp_path / "weir.toml"
    config.write_text('[ha.vrrp]\ninterface = "nosuch-wv0"\nvips = ["198.18.0.100/24"]\n')
    assert main(["ha", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch-wv0" in err


@needs_lab
def test_link_down_means_fault_and_link_up_preempts_back(pair) -> None:
    lab, lb1, lb2 = pair
    nodes = [lb1, lb2]
    lab.link_down("lb1")  # lb1's eth0 loses its carrier
    wait_for(lambda: lb1.state() == "FAULT" and not lb1.holds_vip(), "lb1 in FAULT", nodes, WAIT)
    wait_for(lambda: lb2.state() == "MASTER" and lb2.holds_vip(), "lb2 takes the VIP", nodes, WAIT)
    status = lb1.status()
    assert status is not None and status["faults"] == ["eth0 link down"]
    assert "Entering FAULT STATE (fault: eth0 link down)" in lb1.log.read_text()

    lab.link_up("lb1")
    wait_for(master_is(lb1, lb2), "lb1 leaves FAULT and preempts back", nodes, WAIT)
    assert "Entering BACKUP STATE (fault cleared: eth0 link up)" in lb1.log.read_text()


@needs_lab
def test_two_virtual_routers_per_daemon_each_with_its_own_master(lab, tmp_path) -> None:
    # Active/active: lb1 is master of VRID 51, lb2 of VRID 52; one daemon each runs both.
    vip2 = "198.18.0.101"
    notify = tmp_path / "notify.sh"
    notify.write_text('#!/bin/sh\necho "$@" >> "$0.$2.log"\n')
    notify.chmod(0o755)
    extra = f'notify = "{notify}"\n'
    lb1, lb2 = (
        WeirNode(
            lab,
            host,
            tmp_path,
            [
                Vr(vrid=51, priority=high, extra=extra),
                Vr(vrid=52, priority=250 - high, vip=vip2),  # inherits notify
            ],
        )
        for host, high in (("lb1", 150), ("lb2", 100))
    )
    nodes = [lb1, lb2]
    for node in nodes:
        node.start()

    def holds(node: WeirNode, vrid: int, vip: str) -> bool:
        return node.state(vrid) == "MASTER" and node.holds_vip(vip)

    def releases(node: WeirNode, vrid: int, vip: str) -> bool:
        return node.state(vrid) == "BACKUP" and not node.holds_vip(vip)

    def masters(of51: WeirNode, of52: WeirNode) -> bool:
        return (
            holds(of51, 51, VIP)
            and holds(of52, 52, vip2)
            and releases(lb2 if of51 is lb1 else lb1, 51, VIP)
            and releases(lb2 if of52 is lb1 else lb1, 52, vip2)
        )

    wait_for(lambda: masters(lb1, lb2), "lb1 MASTER of 51, lb2 MASTER of 52", nodes, WAIT)
    for node in nodes:
        for vrid in (51, 52):
            status = node.status(vrid)
            assert status is not None and status["instance"] == f"VI_{vrid}"
            assert status["drops"] == {}  # each VRID dispatched to its own router
    wait_for(
        lambda: "INSTANCE VI_52 MASTER 150" in _read(tmp_path / "notify.sh.VI_52.log"),
        "notify called per instance",
        nodes,
        WAIT,
    )

    lb1.kill()
    wait_for(
        lambda: holds(lb2, 51, VIP) and holds(lb2, 52, vip2), "lb2 MASTER of both", nodes, WAIT
    )
    lb1.start()
    wait_for(lambda: masters(lb1, lb2), "lb1 takes VRID 51 back", nodes, WAIT)
    assert "INSTANCE VI_51 MASTER 150" in _read(tmp_path / "notify.sh.VI_51.log")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def client_arp(lab: Lab, address: str) -> str | None:
    """The MAC the client's ARP cache maps ``address`` to, if any."""
    out = lab.run("client", ["ip", "-j", "neigh", "show", address], capture_output=True, text=True)
    entries = json.loads(out.stdout or "[]")
    return entries[0].get("lladdr") if entries else None


@needs_lab
def test_split_brain_heals_within_three_intervals_and_clients_follow_the_survivor(
    lab, tmp_path
) -> None:
    # 1 s advertisements: three intervals is a 3 s bound, far above the machine's noise.
    lb1, lb2 = start_pair(lab, tmp_path, interval="1s")
    nodes = [lb1, lb2]
    lab.link_down("lb1", keep_carrier=True)  # the survivor-to-be is cut off, silently
    wait_for(
        lambda: lb1.state() == "MASTER" and lb2.state() == "MASTER" and lb2.holds_vip(),
        "both MASTER while partitioned",
        nodes,
        30.0,
    )
    assert lab.ping("client", VIP)  # the client follows lb2's ARPs: lb2 answers for the VIP
    assert client_arp(lab, VIP) == mac_of(lab, "lb2")

    restored = time.time()
    lab.link_up("lb1")
    wait_for(master_is(lb1, lb2), "exactly one MASTER after the link is back", nodes, 30.0)
    status = lb2.status()
    assert status is not None
    healed = status["since"] - restored  # lb2's own clock: when it entered BACKUP
    print(f"split brain healed {healed:.3f}s after the link came back")
    assert healed < 3 * 1.0, f"one master only after {healed:.3f}s"
    # lb2's last advertisement, or its own, made lb1 refresh the ARP caches.
    wait_for(
        lambda: client_arp(lab, VIP) == mac_of(lab, "lb1"),
        "the client's ARP cache maps the VIP to lb1",
        nodes,
        3.0,
    )
    assert lab.ping("client", VIP)


@needs_lab
def test_takeover_hint_takes_over_after_one_missed_advertisement(lab, tmp_path) -> None:
    # 1 s advertisements: without the hint lb2 (priority 100) waits Master_Down_Interval =
    # 3 x 1 s + Skew_Time (156/256 s) = 3.61 s; with it, one interval + skew = 1.61 s.
    lb1, lb2 = start_pair(lab, tmp_path, interval="1s", extra="hint_port = 7999\n")
    nodes = [lb1, lb2]
    wait_for(
        lambda: _connected(lab, "lb2"),
        "lb2 holds a hint connection to lb1",
        nodes,
        WAIT,
    )
    killed = time.time()
    lb1.kill()
    wait_for(lambda: lb2.state() == "MASTER", "lb2 takes over", nodes, 10.0)
    status = lb2.status()
    assert status is not None
    took = status["since"] - killed
    print(f"takeover {took:.3f}s after kill -9 with the hint")
    assert 1.0 <= took < 3.0  # after one missed advertisement: not at once, not after three
    assert "takeover hint: the connection to 198.18.0.11:7999 closed" in lb2.log.read_text()


def _connected(lab: Lab, host: str) -> bool:
    out = lab.run(
        host,
        ["ss", "-Htn", "state", "established", "dport", "7999"],
        capture_output=True,
        text=True,
    )
    return "198.18.0.11:7999" in out.stdout
