"""A learned entry is written to the peers before the proxy forwards the response it came from
(docs/sync.md, "Proof"): the sync service against a scripted peer on 127.0.0.1.

The proxy sends what it has for its connections at the end of the loop iteration
(appliance/proxy/outbox.py); the service enrolls in the same send queue at the first learn of an
iteration, before the response's outbox, so the queue writes every update of the iteration to
the peer first, in one write. Had the update waited for the next loop iteration instead, a kill
-9 between the response and the push would lose an entry whose client already holds the
session; the takeover drill (tests/lab/test_sync_drill.py) saw it happen once in 54 kills at a
new session.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from appliance.config.model import Address, SyncConfig, SyncPeer
from appliance.persist.table import StickTable
from appliance.proxy.outbox import HOLD_MAX, Outbox, send_queue
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


def drain(peer: socket.socket) -> bytes:
    """What the scripted peer's socket holds right now, without waiting."""
    data = b""
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


class ResponseWatch:
    """A client connection's transport (a real one) that notes, at the moment the response is
    handed to it, what the scripted peer had already received."""

    def __init__(self, transport: asyncio.Transport, peer: socket.socket) -> None:
        self.transport = transport
        self.peer = peer
        self.peer_had: bytes | None = None

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def write(self, data: bytes) -> None:
        self.peer_had = drain(self.peer)
        self.transport.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.transport.close()


async def client_transport() -> tuple[asyncio.Transport, socket.socket]:
    """A real transport on one end of a socket pair (the client's connection), and the other end."""
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_unix_connection(
        asyncio.Protocol, sock=ours
    )
    return transport, theirs


def keys(n: int) -> list[bytes]:
    return [b"%032x" % (0xABC000 + i) for i in range(n)]


@pytest.mark.parametrize("learns", [1, 3])
def test_the_updates_of_an_iteration_reach_the_peer_before_the_responses(learns: int) -> None:
    async def scenario() -> None:
        service, table, peer = await established_with_a_scripted_peer()
        transport, client = await client_transport()
        loop = asyncio.get_running_loop()
        other, other_client = await client_transport()
        watch = ResponseWatch(transport, peer)
        outbox = Outbox(watch, send_queue(loop))  # type: ignore[arg-type]
        try:
            # One loop iteration: another connection's data is already held (the queue's send is
            # scheduled), then the proxy learns from each response and forwards it.
            Outbox(other, send_queue(loop)).write(b"another answer")  # type: ignore[arg-type]
            for key in keys(learns):
                table.learn(key, 2)
                outbox.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: JSESSIONID=%b\r\n\r\n" % key)
            assert drain(peer) == b"", "written before the end of the iteration: not batched"
            for _ in range(100):
                await asyncio.sleep(0)
                if watch.peer_had is not None:
                    break
            assert watch.peer_had is not None, "the response was never sent"
            for key in keys(learns):
                assert key in watch.peer_had, (key, watch.peer_had)
            assert service.links["lb2"].state.updates_sent == learns
            assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")
        finally:
            for end in (transport, client, other, other_client):
                end.close()
            peer.close()
            await service.stop()

    asyncio.run(scenario())


def test_updates_go_first_when_the_queue_sends_in_the_middle_of_an_iteration() -> None:
    """A full queue sends at once (outbox.HOLD_MAX): the service enrolled first goes first, and
    a learn after that enrolls it again for the rest of the iteration."""

    async def scenario() -> None:
        service, table, peer = await established_with_a_scripted_peer()
        loop = asyncio.get_running_loop()
        pairs = [await client_transport() for _ in range(HOLD_MAX + 2)]
        watches = [ResponseWatch(transport, peer) for transport, _ in pairs]
        try:
            for i, (key, watch) in enumerate(zip(keys(len(watches)), watches, strict=True)):
                table.learn(key, 1)
                Outbox(watch, send_queue(loop)).write(b"answer %d" % i)  # type: ignore[arg-type]
            for _ in range(100):
                await asyncio.sleep(0)
                if all(w.peer_had is not None for w in watches):
                    break
            seen = b""
            for key, watch in zip(keys(len(watches)), watches, strict=True):
                assert watch.peer_had is not None
                seen += watch.peer_had
                assert key in seen, f"answer for {key!r} sent before its update"
        finally:
            for transport, client in pairs:
                transport.close()
                client.close()
            peer.close()
            await service.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["held before the learn", "closed after the response"])
def test_updates_go_first_for_a_connection_held_earlier_or_closed(how: str) -> None:
    """The service is enrolled at the head of the queue: a client connection that already had
    data held in this iteration (a ``100 Continue``) is sent after the updates, and so is one
    whose outbox is closed at once after its response (``Connection: close``)."""

    async def scenario() -> None:
        service, table, peer = await established_with_a_scripted_peer()
        transport, client = await client_transport()
        watch = ResponseWatch(transport, peer)
        outbox = Outbox(watch, send_queue(asyncio.get_running_loop()))  # type: ignore[arg-type]
        try:
            key = keys(1)[0]
            if how == "held before the learn":
                outbox.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            table.learn(key, 2)
            outbox.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: JSESSIONID=%b\r\n\r\n" % key)
            if how == "closed after the response":
                outbox.close()
            for _ in range(100):
                if watch.peer_had is not None:
                    break
                await asyncio.sleep(0)
            assert watch.peer_had is not None, "the response was never sent"
            assert key in watch.peer_had, watch.peer_had
        finally:
            transport.close()
            client.close()
            peer.close()
            await service.stop()

    asyncio.run(scenario())


def test_a_push_step_that_fails_leaves_the_next_change_enrolled() -> None:
    """After the first change of an iteration the table calls its run directly; the push at the
    end of the iteration hooks the service back, also when a session's push step raised."""

    async def scenario() -> None:
        service, table, peer = await established_with_a_scripted_peer()
        conn = service.links["lb2"].conn
        assert conn is not None
        broken = [True]
        real_push = conn.push

        def push_once_broken():
            if broken.pop() if broken else False:
                raise RuntimeError("a bug in a push step")
            real_push()

        conn.push = push_once_broken  # type: ignore[method-assign]
        first, second = keys(2)
        try:
            table.learn(first, 1)
            for _ in range(20):  # the send queue reports the error and goes on
                await asyncio.sleep(0)
            table.learn(second, 2)
            seen = b""
            for _ in range(20):  # loop iterations, no timer: the service's tick would push too
                await asyncio.sleep(0)
                seen += drain(peer)
                if second in seen:
                    break
            assert second in seen, seen
        finally:
            peer.close()
            await service.stop()

    asyncio.run(scenario())
