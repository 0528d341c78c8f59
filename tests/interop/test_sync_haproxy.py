"""Stick-table sync between Weir and HAProxy 2.6 (Debian package haproxy), both directions.

HAProxy has a ``peers`` section naming itself ``hap`` and Weir ``weir``, and a ``listen www``
with ``stick-table type string len 32 size 100k expire 30m peers mesh``, ``stick store-response
res.cook(JSESSIONID)`` and ``stick match req.cook(JSESSIONID)``; Weir's backend ``www`` has the
same two servers (ids 1 and 2) and ``[backends.www.stick] on = "cookie:JSESSIONID"``. Sessions
created through either proxy must show up in the other's ``show table`` (HAProxy's stats socket,
Weir's runtime socket) with the right server id and about 30 minutes to live, and send the user
to the same server there. A restart of either side gets the whole table back from the other.

Update ids: HAProxy stores a received full update id with ``htonl`` (where ``ntohl`` is meant;
the same operation on every host) and counts incremental ones from it, then acknowledges the
result. More than 256 updates pushed in one session, mostly incremental, must be acknowledged
with exactly our ids: any byte-order slip would show as an ack Weir rejects (``bad_ack``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.integration.test_sync import learn, parse_table, served_by, unix_ask
from tests.support.backend import BackendPool
from tests.support.farm import wait_for
from tests.support.haproxy import HAPROXY, HAPROXY_HEAD, MISSING
from tests.support.proxy import WeirProcess, free_port, servers_toml

pytestmark = pytest.mark.interop

if not HAPROXY.exists():
    pytest.skip(MISSING, allow_module_level=True)

SERVER_IDS = {"web1": 1, "web2": 2}
THIRTY_MINUTES = 1_800_000

HAPROXY_CONFIG = (
    HAPROXY_HEAD
    + """\
    stick-table type string len 32 size 100k expire 30m peers mesh
    stick store-response res.cook(JSESSIONID)
    stick match req.cook(JSESSIONID)
    server web1 {web1} id 1
    server web2 {web2} id 2
global
    localpeer hap
    stats socket {sock} level admin
peers mesh
    peer hap 127.0.0.1:{hap_peer}
    peer weir 127.0.0.1:{weir_peer}
"""
)
WEIR_CONFIG = """\
[global]
log = "{tmp}/weir.log"
runtime_socket = "{tmp}/weir.sock"
[frontends.www]
bind = ["127.0.0.1:{port}"]
default_backend = "www"
[backends.www]
[backends.www.stick]
on = "cookie:JSESSIONID"
expire = "30m"
"""


class Side:
    """One proxy of the pair: its HTTP port and how to read its table."""

    def __init__(self, port: int, sock: Path) -> None:
        self.port = port
        self.sock = sock

    def table(self) -> dict[str, tuple[int, int]]:
        try:
            return parse_table(unix_ask(self.sock, "show table www"))
        except OSError:
            return {}

    def learn(self, count: int) -> dict[str, str]:
        return learn(self, count)

    def served_by(self, session: str) -> str:
        return served_by(self, session)


@pytest.fixture
def farm(tmp_path, pool: BackendPool, haproxy):
    """(haproxy side, weir side, weir process, start_haproxy) with both proxies running."""
    web = {name: pool.start(name).address for name in ("web1", "web2")}
    hap_peer, weir_peer = free_port(), free_port()
    hap_sock = tmp_path / "haproxy.sock"
    config = HAPROXY_CONFIG.format(
        web1=web["web1"],
        web2=web["web2"],
        sock=hap_sock,
        hap_peer=hap_peer,
        weir_peer=weir_peer,
        port="{port}",
    )
    weir_dir = tmp_path / "weir"
    weir_dir.mkdir()
    weir = WeirProcess(
        weir_dir,
        WEIR_CONFIG
        + servers_toml("www", list(web.items()))
        + f'[ha.sync]\nlocal = "weir"\nbind = "127.0.0.1:{weir_peer}"\n'
        f'peers = [{{ name = "hap", address = "127.0.0.1:{hap_peer}" }}]\n',
    )
    weir.start()
    hap = [haproxy(config)]

    def restart_haproxy() -> Side:
        hap[0].stop()
        hap[0] = haproxy(config)
        return Side(hap[0].port, hap_sock)

    yield (
        Side(hap[0].port, hap_sock),
        Side(weir.port, weir_dir / "weir.sock"),
        weir,
        restart_haproxy,
    )
    weir.stop()


def weir_peer(weir: Side) -> dict:
    return json.loads(unix_ask(weir.sock, "show peers json"))["peers"][0]


def in_session(weir: Side) -> bool:
    try:
        return weir_peer(weir)["state"] == "established"
    except (OSError, ValueError):
        return False


def check_synced(learned: dict[str, str], table: dict[str, tuple[int, int]]) -> None:
    for session, server in learned.items():
        server_id, exp = table[session]
        assert server_id == SERVER_IDS[server], (session, table[session])
        assert THIRTY_MINUTES - 120_000 < exp <= THIRTY_MINUTES, (session, exp)


def test_entries_learned_on_either_side_appear_on_the_other(farm):
    hap, weir, _, _ = farm
    assert wait_for(lambda: in_session(weir), 15), unix_ask(weir.sock, "show peers")
    on_hap = hap.learn(10)
    assert wait_for(lambda: set(on_hap) <= set(weir.table()), 10), weir.table()
    check_synced(on_hap, weir.table())
    on_weir = weir.learn(10)
    assert wait_for(lambda: set(on_weir) <= set(hap.table()), 10), hap.table()
    check_synced(on_weir, hap.table())
    for session, server in on_hap.items():
        assert weir.served_by(session) == server
    for session, server in on_weir.items():
        assert hap.served_by(session) == server
    peer = weir_peer(weir)
    assert peer["version"] == "2.1", peer
    assert peer["updates_applied"] >= 10 and peer["mismatches"] == {}, peer
    assert peer["remote_tables"]["www"]["key_length"] == 33, peer  # type string len 32
    assert peer["remote_tables"]["www"]["expire_ms"] == THIRTY_MINUTES, peer


def test_hundreds_of_updates_are_acknowledged_with_our_ids(farm):
    """Settles the byte order of HAProxy's update ids: full and incremental, both ways."""
    hap, weir, _, _ = farm
    assert wait_for(lambda: in_session(weir), 15)
    on_weir = weir.learn(300)
    assert wait_for(lambda: set(on_weir) <= set(hap.table()), 20)

    def acked() -> bool:
        table = weir_peer(weir)["tables"][0]
        return table["lag"] == 0 and table["acked"] == table["local_update"] >= 300

    assert wait_for(acked, 10), weir_peer(weir)
    on_hap = hap.learn(300)
    assert wait_for(lambda: set(on_hap) <= set(weir.table()), 20)
    check_synced(on_hap, weir.table())
    peer = weir_peer(weir)
    assert "bad_ack" not in peer["errors"], peer
    assert peer["tables"][0]["last_received"] >= 300, peer

    # HAProxy took our acks for its own ids: what it pushed is what we acknowledged (our last
    # ack goes out at the next tick, within 0.25 s).
    def hap_view() -> str:
        return unix_ask(hap.sock, "show peers").partition("id=weir(remote")[2]

    def pushed_is_acked() -> bool:
        view = hap_view()
        pushed = re.search(r"last_pushed=(\d+)", view)
        acked_by_us = re.search(r"\bupdate=(\d+)", view)
        return bool(pushed and acked_by_us and pushed.group(1) == acked_by_us.group(1))

    assert wait_for(pushed_is_acked, 5), hap_view()


def test_a_restarted_haproxy_learns_everything_from_weir(farm):
    hap, weir, _, restart_haproxy = farm
    assert wait_for(lambda: in_session(weir), 15)
    learned = {**hap.learn(5), **weir.learn(5)}
    assert wait_for(lambda: set(learned) <= set(hap.table()), 10)
    hap = restart_haproxy()
    assert wait_for(lambda: set(learned) <= set(hap.table()), 15), hap.table()
    check_synced(learned, hap.table())
    for session, server in learned.items():
        assert hap.served_by(session) == server


def test_a_restarted_weir_learns_everything_from_haproxy(farm):
    hap, weir, process, _ = farm
    assert wait_for(lambda: in_session(weir), 15)
    time.sleep(5.5)  # HAProxy only answers "finished" once its own start-up resync is over
    learned = {**hap.learn(5), **weir.learn(5)}
    assert wait_for(lambda: set(learned) <= set(weir.table()), 10)
    process.stop()
    process.start()
    assert wait_for(lambda: set(learned) <= set(weir.table()), 15), weir.table()
    check_synced(learned, weir.table())
    assert wait_for(lambda: json.loads(unix_ask(weir.sock, "show peers json"))["resync"]["done"])
    resync = json.loads(unix_ask(weir.sock, "show peers json"))["resync"]
    assert "learned from hap" in resync["state"], resync
    for session, server in learned.items():
        assert weir.served_by(session) == server
