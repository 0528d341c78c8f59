"""A learned entry is written to the peers inside the learn, before the proxy can forward the
response it came from (docs/sync.md, "Proof"): the sync service against a scripted peer on
127.0.0.1 that reads the socket without giving the event loop a turn.

Had the push waited for the next loop iteration, a kill -9 between the response and the push
would lose an entry whose client already holds the session; the takeover drill
(tests/lab/test_sync_drill.py) saw it happen once in 54 kills at a new session.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from appliance.config.model import Address, SyncConfig, SyncPeer
from appliance.persist.table import StickTable
from ha.sync.service import SyncService
from ha.sync.session import State
from tests.support.proxy import free_port

pytestmark = pytest.mark.integration

KEY = b"0123456789abcdef0123456789abcdef"


async def established_with_a_scripted_peer() -> tuple[SyncService, StickTable, socket.socket]:
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    table = StickTable("app", "string", 1000, 1800.0)
    config = SyncConfig(
        local="lb1",
        bind=Address("127.0.0.1", free_port()),
        peers=(SyncPeer("lb2", Address("127.0.0.1", listener.getsockname()[1])),),
    )
    events: list[str] = []  # the service's log lines, shown if the test fails
    service = SyncService(config, loop, lambda: [("app", table, frozenset({1, 2}))], events.append)
    service.bind()
    await service.start()
    peer, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
    listener.close()
    hello = b""
    while hello.count(b"\n") < 3:
        hello += await asyncio.wait_for(loop.sock_recv(peer, 4096), 5)
    assert hello.startswith(b"HAProxyS 2.1\nlb2\nlb1 "), hello
    await loop.sock_sendall(peer, b"200\n")
    link = service.links["lb2"]
    for _ in range(500):
        if link.conn is not None and link.conn.session.state is State.ESTABLISHED:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"no session with the scripted peer: {events}")
    await asyncio.sleep(0.1)  # the definition and the resync request go out
    while True:
        try:
            peer.recv(65536)
        except BlockingIOError:
            break
    return service, table, peer


def test_a_learned_entry_is_on_the_wire_before_the_learn_returns() -> None:
    async def scenario() -> None:
        service, table, peer = await established_with_a_scripted_peer()
        try:
            table.learn(KEY, 2)
            # No await since the learn: the loop has not had a turn.
            try:
                sent = peer.recv(65536)
            except BlockingIOError:
                pytest.fail("the update was not written during the learn")
            assert KEY in sent, sent
            table.learn(KEY[::-1], 1)
            assert KEY[::-1] in peer.recv(65536)
        finally:
            peer.close()
            await service.stop()

    asyncio.run(scenario())
