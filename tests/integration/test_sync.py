"""Stick-table sync between two real ``weir run`` processes on 127.0.0.1 (ha/sync, issue 6).

Each node has the same farm (two test servers, stick table learning ``JSESSIONID`` from the
servers' ``Set-Cookie``) and the other as its peer. Entries learned through real HTTP requests on
one node must show up in the other's ``show table`` with the same server id, and route the same
client to the same server there. A restarted node gets the whole table back (full resync); TLS
works both ways with mutual certificates; wrong names are refused with 503/504.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from tests.support.backend import BackendPool
from tests.support.farm import farm_config, wait_for
from tests.support.proxy import WEIR, WeirProcess, connect, free_port, get

pytestmark = pytest.mark.integration

STICK = '[backends.app.stick]\non = "cookie:JSESSIONID"\nexpire = "30m"\n'
SESSION_COOKIE = re.compile(r"JSESSIONID=([0-9a-f]+)")


def node_config(pool_servers: list[tuple[str, str]], local: str, bind: int, peers: dict) -> str:
    peer_list = ", ".join(
        f'{{ name = "{name}", address = "127.0.0.1:{port}" }}' for name, port in peers.items()
    )
    return (
        farm_config(pool_servers)
        + STICK
        + f'[ha.sync]\nlocal = "{local}"\nbind = "127.0.0.1:{bind}"\npeers = [{peer_list}]\n'
    )


def unix_ask(path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on a runtime socket (Weir's, or HAProxy's stats socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def ask(node: WeirProcess, command: str) -> str:
    return unix_ask(node.tmp / "weir.sock", command)


def peers_json(node: WeirProcess) -> dict:
    return json.loads(ask(node, "show peers json"))


def established(node: WeirProcess, peer: str) -> bool:
    try:
        data = peers_json(node)
    except (OSError, ValueError):
        return False
    return any(p["name"] == peer and p["state"] == "established" for p in data["peers"])


def parse_table(text: str) -> dict[str, tuple[int, int]]:
    """key -> (server_id, exp ms), from Weir's or HAProxy's ``show table NAME``."""
    entries = {}
    for line in text.splitlines():
        if not line.startswith("0x"):
            continue
        fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        entries[fields["key"]] = (int(fields["server_id"]), int(fields["exp"]))
    return entries


def table(node: WeirProcess, name: str = "app") -> dict[str, tuple[int, int]]:
    return parse_table(ask(node, f"show table {name}"))


def learn(node: WeirProcess, count: int) -> dict[str, str]:
    """``count`` new sessions through ``node`` (anything with a ``port``): session id -> the
    server that created it."""
    learned = {}
    for _ in range(count):
        response = get(node.port, "/session")
        assert response.status == 200, response
        session = SESSION_COOKIE.search(response.header("set-cookie") or "")
        assert session, response
        learned[session.group(1)] = response.body.decode().split()[0]
    return learned


def served_by(node: WeirProcess, session: str) -> str:
    response = get(node.port, "/", headers=f"Host: t\r\nCookie: JSESSIONID={session}\r\n")
    assert response.status == 200, response
    return response.body.decode().split()[0]


SERVER_IDS = {"web1": 1, "web2": 2}


def start_pair(tmp_path: Path, pool: BackendPool, tls: trustme.CA | None = None) -> tuple:
    """Two nodes lb1/lb2 with the same farm, each the other's peer, started; and lb1's peer
    port. With ``tls``, each has a certificate of that CA."""
    servers = [(name, pool.start(name).address) for name in ("web1", "web2")]
    p1, p2 = free_port(), free_port()
    if tls is not None:
        tls.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    nodes = []
    for local, bind, other, other_port in (("lb1", p1, "lb2", p2), ("lb2", p2, "lb1", p1)):
        sub = tmp_path / local
        sub.mkdir()
        body = node_config(servers, local, bind, {other: other_port})
        if tls is not None:
            cert = tls.issue_cert(local)
            cert.cert_chain_pems[0].write_to_path(str(sub / "cert.pem"))
            cert.private_key_pem.write_to_path(str(sub / "key.pem"))
            body += (
                f'tls_cert = "{sub}/cert.pem"\ntls_key = "{sub}/key.pem"\n'
                f'tls_ca = "{tmp_path}/ca.pem"\n'
            )
        nodes.append(WeirProcess(sub, body))
    for node in nodes:
        node.start()
    return nodes, p1


@pytest.fixture
def pair(tmp_path, pool: BackendPool):
    """lb1 and lb2, in session over plain TCP."""
    nodes, _ = start_pair(tmp_path, pool)
    yield nodes
    for node in nodes:
        node.stop()


def test_entries_learned_on_either_node_reach_the_other(pair):
    lb1, lb2 = pair
    assert wait_for(lambda: established(lb1, "lb2") and established(lb2, "lb1"), 15)
    on_lb1 = learn(lb1, 20)
    assert wait_for(lambda: set(on_lb1) <= set(table(lb2)), 10), table(lb2)
    synced = table(lb2)
    for session, server in on_lb1.items():
        assert synced[session][0] == SERVER_IDS[server]
        assert 1_700_000 < synced[session][1] <= 1_800_000  # remaining life of a 30m entry
        assert served_by(lb2, session) == server
    on_lb2 = learn(lb2, 20)
    assert wait_for(lambda: set(on_lb2) <= set(table(lb1)), 10), table(lb1)
    for session, server in on_lb2.items():
        assert table(lb1)[session][0] == SERVER_IDS[server]
        assert served_by(lb1, session) == server
    # Acknowledged: nothing left to push either way, and nothing learned was sent back.
    for node, peer in ((lb1, "lb2"), (lb2, "lb1")):
        assert wait_for(lambda n=node, p=peer: _lag(n, p) == 0, 10), peers_json(node)
    text = ask(lb1, "show peers")
    assert re.search(r"^lb2 addr=127\.0\.0\.1:\d+ state=established ", text, re.M), text
    assert re.search(r"^  table app id=1 pushed=\d+ acked=\d+ lag=0 ", text, re.M), text
    lb1_peer = peers_json(lb1)["peers"][0]
    assert lb1_peer["updates_sent"] == 20 and lb1_peer["updates_applied"] == 20, lb1_peer
    # lb1 started first: its first attempt to reach lb2 may have failed, nothing else.
    assert set(lb1_peer["errors"]) <= {"connect"}, lb1_peer


def _lag(node: WeirProcess, peer: str) -> int:
    data = peers_json(node)
    return sum(t["lag"] for p in data["peers"] if p["name"] == peer for t in p["tables"])


def test_a_restarted_node_gets_the_whole_table_back(pair):
    lb1, lb2 = pair
    assert wait_for(lambda: established(lb1, "lb2") and established(lb2, "lb1"), 15)
    # Started together, each asked the other and got "partial": both time out as up to date.
    assert wait_for(lambda: peers_json(lb1)["resync"]["done"], 15), peers_json(lb1)
    before = learn(lb2, 10)  # lb1 learns them from lb2
    assert wait_for(lambda: set(before) <= set(table(lb1)), 10)
    lb2.stop()
    while_down = learn(lb1, 10)
    lb2.start()
    everything = {**before, **while_down}
    assert wait_for(lambda: set(everything) <= set(table(lb2)), 15), table(lb2)
    for session, server in everything.items():
        assert table(lb2)[session][0] == SERVER_IDS[server]
    assert wait_for(lambda: peers_json(lb2)["resync"]["done"], 10)
    resync = peers_json(lb2)["resync"]
    assert resync["done"] and "learned from lb1" in resync["state"], resync


def test_wrong_names_are_refused_and_the_proxy_keeps_serving(pair):
    lb1, lb2 = pair
    port = int(peers_json(lb1)["bind"].rsplit(":", 1)[1])
    for hello, status in (
        (b"HAProxyS 2.1\nsomeone-else\nlb2 1 1\n", b"503\n"),
        (b"HAProxyS 2.1\nlb1\nintruder 1 1\n", b"504\n"),
        (b"HAProxyS 3.0\nlb1\nlb2 1 1\n", b"502\n"),
        (b"GET / HTTP/1.1\r\n\r\n", b"501\n"),
    ):
        with connect(port) as s:
            s.sendall(hello)
            assert s.recv(100) == status, hello
            assert s.recv(100) == b""  # and closed
    refused = peers_json(lb1)["unidentified_errors"]
    assert refused == {"status_503": 1, "status_504": 1, "handshake": 2}, refused
    assert get(lb1.port, "/").status == 200


@pytest.fixture
def tls_pair(tmp_path, pool: BackendPool):
    """lb1 and lb2 speaking TLS with certificates of one trustme CA; and lb1's peer port."""
    nodes, port = start_pair(tmp_path, pool, trustme.CA())
    yield nodes, port
    for node in nodes:
        node.stop()


def test_tls_both_ways_with_mutual_certificates(tls_pair, tmp_path):
    (lb1, lb2), lb1_peer_port = tls_pair
    assert wait_for(lambda: established(lb1, "lb2") and established(lb2, "lb1"), 15)
    assert peers_json(lb1)["tls"] is True
    on_lb1, on_lb2 = learn(lb1, 5), learn(lb2, 5)
    assert wait_for(lambda: set(on_lb1) <= set(table(lb2)) and set(on_lb2) <= set(table(lb1)), 10)
    for session, server in on_lb1.items():
        assert table(lb2)[session][0] == SERVER_IDS[server]
    # Plain TCP gets no answer to its hello; a certificate from another CA is refused.
    with connect(lb1_peer_port) as s:
        s.sendall(b"HAProxyS 2.1\nlb1\nlb2 1 1\n")
        assert b"200" not in _read_all(s)
    stranger = trustme.CA().issue_cert("lb2")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    context.check_hostname = False
    stranger.configure_cert(context)
    try:
        with (
            socket.create_connection(("127.0.0.1", lb1_peer_port), timeout=5) as raw,
            context.wrap_socket(raw) as s,
        ):
            s.sendall(b"HAProxyS 2.1\nlb1\nlb2 1 1\n")
            answer = _read_all(s)
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert b"200" not in answer
    assert established(lb1, "lb2")  # the real session was not disturbed
    assert get(lb1.port, "/").status == 200


def _read_all(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except (ConnectionError, TimeoutError, ssl.SSLError):
        pass
    return data


def test_weir_check_warns_when_a_peer_defines_a_table_differently(tmp_path, pool: BackendPool):
    servers = [(name, pool.start(name).address) for name in ("web1", "web2")]
    p1, p2 = free_port(), free_port()
    lb2_dir = tmp_path / "lb2"
    lb2_dir.mkdir()
    lb2 = WeirProcess(lb2_dir, node_config(servers, "lb2", p2, {"lb1": p1})).start()
    lb1_dir = tmp_path / "lb1"
    lb1_dir.mkdir()
    # lb1 sticks on the source address for 10 minutes: key type and expiry differ from lb2's.
    lb1_body = node_config(servers, "lb1", p1, {"lb2": p2}).replace(
        'on = "cookie:JSESSIONID"\nexpire = "30m"', 'on = "src"\nexpire = "10m"'
    )
    lb1 = WeirProcess(lb1_dir, lb1_body)
    try:
        # No Weir runs as lb1: the check asks lb2 itself.
        check = subprocess.run(
            [*WEIR, "check", "-c", str(lb1.config_path)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        warnings = check.stderr.strip().splitlines()
        line = next(n for n, text in enumerate(lb1_body.splitlines(), 1) if "peers = [" in text)
        assert warnings == [
            f"{lb1.config_path}:{line}: ha.sync.peers[0]: warning: peer lb2 defines table 'app' "
            "with key type string, ours has ipv6: the table is not synced",
            f"{lb1.config_path}:{line}: ha.sync.peers[0]: warning: peer lb2 expires table 'app' "
            "after 1800000ms, ours after 600000ms: entries live longer on one node",
        ], check.stderr
        # With lb1 running, the check reads what lb1 learned from lb2: no session is replaced.
        lb1.start()
        assert wait_for(lambda: established(lb1, "lb2"), 15)
        sessions = peers_json(lb2)["peers"][0]["sessions"]
        again = subprocess.run(
            [*WEIR, "check", "-c", str(lb1.config_path)], capture_output=True, text=True, timeout=30
        )
        assert again.returncode == 0 and again.stderr.strip().splitlines() == warnings
        assert peers_json(lb2)["peers"][0]["sessions"] == sessions
    finally:
        lb1.stop()
        lb2.stop()


def test_reload_starts_the_sync_and_keeps_tables_and_sessions(tmp_path, pool: BackendPool):
    servers = [(name, pool.start(name).address) for name in ("web1", "web2")]
    p1, p2 = free_port(), free_port()
    dirs = {name: tmp_path / name for name in ("lb1", "lb2")}
    for d in dirs.values():
        d.mkdir()
    lb2 = WeirProcess(dirs["lb2"], node_config(servers, "lb2", p2, {"lb1": p1})).start()
    with_sync = node_config(servers, "lb1", p1, {"lb2": p2})
    lb1 = WeirProcess(dirs["lb1"], with_sync.split("[ha.sync]")[0]).start()
    try:
        learned = learn(lb1, 5)
        assert ask(lb1, "show peers").startswith("No stick-table sync configured")
        lb1.config_path.write_text(
            with_sync.replace("{tmp}", str(dirs["lb1"])).replace("{port}", str(lb1.port))
        )
        answer = ask(lb1, "reload")
        assert "ha.sync: added; sync started" in answer, answer
        assert wait_for(lambda: set(learned) <= set(table(lb2)), 15), table(lb2)
        sessions = peers_json(lb1)["peers"][0]["sessions"]
        assert "Reloaded: no change." in ask(lb1, "reload")
        assert set(learned) <= set(table(lb1))
        more = learn(lb1, 3)
        assert wait_for(lambda: set(more) <= set(table(lb2)), 10)
        assert peers_json(lb1)["peers"][0]["sessions"] == sessions
    finally:
        lb1.stop()
        lb2.stop()
