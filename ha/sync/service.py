"""The sync service: peers-protocol sessions over real sockets, in the ``weir run`` process.

The stick tables live in the proxy's event loop, so the service does too: it listens on
``[ha.sync] bind``, connects to every configured peer, and moves bytes and timers for the
sans-io sessions of ``session.py``, which decide everything else. What it adds, as HAProxy's
``src/peers.c`` does:

- **One session per peer, the last connection wins.** Both sides connect; a peer with no session
  gets a connection attempt. A hello accepted from a peer replaces whatever session that peer had
  (an established one, or our own attempt still connecting), and the replaced side waits a random
  50..2050 ms before connecting again, so that two peers that crossed their connections do not
  keep doing so.
- **Reconnects** after a session ends: a random 50..2050 ms; after failed attempts, a jittered
  exponential backoff up to 5 s (HAProxy retries every 5 s). A 502 answer is retried at once with
  protocol 2.0.
- **Pushing as changes happen, in order with the responses.** Each stick table calls
  ``on_local_change`` when its change log grows. The first change of a loop iteration enrolls
  ``push_all`` at the head of the loop's ``SendQueue`` (appliance/proxy/outbox.py
  ``enroll_head``), which sends what the proxy's connections hold at the end of the iteration
  after calling the head; an outbox closed earlier calls the head before sending its own data. So
  every update of the iteration is written to each peer in one write, and before the responses
  they were learned from (a kill -9 right after cannot lose a session whose cookie the client
  received, docs/sync.md "Proof"). Pushing at the next loop turn instead lost sessions in the
  drill. While a 2.1 peer is established, the table calls its ``UpdateRun`` directly: each change
  is encoded when it is logged, the run's first change enrolls the push, and a session up to date
  writes the run as it is (``PeerSession.push_runs``), without the general push step. A push
  step writes at most ``PUSH_BATCH`` updates and yields to the loop; a session catching up a
  backlog gets the new update with the rest.
- **Backpressure.** Writes stop while a peer's socket buffer is above ``HIGH_WATER`` (nothing
  queues in memory: the change log is the queue); a peer that does not read for 5 s is cut.
- **TLS**, when ``tls_cert``/``tls_key``/``tls_ca`` are set: both sides present a certificate and
  require the other's to be signed by ``tls_ca`` (mutual TLS; names are not checked, so use a CA
  that signs only the peers' certificates).

``show_peers`` renders the runtime API's ``show peers`` (docs/runtime-api.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import random
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from appliance.proxy.frontend import Listening, listen_socket
from appliance.proxy.outbox import send_queue
from ha.sync.codec import VERSION, KeyType, TableDefinition, UpdateRun
from ha.sync.session import (
    PUSH_BATCH,
    Close,
    CloseRequested,
    Connected,
    ConnectionLost,
    Established,
    Event,
    LocalTable,
    MorePending,
    Notice,
    PeerSession,
    PeerState,
    Rejected,
    Resync,
    Send,
    StartLearning,
    State,
    Tick,
    WritePaused,
    WriteResumed,
)

if TYPE_CHECKING:
    from appliance.config.model import Address, SyncConfig
    from appliance.persist.table import Key, StickTable

TICK = 0.25  # seconds between timer checks (heartbeats, dead peers, resync deadline)
CONNECT_TIMEOUT = 5.0
HIGH_WATER = 256 * 1024  # bytes buffered towards a peer before we stop writing
MAX_UNIDENTIFIED = 32  # accepted connections still in their handshake
RECONNECT_MAX = 5.0  # PEER_RECONNECT_TIMEOUT
LOG_EVERY = 100  # refused connections of one kind: the first is logged, then one in this many
LAG_CAP = 1_000_000  # show peers counts unacknowledged entries up to this many

TableSource = Callable[[], Iterable[tuple[str, "StickTable", frozenset[int]]]]


class SyncStartError(OSError):
    """The service cannot start (listen address, TLS files); the message is the one-line reason.

    An ``OSError``, so that ``weir run`` reports it like a frontend's port in use (exit 2).
    """


def replicated_tables(backends: dict) -> Iterable[tuple[str, StickTable, frozenset[int]]]:
    """The stick tables of ``[backends.X.stick]`` (source address or learned cookie), named
    after their backend as HAProxy names a backend's ``stick-table``, with the backend's server
    ids. Cookie insertion keeps its state in the client's cookie: nothing to replicate."""
    for name, backend in backends.items():
        persistence = backend.persistence
        if persistence is not None and persistence.table is not None:
            yield name, persistence.table, frozenset(s.id for s in backend.servers)


def collision_delay() -> float:
    """HAProxy's random delay before reconnecting after a session was killed: 50..2050 ms."""
    return 0.05 + random.random() * 2.0


def backoff(failures: int) -> float:
    """Delay before the next attempt after ``failures`` failed ones in a row, jittered."""
    return min(RECONNECT_MAX, 0.25 * 2**failures) * random.uniform(0.5, 1.0)


def tls_contexts(config: SyncConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """Server and client contexts for mutual TLS (None, None without TLS)."""
    if not config.tls:
        return None, None
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.tls_ca)
        server.load_cert_chain(config.tls_cert, config.tls_key)
        server.verify_mode = ssl.CERT_REQUIRED
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.tls_ca)
        client.load_cert_chain(config.tls_cert, config.tls_key)
        client.check_hostname = False  # peers are told apart by their hello, not by DNS names
        client.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise SyncStartError(f"ha.sync TLS files: {exc}") from None
    return server, client


class PeerConnection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one session."""

    def __init__(self, service: SyncService, session: PeerSession) -> None:
        self.service = service
        self.session = session
        self.transport: asyncio.Transport | None = None
        self._more = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.session.state is State.CLOSED:  # replaced while it was connecting
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        if self.session.role == "connector":
            self.run(Connected())

    def data_received(self, data: bytes) -> None:
        self.service.carry_out(self, self.session.receive(data, self.service.loop.time()))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.run(WritePaused())

    def resume_writing(self) -> None:
        self.run(WriteResumed())

    def connection_lost(self, exc: Exception | None) -> None:
        self.run(ConnectionLost(str(exc) if exc else "closed by the peer"))
        self.transport = None
        self.service.connection_ended(self)

    def run(self, event: Event) -> None:
        self.service.carry_out(self, self.session.handle(event, self.service.loop.time()))

    def push_soon(self) -> None:
        if not self._more:
            self._more = True
            self.service.loop.call_soon(self.push)

    def push(self) -> None:
        self._more = False
        self.service.carry_out(self, self.session.push(self.service.loop.time()))


class PeerLink:
    """A configured peer: its state, its current session, and when to connect next."""

    def __init__(self, name: str, address: Address) -> None:
        self.state = PeerState(name, str(address))
        self.address = address
        self.conn: PeerConnection | None = None
        self.failures = 0
        self.next_attempt = 0.0


class SyncService(Listening):
    """The peers of ``[ha.sync]``, syncing the tables ``tables()`` lists (name, table, ids)."""

    def __init__(
        self,
        config: SyncConfig,
        loop: asyncio.AbstractEventLoop,
        tables: TableSource,
        event: Callable[[str], None],
    ) -> None:
        self.config = config
        self.loop = loop
        self._source = tables
        self._event = event
        self.links = {p.name: PeerLink(p.name, p.address) for p in config.peers}
        self.peers = {name: link.state for name, link in self.links.items()}
        self.tables: list[LocalTable] = []
        self._table_ids: dict[str, int] = {}
        self.resync = Resync(loop.time(), needed=bool(config.peers))
        self.sock: socket.socket | None = None
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[PeerConnection] = set()
        self.unidentified_errors: Counter[str] = Counter()
        self.server_ctx: ssl.SSLContext | None = None
        self.client_ctx: ssl.SSLContext | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task] = set()
        self.stopping = False
        self._runs_on = False  # a 2.1 peer was established at the last push: keep runs
        self._hooks: list[tuple[LocalTable, Callable[[int, Key, int], None]]] = []
        self._enroll = functools.partial(send_queue(loop).enroll_head, self.push_all)
        self.refresh_tables()

    # -- life cycle

    def bind(self) -> None:
        """Load the TLS files and open the listening socket (before the loop runs);
        ``SyncStartError`` if we can't."""
        self.server_ctx, self.client_ctx = tls_contexts(self.config)
        try:
            self.sock = listen_socket(self.config.bind)
        except OSError as exc:
            raise SyncStartError(
                f"peers listener (ha.sync.bind) on {self.config.bind}: {exc.strerror or exc}"
            ) from None

    async def start(self) -> None:
        if self.sock is not None:
            self.server = await self.loop.create_server(
                self._accept, sock=self.sock, ssl=self.server_ctx
            )
        names = ", ".join(self.links) or "none"
        self.event(
            f"listening on {self.config.bind} as {self.config.local!r}"
            f"{' with TLS' if self.config.tls else ''}; peers: {names}"
        )
        self._timer = self.loop.call_later(TICK, self._tick)
        for link in self.links.values():
            self._connect_later(link, 0.0)

    def close(self) -> None:
        """Stop listening (a failed start, or the first step of ``stop``)."""
        self.close_listening()

    async def stop(self) -> None:
        """Close every session and the listener; the tables stay as they are."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
        self.close()
        for task in list(self._connecting):
            task.cancel()
        for conn in list(self.connections):
            conn.run(CloseRequested("stopping"))
        self._hooks = []
        for local in self.tables:
            local.table.on_local_change = None
        if self.connections:
            await asyncio.sleep(0)  # let the transports flush and close

    def event(self, message: str) -> None:
        self._event(f"Peers: {message}")

    # -- tables

    def refresh_tables(self) -> bool:
        """Take the replicated tables as they are now (start, reload); whether they changed.

        A table keeps its wire id as long as its name exists. A table object that was replaced
        (a reload changed its key type) starts its push positions over.
        """
        before = {t.name: (t.table, t.definition(VERSION)) for t in self.tables}
        tables = []
        hooks: list[tuple[LocalTable, Callable[[int, Key, int], None]]] = []
        for name, table, server_ids in self._source():
            table_id = self._table_ids.setdefault(name, len(self._table_ids) + 1)
            local = LocalTable(name, table, table_id, server_ids)
            with contextlib.suppress(ValueError):  # a table whose updates cannot be run
                local.run = UpdateRun(local.definition(VERSION), table.update_id, PUSH_BATCH)
                local.run.on_start = self._enroll
            tables.append(local)
            hooks.append((local, self._on_change(table)))
            old = before.get(name)
            if old is not None and old[0] is not table:
                for state in self.peers.values():
                    state.pushed.pop(name, None)
                    state.acked.pop(name, None)
        self.tables = tables
        self._hooks = hooks
        self._hook_tables(self._runs_on)
        after = {t.name: (t.table, t.definition(VERSION)) for t in tables}
        return after != before

    def _tables(self) -> list[LocalTable]:
        return self.tables

    def _on_change(self, table: StickTable) -> Callable[[int, Key, int], None]:
        """The table's ``on_local_change`` while no 2.1 peer is established (or the table has no
        run): its first change of the iteration enrolls the push (before the outboxes of the
        responses: module docstring), and the table calls nothing more until ``push_all`` hooks
        this again. Otherwise the table calls its run, which enrolls the push when it starts."""

        def changed(update_id: int, key: Key, server_id: int) -> None:
            self._enroll()
            table.on_local_change = None

        return changed

    def _hook_tables(self, runs_on: bool) -> None:
        for local, changed in self._hooks:
            run = local.run
            local.table.on_local_change = run.add if runs_on and run is not None else changed

    def push_all(self) -> None:
        """Write what changed to every established peer (the send queue calls this ahead of the
        iteration's responses), then empty the tables' runs and hook the tables again. A session
        up to date writes the runs as they are (``PeerSession.push_runs``); one still catching up
        (a push step is already scheduled) sends the changes with the rest."""
        runs_on = False
        try:
            now = self.loop.time()
            for conn in list(self.connections):
                session = conn.session
                if session.state is State.ESTABLISHED:
                    runs_on = runs_on or session.version >= VERSION
                    if not conn._more:
                        data = session.push_runs(now, self.tables)
                        if data is None:
                            conn.push()
                        elif data:
                            transport = conn.transport
                            if transport is not None and not transport.is_closing():
                                transport.write(data)
        finally:  # whatever a session did, the next change must enroll a push again
            self._runs_on = runs_on
            for local in self.tables:
                if local.run is not None:
                    local.run.clear(local.table.update_id)
            if not self.stopping:
                self._hook_tables(runs_on)

    # -- connections

    def _session(self, role: str, peer: str | None = None) -> PeerSession:
        return PeerSession(
            role,  # type: ignore[arg-type]
            self.config.local,
            self.peers,
            self._tables,
            self.resync,
            self.loop.time(),
            peer=peer,
            pid=os.getpid(),
        )

    def _accept(self) -> PeerConnection:
        conn = PeerConnection(self, self._session("acceptor"))
        unidentified = sum(1 for c in self.connections if c.session.peer is None)
        if unidentified >= MAX_UNIDENTIFIED:
            conn.session.handle(CloseRequested("too many connections in handshake"), 0.0)
            self.unidentified_errors["too_many_handshakes"] += 1
        else:
            self.connections.add(conn)
        return conn

    def _connect_later(self, link: PeerLink, delay: float) -> None:
        link.next_attempt = self.loop.time() + delay

    def _connect_due(self, now: float) -> None:
        for link in self.links.values():
            if link.conn is None and now >= link.next_attempt and not self.stopping:
                conn = PeerConnection(self, self._session("connector", link.state.name))
                link.conn = conn
                self.connections.add(conn)
                task = self.loop.create_task(self._connect(link, conn))
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)

    async def _connect(self, link: PeerLink, conn: PeerConnection) -> None:
        address = link.address
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn, address.host, address.port, ssl=self.client_ctx
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            kind = "tls" if isinstance(exc, ssl.SSLError) else "connect"
            link.state.count(kind)
            if link.failures == 0 or kind == "tls":
                reason = "timed out" if isinstance(exc, TimeoutError) else exc
                self.event(f"cannot connect to peer {link.state.name} at {address}: {reason}")
            conn.session.handle(ConnectionLost(kind), self.loop.time())
            self.connections.discard(conn)
            if link.conn is conn:
                link.conn = None
                link.failures += 1
                self._connect_later(link, backoff(link.failures))

    def connection_ended(self, conn: PeerConnection) -> None:
        self.connections.discard(conn)
        peer = conn.session.peer
        if peer is None:
            return
        link = self.links.get(peer.name)
        if link is None or link.conn is not conn:
            return
        link.conn = None
        if conn.session.state is State.CLOSED and link.failures == 0 and peer.established_at:
            delay = collision_delay()
        else:
            link.failures += 1
            delay = backoff(link.failures)
        if link.next_attempt < self.loop.time() + delay:
            self._connect_later(link, delay)
        if not self.stopping and conn.session.close_reason:
            self.event(f"session with peer {peer.name} ended: {conn.session.close_reason}")

    def carry_out(self, conn: PeerConnection, actions: list) -> None:
        transport = conn.transport
        for action in actions:
            if isinstance(action, Send):
                if transport is not None and not transport.is_closing():
                    transport.write(action.data)
            elif isinstance(action, Close):
                self._closed(conn, action)
                if transport is not None:
                    if action.error == "stalled":
                        transport.abort()
                    else:
                        transport.close()
            elif isinstance(action, Established):
                self._established(conn, action)
            elif isinstance(action, Rejected):
                self._rejected(conn, action)
            elif isinstance(action, MorePending):
                conn.push_soon()
            elif isinstance(action, Notice):
                self.event(action.message)

    def _closed(self, conn: PeerConnection, close: Close) -> None:
        if close.error is None:
            return
        peer = conn.session.peer
        if peer is not None and peer.name in self.links:
            peer.count(close.error)
        else:
            self.unidentified_errors[close.error] += 1
            count = self.unidentified_errors[close.error]
            if count == 1 or count % LOG_EVERY == 0:
                self.event(f"refused a connection ({count} of this kind so far): {close.reason}")

    def _established(self, conn: PeerConnection, established: Established) -> None:
        link = self.links.get(established.peer)
        if link is None:  # removed by a reload during the handshake
            conn.run(CloseRequested("peer removed from the configuration"))
            return
        old = link.conn
        link.conn = conn
        link.failures = 0
        if old is not None and old is not conn:
            # The last connection wins; the other side waits before it tries again.
            old.run(CloseRequested("replaced by a newer connection from the peer"))
            self._connect_later(link, collision_delay())
        version = ".".join(map(str, established.version))
        self.event(
            f"session with peer {established.peer} established "
            f"({link.state.direction}, protocol {version})"
        )

    def _rejected(self, conn: PeerConnection, rejected: Rejected) -> None:
        peer = conn.session.peer
        link = self.links.get(peer.name) if peer is not None else None
        if link is not None and link.conn is conn:
            link.conn = None
            if rejected.status == 502:
                self._connect_later(link, 0.05)
            else:
                link.failures += 1
                self._connect_later(link, backoff(link.failures))
                self.event(f"peer {peer.name} refused our hello with status {rejected.status}")

    # -- timers

    def _tick(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.run(Tick())
            if conn.transport is None and conn.session.state is State.CLOSED:
                self.connections.discard(conn)  # e.g. a TLS handshake that never completed
        self.resync.tick(now)
        if not self.resync.done and self.resync.assigned is None:
            for conn in list(self.connections):
                session = conn.session
                if (
                    session.state is State.ESTABLISHED
                    and session.peer is not None
                    and self.resync.assign(session.peer.name)
                ):
                    conn.run(StartLearning())
                    break
        self._connect_due(now)
        self._timer = self.loop.call_later(TICK, self._tick)

    # -- reload

    def reconfigure(self, config: SyncConfig) -> list[str]:
        """Apply a reloaded ``[ha.sync]``; return what changed, one line each."""
        changes = []
        old = self.config
        if config.bind != old.bind:
            try:
                sock = listen_socket(config.bind)
            except OSError as exc:
                changes.append(
                    f"ha.sync.bind: cannot listen on {config.bind} ({exc.strerror or exc}); "
                    f"still listening on {old.bind}"
                )
                config = _replace_bind(config, old.bind)
            else:
                if self.server is not None:
                    self.server.close()
                self.sock = sock
                self.server = None
                self.loop.create_task(self._listen())
                changes.append(f"ha.sync.bind: now {config.bind}")
        restart_all = False
        if (config.local, config.tls_cert, config.tls_key, config.tls_ca) != (
            old.local,
            old.tls_cert,
            old.tls_key,
            old.tls_ca,
        ):
            self.server_ctx, self.client_ctx = tls_contexts(config)
            restart_all = True
            changes.append("ha.sync: local name or TLS changed; sessions restart")
        self.config = config
        wanted = {p.name: p.address for p in config.peers}
        for name in list(self.links):
            if name not in wanted:
                link = self.links.pop(name)
                del self.peers[name]
                if link.conn is not None:
                    link.conn.run(CloseRequested("peer removed from the configuration"))
                changes.append(f"ha.sync: peer {name} removed")
        for name, address in wanted.items():
            link = self.links.get(name)
            if link is None:
                link = self.links[name] = PeerLink(name, address)
                self.peers[name] = link.state
                changes.append(f"ha.sync: peer {name} added")
            elif link.address != address:
                link.address = address
                link.state.address = str(address)
                if link.conn is not None:
                    link.conn.run(CloseRequested("peer address changed"))
                changes.append(f"ha.sync: peer {name} now at {address}")
        if self.refresh_tables() and not restart_all:
            restart_all = True
            changes.append("ha.sync: replicated tables changed; sessions restart")
        if restart_all:
            for conn in list(self.connections):
                conn.run(CloseRequested("configuration changed"))
        return changes

    async def _listen(self) -> None:
        sock = self.sock
        if sock is not None and not self.stopping:
            self.server = await self.loop.create_server(
                self._accept, sock=sock, ssl=self.server_ctx
            )

    # -- show peers

    def show_peers(self, as_json: bool = False) -> str:
        data = self.describe()
        if as_json:
            return json.dumps(data) + "\n"
        lines = [
            f"# local={data['local']} bind={data['bind']} tls={'on' if data['tls'] else 'off'} "
            f"resync={data['resync']['state']!r}\n"
        ]
        for peer in data["peers"]:
            errors = ",".join(f"{k}:{v}" for k, v in sorted(peer["errors"].items())) or "-"
            lines.append(
                f"{peer['name']} addr={peer['address']} state={peer['state']} "
                f"dir={peer['direction'] or '-'} version={peer['version']} "
                f"last_status={peer['last_status'] or '-'} sessions={peer['sessions']} "
                f"reconnects={peer['reconnects']} last_heartbeat={_age(peer['last_heartbeat'])} "
                f"last_message={_age(peer['last_message'])} sent={peer['updates_sent']} "
                f"received={peer['updates_received']} applied={peer['updates_applied']} "
                f"errors={errors}\n"
            )
            for table in peer["tables"]:
                lines.append(
                    f"  table {table['name']} id={table['id']} pushed={table['pushed']} "
                    f"acked={table['acked']} lag={table['lag']} "
                    f"last_received={table['last_received']}\n"
                )
            for name, why in sorted(peer["mismatches"].items()):
                lines.append(f"  mismatch {name}: {why}\n")
        if data["unidentified_errors"]:
            errors = ",".join(f"{k}:{v}" for k, v in sorted(data["unidentified_errors"].items()))
            lines.append(f"# refused connections: {errors}\n")
        return "".join(lines)

    def describe(self) -> dict:
        """Everything ``show peers`` says, as plain data (also its ``json`` form)."""
        now = self.loop.time()
        peers = []
        for name, link in self.links.items():
            state = link.state
            conn = link.conn
            session_state = conn.session.state.value if conn is not None else "idle"
            tables = []
            for local in self.tables:
                acked = state.acked.get(local.name, 0)
                lag = len(local.table.log_since(acked, limit=LAG_CAP))
                remote = state.remote_definitions.get(local.name)
                tables.append(
                    {
                        "name": local.name,
                        "id": local.table_id,
                        "local_update": local.table.update_id,
                        "pushed": state.pushed.get(local.name, 0),
                        "acked": acked,
                        "lag": lag,
                        "last_received": state.received.get(local.name, 0),
                        "remote": _definition(remote) if remote is not None else None,
                    }
                )
            peers.append(
                {
                    "name": name,
                    "address": state.address,
                    "state": session_state,
                    "direction": state.direction if conn is not None else "",
                    "version": ".".join(map(str, state.version)),
                    "last_status": state.last_status,
                    "sessions": state.sessions,
                    "reconnects": state.reconnects,
                    "last_heartbeat": _since(now, state.last_heartbeat),
                    "last_message": _since(now, state.last_message),
                    "updates_sent": state.updates_sent,
                    "updates_received": state.updates_received,
                    "updates_applied": state.updates_applied,
                    "errors": dict(state.errors),
                    "tables": tables,
                    "remote_tables": {
                        n: _definition(d) for n, d in sorted(state.remote_definitions.items())
                    },
                    "mismatches": dict(state.mismatches),
                }
            )
        resync = self.resync
        return {
            "local": self.config.local,
            "bind": str(self.config.bind),
            "tls": self.config.tls,
            "resync": {
                "state": resync.describe(),
                "done": resync.done,
                "peer": resync.assigned,
                "seconds": (resync.finished_at - resync.started)
                if resync.finished_at is not None
                else None,
            },
            "peers": peers,
            "unidentified_errors": dict(self.unidentified_errors),
        }


def _definition(d: TableDefinition) -> dict:
    kind = KeyType(d.key_type).name.lower() if d.key_type in KeyType._value2member_map_ else None
    return {
        "key_type": kind or d.key_type,
        "key_length": d.key_length,
        "expire_ms": d.expire_ms,
        "data_types": list(d.data_types),
    }


def _since(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _replace_bind(config: SyncConfig, bind: Address) -> SyncConfig:
    return dataclasses.replace(config, bind=bind)
