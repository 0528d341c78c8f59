"""The runtime API of a running ``weir run``, through its Unix socket."""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import json
import os
import socket
import stat
import subprocess
import time

import pytest

from tests.integration.test_forwarding import farm
from tests.support.proxy import WEIR, WeirProcess, get

pytestmark = pytest.mark.integration

STICKY = '[backends.app.stick]\non = "src"\n'


def sock_path(proxy: WeirProcess) -> str:
    return str(proxy.tmp / "weir.sock")


def ask(proxy: WeirProcess, *lines: str, raw: bytes | None = None, timeout: float = 5.0) -> str:
    """Send lines (or raw bytes) and read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path(proxy))
        s.sendall(raw if raw is not None else "".join(f"{ln}\n" for ln in lines).encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def stat_rows(proxy: WeirProcess) -> dict[tuple[str, str], dict[str, str]]:
    lines = ask(proxy, "show stat").splitlines()
    names = lines[0][2:].rstrip(",").split(",")
    return {(r[0], r[1]): dict(zip(names, r, strict=False)) for r in csv.reader(lines[1:]) if r}


def ctl(proxy: WeirProcess, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WEIR, "ctl", "-s", sock_path(proxy), *words], capture_output=True, text=True, timeout=20
    )


@pytest.fixture
def sticky(pool, weir):
    backends, body = farm(pool, n=2, backend_extra=STICKY)
    return backends, weir(body)


def test_socket_is_private_and_removed_at_stop(sticky):
    _, proxy = sticky
    st = os.stat(sock_path(proxy))
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert proxy.stop() == 0
    assert not os.path.exists(sock_path(proxy))


def test_every_command_answers(sticky):
    backends, proxy = sticky
    for i in range(4):
        assert get(proxy.port, f"/c{i}").status == 200
    info = dict(ln.split(": ", 1) for ln in ask(proxy, "show info").splitlines() if ln)
    assert info["Name"] == "Weir" and info["Pid"] == str(proxy.proc.pid)
    assert int(info["CumReq"]) == 4
    assert json.loads(ask(proxy, "show info json"))[0]["value"]["value"] == "Weir"
    rows = stat_rows(proxy)
    assert rows["www", "FRONTEND"]["req_tot"] == "4"
    assert rows["app", "BACKEND"]["hrsp_2xx"] == "4"
    assert int(rows["app", "web1"]["stot"]) + int(rows["app", "web2"]["stot"]) == 4
    assert len(json.loads(ask(proxy, "show stat json"))) == 4
    assert ask(proxy, "show servers state").startswith("1\n# be_id be_name srv_id")
    assert "web2" in ask(proxy, "show servers state app")
    assert ask(proxy, "show table").startswith("# table: app, type: ipv6")
    table = ask(proxy, "show table app")
    assert "key=::ffff:127.0.0.1 use=0 exp=" in table
    assert "used:1" in ask(proxy, "show table app key 127.0.0.1")
    assert ask(proxy, "clear table app key 127.0.0.1") == "\n"
    assert "used:0" in ask(proxy, "show table app")
    assert "total: " in ask(proxy, "show sess")
    assert "show servers state" in ask(proxy, "help")
    assert ask(proxy, "reload") == "Reloaded: no change.\n\n"
    assert ask(proxy, "get weight app/web1") == "1 (initial 1)\n\n"
    assert ask(proxy, "quit") == ""


def test_maint_and_drain_on_traffic(sticky):
    backends, proxy = sticky
    assert get(proxy.port, "/first").header("x-backend") == "web1"  # learned: 127.0.0.1 -> web1
    assert ask(proxy, "set server app/web1 state drain") == "\n"
    # Drain keeps its persisted user (the stick table says web1)...
    assert {get(proxy.port, f"/d{i}").header("x-backend") for i in range(4)} == {"web1"}
    assert "DRAIN" in stat_rows(proxy)["app", "web1"]["status"]
    # ...maint moves it.
    assert ask(proxy, "disable server app/web1") == "\n"
    assert {get(proxy.port, f"/m{i}").header("x-backend") for i in range(4)} == {"web2"}
    assert stat_rows(proxy)["app", "web1"]["status"] == "MAINT"
    assert ask(proxy, "enable server app/web1") == "\n"
    assert ask(proxy, "clear table app") == "\n"
    assert "used:0" in ask(proxy, "show table app")
    assert get(proxy.port, "/e").status == 200  # balanced again, then learned anew
    assert "used:1" in ask(proxy, "show table app")
    proxy.stop()  # event lines are flushed at the latest when the proxy stops
    events = proxy.stderr()
    assert "Server app/web1 enters drain state." in events
    assert "Server app/web1 is going DOWN for maintenance." in events


def test_new_users_avoid_a_drained_server(pool, weir):
    _, body = farm(pool, n=2)
    proxy = weir(body)
    ask(proxy, "set server app/web1 state drain")
    assert {get(proxy.port, f"/n{i}").header("x-backend") for i in range(6)} == {"web2"}
    ask(proxy, "set server app/web1 state ready")
    assert ask(proxy, "set server app/web2 health down") == "\n"
    assert {get(proxy.port, f"/h{i}").header("x-backend") for i in range(4)} == {"web1"}
    assert stat_rows(proxy)["app", "web2"]["status"] == "DOWN"


def test_weight_changes_the_distribution(pool, weir):
    _, body = farm(pool, n=2)
    proxy = weir(body)
    assert ask(proxy, "set server app/web1 weight 3") == "\n"
    seen = collections.Counter(get(proxy.port, f"/w{i}").header("x-backend") for i in range(40))
    assert seen == {"web1": 30, "web2": 10}
    assert ask(proxy, "set weight app/web2 0") == "\n"
    assert {get(proxy.port, f"/z{i}").header("x-backend") for i in range(5)} == {"web1"}
    assert stat_rows(proxy)["app", "web1"]["weight"] == "3"
    proxy.stop()
    assert "Server app/web1 weight changed from 1 to 3 (CLI)." in proxy.stderr()


def test_bad_input_gets_an_error_and_changes_nothing(pool, weir):
    _, body = farm(pool, n=2)
    proxy = weir(body)
    before = ask(proxy, "show servers state")
    assert ask(proxy, "frobnicate").startswith("Unknown command 'frobnicate'")
    assert ask(proxy, "set server app/nope state maint") == "No such server.\n\n"
    assert ask(proxy, "set server app/web1 state sleepy").startswith("'set server <srv> state'")
    assert ask(proxy, "set server app/web1 weight 999").startswith("Absolute weight")
    assert "too long" in ask(proxy, raw=b"show " + b"x" * 70000 + b"\n")
    assert "too long" in ask(proxy, raw=b"y" * 70000)  # no newline at all
    assert "Binary data" in ask(proxy, raw=b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n")
    assert "Binary data" in ask(proxy, raw=bytes(range(256)))
    assert ask(proxy, "show servers state") == before
    assert get(proxy.port, "/still").status == 200
    assert proxy.proc.poll() is None


def test_prompt_mode_and_idle_timeout(sticky):
    _, proxy = sticky
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path(proxy))

        def until_prompt() -> str:
            data = b""
            while not data.endswith(b"> "):
                chunk = s.recv(65536)
                assert chunk, f"closed before the prompt: {data!r}"
                data += chunk
            return data.decode()

        s.sendall(b"prompt\n")
        assert until_prompt() == "\n> "
        s.sendall(b"show info\n")
        assert until_prompt().startswith("Name: Weir\n")
        s.sendall(b"get weight app/web1\n")
        assert until_prompt() == "1 (initial 1)\n\n> "
        s.sendall(b"set timeout cli 1\n")
        assert until_prompt() == "\n> "
        start = time.monotonic()
        assert s.recv(100) == b""  # closed for idleness
        assert 0.5 < time.monotonic() - start < 4


def test_many_clients_at_once(sticky):
    _, proxy = sticky
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda i: ask(proxy, "show stat", timeout=15), range(50)))
    assert all(a.startswith("# pxname,svname,") and a.endswith("\n\n") for a in answers)
    # Clients that connect and stay silent do not block the others.
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(20)]
    try:
        for s in idle:
            s.connect(sock_path(proxy))
        assert ask(proxy, "show info").startswith("Name: Weir")
    finally:
        for s in idle:
            s.close()


def test_second_weir_on_the_same_socket_is_refused(sticky, tmp_path):
    _, first = sticky
    body = first.config_path.read_text()
    second = WeirProcess(tmp_path, body)  # another port, same socket path (already expanded)
    second.start(wait=False)
    assert second.proc.wait(15) == 2
    assert f"another weir is running on {sock_path(first)}" in second.stderr()
    assert ask(first, "show info").startswith("Name: Weir")  # the first keeps its socket


def test_stale_socket_file_is_replaced(pool, tmp_path):
    _, body = farm(pool, n=1)
    stale = tmp_path / "weir.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays and nobody listens: what a killed process leaves
    proxy = WeirProcess(tmp_path, body)
    try:
        proxy.start()
        assert ask(proxy, "show info").startswith("Name: Weir")
    finally:
        proxy.stop()


def test_weir_ctl(sticky):
    _, proxy = sticky
    out = ctl(proxy, "show", "stat")
    assert out.returncode == 0, out.stderr
    assert "web1" in out.stdout and "BACKEND" in out.stdout
    out = ctl(proxy, "--json", "show", "stat")
    assert json.loads(out.stdout)[0][0]["value"]["value"] == "www"
    out = ctl(proxy, "--json", "show", "servers", "state")
    assert [r["srv_name"] for r in json.loads(out.stdout)] == ["web1", "web2"]
    out = ctl(proxy, "show", "servers", "state")
    assert "RUNNING" in out.stdout and "READY" in out.stdout
    assert ctl(proxy, "disable", "server", "app/web2").returncode == 0
    assert "MAINT" in ctl(proxy, "show", "servers", "state").stdout
    out = subprocess.run(
        [*WEIR, "ctl", "-c", str(proxy.config_path), "show", "info"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.startswith("Name: Weir")
    missing = subprocess.run(
        [*WEIR, "ctl", "-s", str(proxy.tmp / "nope.sock"), "show", "info"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("weir ctl: no runtime socket at ")
    assert "Traceback" not in missing.stderr


def test_idle_timeout_counts_from_the_last_command(sticky):
    """The idle timer is not re-armed per command: it must still measure from the last one."""
    _, proxy = sticky
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path(proxy))
        s.sendall(b"prompt\nset timeout cli 2\n")
        data = b""
        while data.count(b"> ") < 2:
            chunk = s.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        busy_until = time.monotonic() + 5  # well past the 2 s timeout, in small steps
        while time.monotonic() < busy_until:
            time.sleep(0.25)
            s.sendall(b"show table app key 192.0.2.1\n")
            answer = b""
            while not answer.endswith(b"> "):
                chunk = s.recv(65536)
                assert chunk, "closed while the client was active"
                answer += chunk
        start = time.monotonic()
        assert s.recv(100) == b""  # closed for idleness
        assert 1.0 < time.monotonic() - start < 5
