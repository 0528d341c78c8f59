"""Live reload of a running ``weir run``: the runtime API's ``reload`` and SIGHUP."""

from __future__ import annotations

import collections
import signal
import socket
import threading
import time

import pytest

from tests.integration.test_runtime_api import ask
from tests.support.farm import farm_config, wait_for
from tests.support.proxy import Reader, connect, free_port, get

pytestmark = pytest.mark.integration


def config(servers, *, binds=("{port}",), backend="", timeouts="") -> str:
    text = farm_config(servers, backend=backend, timeouts=timeouts)
    bind_list = ", ".join(f'"127.0.0.1:{b}"' for b in binds)
    return text.replace('bind = ["127.0.0.1:{port}"]', f"bind = [{bind_list}]")


def rewrite(proxy, text: str) -> None:
    proxy.config_path.write_text(
        text.replace("{port}", str(proxy.port)).replace("{tmp}", str(proxy.tmp))
    )


def served_by(port: int, n: int) -> collections.Counter:
    return collections.Counter(get(port, f"/r{i}").header("x-backend") for i in range(n))


def test_reload_adds_a_server_under_load_without_a_failed_request(pool, weir):
    web1, web2, web3 = pool.start("web1"), pool.start("web2"), pool.start("web3")
    two = [("web1", web1.address), ("web2", web2.address)]
    proxy = weir(config(two))
    failures: list[str] = []
    statuses: collections.Counter = collections.Counter()
    stop = threading.Event()

    def load() -> None:  # keep-alive clients, bounded in count and time
        deadline = time.monotonic() + 20
        for _ in range(2000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                with connect(proxy.port) as s:
                    r = Reader(s)
                    for i in range(5):
                        s.sendall(f"GET /l{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                        statuses[r.response().status] += 1
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: sum(statuses.values()) > 100)
        rewrite(proxy, config([*two, ("web3", web3.address)]))
        answer = ask(proxy, "reload")
        assert "Reloaded:" in answer and "server web3 added" in answer
        assert wait_for(lambda: len(web3.requests) > 20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert set(statuses) == {200}


def test_a_broken_config_changes_nothing(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(config([("web1", web1.address), ("web2", web2.address)]))
    rewrite(
        proxy,
        config([("web1", web1.address)]).replace("[backends.app]", "[backends.app]\nbalanse = 1"),
    )
    answer = ask(proxy, "reload")
    assert "Reload failed, nothing changed" in answer
    assert "backends.app.balanse: unknown key; did you mean 'balance'?" in answer
    assert served_by(proxy.port, 10) == {"web1": 5, "web2": 5}
    assert wait_for(lambda: "nothing changed" in proxy.stderr())


def test_servers_keep_their_state_and_tables_their_entries(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    stick = '[backends.app.stick]\non = "src"\n'
    servers = [("web1", web1.address), ("web2", web2.address)]
    proxy = weir(config(servers, backend=stick))
    first = get(proxy.port, "/learn").header("x-backend")
    assert "127.0.0.1" in ask(proxy, "show table app")
    other = {"web1": "web2", "web2": "web1"}[first]
    ask(proxy, f"set server app/{other} state maint")
    rewrite(proxy, config(servers, backend=stick, timeouts='server = "20s"'))
    answer = ask(proxy, "reload")
    assert "timeouts changed" in answer
    assert "127.0.0.1" in ask(proxy, "show table app")  # the learned association survived
    assert served_by(proxy.port, 6) == {first: 6}
    ask(proxy, "clear table app")
    assert served_by(proxy.port, 6) == {first: 6}  # the other one is still in maintenance


def test_bind_addresses_are_opened_and_closed_as_listed(pool, weir):
    web1 = pool.start("web1")
    servers = [("web1", web1.address)]
    proxy = weir(config(servers))
    extra = free_port()
    rewrite(proxy, config(servers, binds=("{port}", str(extra))))
    assert f"127.0.0.1:{extra}: listening" in ask(proxy, "reload")
    assert wait_for(lambda: _answers(extra))
    assert get(extra, "/new").status == 200
    rewrite(proxy, config(servers, binds=(str(extra),)))
    answer = ask(proxy, "reload")
    assert f"127.0.0.1:{proxy.port}: no longer listening" in answer
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", proxy.port), timeout=2):
        pass
    assert get(extra, "/still").status == 200


def test_a_port_in_use_fails_the_reload_and_changes_nothing(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(config([("web1", web1.address)]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        rewrite(
            proxy,
            config([("web1", web1.address), ("web2", web2.address)], binds=("{port}", str(busy))),
        )
        answer = ask(proxy, "reload")
    assert "Reload failed, nothing changed" in answer and "cannot bind" in answer
    assert served_by(proxy.port, 4) == {"web1": 4}


def test_sighup_reloads(pool, weir):
    web1, web2 = pool.start("web1"), pool.start("web2")
    proxy = weir(config([("web1", web1.address)]))
    rewrite(proxy, config([("web1", web1.address), ("web2", web2.address)]))
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "server web2 added" in proxy.stderr())
    assert served_by(proxy.port, 4) == {"web1": 2, "web2": 2}


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
