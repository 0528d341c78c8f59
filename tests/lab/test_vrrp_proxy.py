"""``track_proxy`` with the real proxy: ``weir run`` and ``weir ha`` from one file per node.

Each LB node runs the real ``weir run`` (a frontend on 0.0.0.0:8080 in front of web1) and
``weir ha`` reading the same file; ``weir ha`` asks the proxy ``show info`` on its runtime
socket. Killing the master's proxy must hand the VIP to the peer (the master enters FAULT
after three failed probes and says priority 0); restarting it must take the VIP back by
preemption, and the client reaches web1 through the VIP throughout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ha.lab import Lab
from tests.lab.vrrp import VIP, WAIT, Vr, WeirNode, lab_fixture, master_is, wait_for

pytestmark = pytest.mark.lab

PRIORITIES = {"lb1": 150, "lb2": 100}


def proxy_head(workdir: Path, host: str) -> str:
    return (
        "[global]\n"
        'log = "none"\n'
        f'runtime_socket = "{workdir / host}.sock"\n'
        "[frontends.www]\n"
        'bind = ["0.0.0.0:8080"]\n'
        'default_backend = "app"\n'
        "[backends.app]\n"
        "[[backends.app.servers]]\n"
        'name = "web1"\n'
        'address = "198.18.0.21:8000"\n'
    )


class Proxy:
    """``weir run`` in a lab node, with the node's configuration file."""

    def __init__(self, lab: Lab, node: WeirNode) -> None:
        self.lab, self.node = lab, node
        self.socket = node.workdir / f"{node.host}.sock"
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        with self.node.log.open("a") as log:
            self.proc = self.lab.popen(
                self.node.host,
                [sys.executable, "-m", "appliance.cli", "run", "-c", str(self.node.config)],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + WAIT
        while not self.answers():
            assert self.proc.poll() is None, self.node.log.read_text()
            assert time.monotonic() < deadline, f"weir run on {self.node.host} does not answer"
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket))
                sock.sendall(b"show info\n")
                return b"Pid: " in sock.recv(65536)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)


lab = lab_fixture("wp")


def client_gets(lab: Lab) -> str:
    """One bounded request from the client to the VIP's frontend: web1's answer, or the error."""
    script = (
        "import urllib.request\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://{VIP}:8080/who.txt', timeout=2)\n"
        "    print(r.read().decode().strip())\n"
        "except OSError as exc:\n"
        "    print(repr(exc))\n"
    )
    out = lab.run("client", [sys.executable, "-c", script], capture_output=True, text=True)
    return out.stdout.strip()


def test_a_dead_proxy_hands_the_vip_to_the_peer_and_its_return_takes_it_back(
    lab: Lab, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "who.txt").write_text("web1\n")
    lab.popen(
        "web1",
        [sys.executable, "-m", "http.server", "8000", "--bind", "0.0.0.0"],
        cwd=www,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = [
        WeirNode(lab, host, tmp_path, [Vr(priority=PRIORITIES[host])], proxy_head(tmp_path, host))
        for host in ("lb1", "lb2")
    ]
    lb1, lb2 = nodes
    proxies = {node.host: Proxy(lab, node) for node in nodes}
    for node in nodes:
        proxies[node.host].start()
        node.start()
    wait_for(master_is(lb1, lb2), "lb1 MASTER with the VIP, lb2 BACKUP", nodes, WAIT)
    assert "track_proxy: runtime API" in lb1.log.read_text()
    assert client_gets(lab) == "web1"

    proxies["lb1"].kill()
    wait_for(
        lambda: lb1.state() == "FAULT" and lb2.state() == "MASTER" and lb2.holds_vip(),
        "lb1 in FAULT, lb2 MASTER with the VIP",
        nodes,
        WAIT,
    )
    assert not lb1.holds_vip()
    status = lb1.status()
    assert status is not None and status["faults"][0].startswith("proxy down: runtime API")
    assert "track_proxy: the proxy is down" in lb1.log.read_text()
    assert client_gets(lab) == "web1"  # through lb2's proxy now

    proxies["lb1"].start()
    wait_for(master_is(lb1, lb2), "lb1 back to MASTER by preemption", nodes, WAIT)
    assert "track_proxy: the proxy is up again" in lb1.log.read_text()
    assert client_gets(lab) == "web1"
