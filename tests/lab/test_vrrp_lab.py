"""``weir ha`` on two lab nodes: election, takeover after kill -9 and SIGTERM, preemption.

lb1 (priority 150) and lb2 (priority 100) run the real daemon in their namespaces with a
100 ms advertisement interval and share 198.18.0.100/24. Each node also runs a tiny HTTP
server that answers its own name, so the client sees through the VIP which node holds it.
All waits are bounded; nothing is timed (takeover times belong in bench/).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from ha.lab import Lab, LabError, check_environment
from tests.lab.vrrp import master_is, wait_for

pytestmark = pytest.mark.lab

try:
    check_environment()
    SKIP_REASON = ""
except LabError as exc:
    SKIP_REASON = f"lab tests: {exc}"

needs_lab = pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "ok")

VIP = "198.18.0.100"
PRIORITIES = {"lb1": 150, "lb2": 100}
WAIT = 10.0  # seconds: the bound on every wait (elections here take well under 1 s)


class Node:
    """One lab node's ``weir ha``: its config, state file and log, (re)started on demand."""

    def __init__(self, lab: Lab, host: str, workdir: Path) -> None:
        self.lab = lab
        self.host = host
        self.state_file = workdir / f"{host}.json"
        self.log = workdir / f"{host}.log"
        self.config = workdir / f"{host}.toml"
        self.config.write_text(
            "[ha.vrrp]\n"
            'interface = "eth0"\n'
            "vrid = 51\n"
            f"priority = {PRIORITIES[host]}\n"
            'advert_interval = "100ms"\n'
            f'vips = ["{VIP}/24"]\n'
            f'state_file = "{self.state_file}"\n'
        )
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self.state_file.unlink(missing_ok=True)
        with self.log.open("a") as log:
            self.proc = self.lab.popen(
                self.host,
                [sys.executable, "-m", "appliance.cli", "ha", "-c", str(self.config)],
                stdout=log,
                stderr=log,
            )

    def state(self) -> str | None:
        try:
            return json.loads(self.state_file.read_text())["state"]
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def addresses(self) -> set[str]:
        out = subprocess.run(
            ["ip", "-j", "-n", self.lab.ns(self.host), "-4", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        )
        return {a["local"] for link in json.loads(out.stdout) for a in link["addr_info"]}

    def holds_vip(self) -> bool:
        return VIP in self.addresses()


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[Lab, Node, Node]]:
    """A fresh lab with ``weir ha`` on lb1 and lb2; every process stopped at teardown."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    lab = Lab("wv", state_path=tmp_path / "lab.json")
    try:
        lab.up()
        nodes = (Node(lab, "lb1", tmp_path), Node(lab, "lb2", tmp_path))
        for node in nodes:
            node.start()
        wait_for(master_is(*nodes), "lb1 MASTER with the VIP, lb2 BACKUP", list(nodes), WAIT)
        yield lab, *nodes
    finally:
        lab.down()  # stops every process started in it, then removes the namespaces


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


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs `ip` (Debian package iproute2)")
def test_weir_ha_on_a_missing_interface_is_a_one_line_runtime_error(tmp_path, capsys) -> None:
    config = tmp_path / "weir.toml"
    config.write_text('[ha.vrrp]\ninterface = "nosuch-wv0"\nvips = ["198.18.0.100/24"]\n')
    assert main(["ha", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch-wv0" in err
