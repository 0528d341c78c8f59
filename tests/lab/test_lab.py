"""The network-namespace lab itself (ha/lab.py, ``weir lab``): topology, reachability, drills."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from appliance.cli import main
from ha.lab import HOSTS, Lab, existing_namespaces
from tests.lab.marks import SKIP_REASON, needs_lab

pytestmark = pytest.mark.lab


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    """A fresh, uniquely named lab; torn down even when the test fails."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    instance = Lab("wt", state_path=tmp_path / "lab.json")
    try:
        instance.up()
        yield instance
    finally:
        instance.down()


@needs_lab
def test_up_creates_every_namespace_and_address(lab: Lab) -> None:
    present = existing_namespaces()
    assert set(lab.namespaces) <= present
    assert lab.state_path.exists()
    status = lab.status()
    assert status["up"]
    for host, addr in HOSTS.items():
        links = {i["name"]: i for i in status["namespaces"][lab.ns(host)]["interfaces"]}
        assert links["lo"]["admin_up"]
        assert links["eth0"]["addresses"] == [f"{addr}/24"]
        assert links["eth0"]["state"] == "UP"
    bridge_ports = status["namespaces"][lab.net_ns]["interfaces"]
    assert sorted(i["name"] for i in bridge_ports if i["master"] == "br0") == sorted(
        f"v-{h}" for h in HOSTS
    )


@needs_lab
def test_client_reaches_every_host(lab: Lab) -> None:
    for host in ("lb1", "lb2", "web1", "web2"):
        assert lab.ping("client", lab.ip_of(host)), host


@needs_lab
def test_tcp_round_trip_client_to_web1(lab: Lab, tmp_path) -> None:
    (tmp_path / "hello.txt").write_text("weir lab\n")
    server = lab.popen(
        "web1",
        [sys.executable, "-m", "http.server", "8000", "--bind", "198.18.0.21"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fetch = (
        "import sys, time, urllib.request\n"
        "end = time.monotonic() + 5\n"
        "while True:\n"
        "    try:\n"
        "        r = urllib.request.urlopen('http://198.18.0.21:8000/hello.txt', timeout=1)\n"
        "        sys.stdout.write(r.read().decode()); break\n"
        "    except OSError:\n"
        "        if time.monotonic() > end: raise\n"
        "        time.sleep(0.05)\n"
    )
    out = lab.run("client", [sys.executable, "-c", fetch], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "weir lab\n"
    assert server.poll() is None


@needs_lab
@pytest.mark.parametrize("keep_carrier", [False, True])
def test_link_down_cuts_a_host_and_link_up_restores_it(lab: Lab, keep_carrier: bool) -> None:
    lb1 = lab.ip_of("lb1")
    assert lab.ping("client", lb1)
    lab.link_down("lb1", keep_carrier=keep_carrier)
    assert not lab.ping("client", lb1, timeout=0.5)
    assert lab.ping("client", lab.ip_of("lb2"))  # only lb1 is cut
    lab.link_up("lb1")
    deadline = time.monotonic() + 5
    while not lab.ping("client", lb1) and time.monotonic() < deadline:
        pass
    assert lab.ping("client", lb1)


@needs_lab
def test_no_namespace_has_a_default_route(lab: Lab) -> None:
    for ns in lab.namespaces:
        for family in ("-4", "-6"):
            out = subprocess.run(
                ["ip", family, "-n", ns, "route", "show", "default"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout.strip() == "", (ns, family, out.stdout)


@needs_lab
def test_down_removes_everything_and_is_idempotent(tmp_path) -> None:
    instance = Lab("wt", state_path=tmp_path / "lab.json")
    try:
        instance.up()
        sleeper = instance.popen("lb2", ["sleep", "60"])
        instance.down()
        assert sleeper.poll() is not None
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert instance.name not in listed
        assert not instance.state_path.exists()
        instance.down()  # again: nothing to do, no error
    finally:
        instance.down()


@needs_lab
def test_down_cleans_up_after_a_crashed_run(tmp_path) -> None:
    crashed = Lab("wt", state_path=tmp_path / "lab.json")
    try:
        crashed.up()
        # a later process knows only the state file (as `weir lab down` does)
        again = Lab.from_state(crashed.state_path)
        assert again.name == crashed.name
        again.down()
        assert not set(crashed.namespaces) & existing_namespaces()
        # leftovers without a state file: up() with the same name removes them first
        subprocess.run(["ip", "netns", "add", crashed.ns("web2")], check=True)
        crashed.up()
        assert crashed.status()["up"]
    finally:
        crashed.down()
    assert not set(crashed.namespaces) & existing_namespaces()


@needs_lab
def test_weir_lab_command_up_status_down(capsys) -> None:
    prefix = Lab("wc").name  # a unique name; the command uses it as is
    try:
        assert main(["lab", "up", "--prefix", prefix]) == 0
        assert f"{prefix}-lb1: eth0 UP 198.18.0.11/24" in capsys.readouterr().out
        assert main(["lab", "status", "--prefix", prefix, "--json"]) == 0
        assert '"up": true' in capsys.readouterr().out
    finally:
        assert main(["lab", "down", "--prefix", prefix]) == 0
    assert not any(ns.startswith(f"{prefix}-") for ns in existing_namespaces())
    assert main(["lab", "status", "--prefix", prefix]) == 1


def test_weir_lab_as_non_root_is_a_one_line_error(monkeypatch, capsys) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["lab", "up", "--prefix", "never-created"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "root" in err
