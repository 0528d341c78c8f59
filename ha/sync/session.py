"""One session of HAProxy's peers protocol: every rule that changes a session's state lives here.

HAProxy's ``src/peers.c`` (2.6) is the reference for behaviour the documents leave open; the wire
format is ``codec``. The object has no I/O and reads no clock (the sans-io style of h11/h2): the
service feeds it events (``Connected``, ``DataReceived``, ``Tick``, ``PushRequested``, ...) with
the time, and carries out the actions it returns, in order: ``Send`` bytes, ``Close`` the
connection, and report ``Established`` / ``Rejected`` so that the service can apply HAProxy's
"last connection wins" rule and its reconnect delays.

The transitions are table driven, as in h2: a dict from (state, input) to (handler, next state).
A decoded message or timer becomes one input (a hello is classified by its names, a status line
by its code), so the table has no guards; every input the network can produce is in the table for
every state, and a pair missing from it raises ``SessionError`` (a bug in the caller).

What a session does, as HAProxy does it:

- **Handshake.** The connecting side sends ``HAProxyS 2.1`` (2.0 once the peer answered 502) and
  waits for the status line. The accepting side answers 502 to another major version or a newer
  minor, 503 when the hello is not addressed to our name, 504 when the sender is not a configured
  peer, 501 to anything malformed, and 200 otherwise. Nothing may take longer than
  ``HANDSHAKE_TIMEOUT``.
- **Definitions.** Right after the handshake each side of a Weir session announces every table
  it replicates (HAProxy announces a table before its first update). A peer's definition is
  matched to ours by name, key type and key length; a table we do not have, or one that differs,
  is not synced: its updates are skipped and counted, and the difference is reported once.
- **Updates.** Local changes are pushed in update-id order from the table's change log
  (``StickTable.log_since``), as timed updates carrying the remaining life towards a 2.1
  peer, plain ones towards 2.0. Received updates are stored with ``apply_remote`` (never pushed
  back); an update for a table id nobody defined, or naming a server id the backend does not have,
  is skipped and counted.
- **Acks.** Every table with new updates is acknowledged with the id of its last update: the
  first batch of received messages at once, then at most every ``ACK_INTERVAL`` while more
  arrive, and the last ones at the next tick. HAProxy acks every batch; but an ack only says
  where a new session resumes, so fewer acks cost nothing but a few updates sent again after a
  reconnect, and save both sides a wake-up per batch. The peer's acks move
  ``PeerState.acked``; a new session resumes pushing after the last acknowledged id.
- **Resync.** A session assigned by ``Resync`` asks the peer for a full resync; the peer's finished
  or partial message is confirmed. Asked for one, a session teaches the whole table (local and
  learned entries, ``log_since(0, include_remote=True)``), then says finished (this node is
  up to date) or partial (it is still learning itself), and waits for the confirm.
- **Liveness.** A heartbeat goes out after ``HEARTBEAT_INTERVAL`` without sending anything; a
  peer silent for ``DEAD_AFTER`` is dead; a peer that does not read for ``STALLED_AFTER`` (our
  writes paused all that time) is cut. Each closes the session; the service reconnects.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ha.sync.codec import (
    DOWNGRADED_VERSION,
    KEY_TYPES_BY_NAME,
    MAX_MESSAGE_SIZE,
    VERSION,
    Ack,
    DataType,
    Decoder,
    Encoder,
    ErrorMessage,
    ErrorType,
    HandshakeError,
    Heartbeat,
    Hello,
    ProtocolError,
    ResyncConfirm,
    ResyncFinished,
    ResyncPartial,
    ResyncRequest,
    SkippedUpdate,
    Status,
    StatusLine,
    TableDefinition,
    TableSwitch,
    UnknownMessage,
    Update,
    UpdateRun,
    wire_key_length,
)

if TYPE_CHECKING:
    from appliance.persist.table import Key, StickTable

HEARTBEAT_INTERVAL = 3.0  # PEER_HEARTBEAT_TIMEOUT: a heartbeat after 3 s without sending
DEAD_AFTER = 5.0  # PEER_RECONNECT_TIMEOUT: 5 s without any message means the peer is dead
HANDSHAKE_TIMEOUT = 5.0  # HAProxy's peers frontend has a 5 s client timeout
STALLED_AFTER = 5.0  # a peer that does not read for this long is cut
RESYNC_TIMEOUT = 5.0  # PEER_RESYNC_TIMEOUT: how long a starting node looks for a teacher
PUSH_BATCH = 1000  # updates written per step; the service calls again while more remain
# Acks go out at most this often while updates stream in, and at each tick (the service ticks
# every 0.25 s): they only tell where a new session resumes, and one per received batch cost both
# sides a wake-up per batch.
ACK_INTERVAL = 0.1
MAX_REMOTE_TABLES = 256  # table ids a peer may define in one session (memory stays bounded)
_U32 = 0xFFFFFFFF
_HALF = 1 << 31


class SessionError(RuntimeError):
    """An event that the table does not allow in the current state: a bug in the caller."""


class State(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code
    CONNECTING = "connecting"  # connector: TCP (and TLS) not up yet
    AWAIT_STATUS = "await status"  # connector: hello sent
    AWAIT_HELLO = "await hello"  # acceptor: nothing received yet
    ESTABLISHED = "established"
    CLOSED = "closed"


# -- what the sessions share ------------------------------------------------------------------


@dataclass
class LocalTable:
    """A table this node replicates: its stick table, its id on the wire, and the server ids
    its backend has (updates naming another server are skipped). ``run``, when the service
    keeps one, holds this loop iteration's local changes already encoded (``UpdateRun``)."""

    name: str
    table: StickTable
    table_id: int
    server_ids: frozenset[int]
    run: UpdateRun | None = None

    def definition(self, version: tuple[int, int]) -> TableDefinition:
        """Our definition (2.0 style, without expiry, towards a 2.0 peer)."""
        table = self.table
        return TableDefinition(
            self.table_id,
            self.name,
            KEY_TYPES_BY_NAME[table.key_type],
            wire_key_length(table.key_type, table.key_len),
            (DataType.SERVER_ID,),
            int(table.expire * 1000) if version >= VERSION else None,
        )


@dataclass
class PeerState:
    """What this node knows about one configured peer, across its sessions (and reloads)."""

    name: str
    address: str
    version: tuple[int, int] = VERSION  # DOWNGRADED_VERSION once the peer answered 502
    pushed: dict[str, int] = field(default_factory=dict)  # table -> last update id sent
    acked: dict[str, int] = field(default_factory=dict)  # table -> last update id acked
    received: dict[str, int] = field(default_factory=dict)  # table -> last wire id received
    remote_definitions: dict[str, TableDefinition] = field(default_factory=dict)
    mismatches: dict[str, str] = field(default_factory=dict)  # table -> why it is not synced
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    sessions: int = 0  # handshakes that succeeded
    reconnects: int = 0  # sessions established after the first
    updates_sent: int = 0
    updates_received: int = 0
    updates_applied: int = 0
    last_status: int | None = None  # the last handshake status, either direction
    last_heartbeat: float | None = None  # when the last heartbeat arrived (service clock)
    last_message: float | None = None  # when the last message of any kind arrived
    established_at: float | None = None
    direction: str = ""  # "in" or "out": who opened the current session

    def count(self, kind: str, n: int = 1) -> None:
        self.errors[kind] += n


class Resync:
    """This node's own full resync when it starts: learn every table from one peer.

    HAProxy's ``PEERS_F_RESYNC_*`` logic for remote peers: the first established session whose
    peer may be up to date is assigned and asks for a resync. A finished answer ends the
    resync; a partial one marks that peer not up to date and another is tried. When no peer is
    assigned for ``RESYNC_TIMEOUT`` (none reachable, or none up to date) the node considers
    itself up to date anyway; an assigned session that breaks gives the others another
    ``RESYNC_TIMEOUT``.
    """

    def __init__(self, now: float, needed: bool = True) -> None:
        self.started = now
        self.deadline = now + RESYNC_TIMEOUT
        self.done = not needed
        self.outcome = "not needed" if not needed else ""
        self.assigned: str | None = None
        self.not_up_to_date: set[str] = set()
        self.finished_at: float | None = None if needed else now

    def assign(self, peer: str) -> bool:
        """Whether the newly established session with ``peer`` should ask for the resync."""
        if self.done or self.assigned is not None or peer in self.not_up_to_date:
            return False
        self.assigned = peer
        return True

    def finished(self, peer: str, now: float) -> None:
        if self.assigned == peer:
            self.assigned = None
            self._end(f"learned from {peer}", now)

    def partial(self, peer: str, now: float) -> None:
        if self.assigned == peer:
            self.assigned = None
            self.not_up_to_date.add(peer)
            self.deadline = now + RESYNC_TIMEOUT

    def aborted(self, peer: str, now: float) -> None:
        if self.assigned == peer:
            self.assigned = None
            self.deadline = now + RESYNC_TIMEOUT

    def tick(self, now: float) -> None:
        if not self.done and self.assigned is None and now >= self.deadline:
            self._end("no peer could teach us (timed out)", now)

    def _end(self, outcome: str, now: float) -> None:
        self.done = True
        self.outcome = outcome
        self.finished_at = now

    def describe(self) -> str:
        if self.done:
            took = (self.finished_at or self.started) - self.started
            return f"done: {self.outcome}, after {took:.3f}s"
        if self.assigned is not None:
            return f"learning from {self.assigned}"
        return "looking for a peer to learn from"


# -- events and actions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """Connector: the connection (TLS included) is up."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: check the timers (heartbeat, dead peer, stalled peer, handshake)."""


@dataclass(frozen=True, slots=True)
class StartLearning:
    """``Resync`` assigned this established session: ask the peer for a full resync."""


@dataclass(frozen=True, slots=True)
class PushRequested:
    """Local tables changed, or the connection can take more: write what is pending."""


@dataclass(frozen=True, slots=True)
class WritePaused:
    """The peer does not take our bytes as fast as we write (transport above its high water)."""


@dataclass(frozen=True, slots=True)
class WriteResumed:
    pass


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    reason: str


@dataclass(frozen=True, slots=True)
class CloseRequested:
    """The service closes the session (stopping, replaced by a newer connection, reload)."""

    reason: str


Event = (
    Connected
    | DataReceived
    | Tick
    | StartLearning
    | PushRequested
    | WritePaused
    | WriteResumed
    | ConnectionLost
    | CloseRequested
)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once ``Send``s before it are written; ``error`` counts it."""

    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake succeeded with ``peer`` (an acceptor learns here who it talks to)."""

    peer: str
    version: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Rejected:
    """The connector's hello was answered with a status other than 200."""

    status: int


@dataclass(frozen=True, slots=True)
class MorePending:
    """A push step stopped at its batch size: feed ``PushRequested`` again soon."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an operator should read in the event log (one line)."""

    message: str


Action = Send | Close | Established | Rejected | MorePending | Notice


class _Input(enum.Enum):
    __hash__ = object.__hash__  # looked up with the state in _TABLE for every event
    CONNECTED = "connected"
    HELLO = "hello"
    HELLO_NOT_FOR_US = "hello for another peer name"
    HELLO_UNKNOWN_PEER = "hello from an unknown peer"
    STATUS_OK = "status 200"
    STATUS_BAD_VERSION = "status 502"
    STATUS_REFUSED = "status other than 200"
    RESYNC_REQUEST = "resync request"
    RESYNC_FINISHED = "resync finished"
    RESYNC_PARTIAL = "resync partial"
    RESYNC_CONFIRM = "resync confirm"
    HEARTBEAT = "heartbeat"
    ERROR_MESSAGE = "error message"
    DEFINITION = "table definition"
    TOO_MANY_TABLES = "definition over the table limit"
    SWITCH = "table switch"
    UPDATE = "update"
    SKIPPED_UPDATE = "skipped update"
    ACK = "ack"
    UNKNOWN = "unknown message"
    PROTOCOL_ERROR = "protocol error"
    TICK = "tick"
    HANDSHAKE_EXPIRED = "handshake timer expired"
    HEARTBEAT_DUE = "heartbeat due"
    PEER_DEAD = "peer silent too long"
    PEER_STALLED = "peer not reading too long"
    LEARN = "start learning"
    PUSH = "push requested"
    WRITE_PAUSED = "write paused"
    WRITE_RESUMED = "write resumed"
    LOST = "connection lost"
    CLOSE = "close requested"


_MESSAGE_INPUTS: dict[type, _Input] = {
    ResyncRequest: _Input.RESYNC_REQUEST,
    ResyncFinished: _Input.RESYNC_FINISHED,
    ResyncPartial: _Input.RESYNC_PARTIAL,
    ResyncConfirm: _Input.RESYNC_CONFIRM,
    Heartbeat: _Input.HEARTBEAT,
    ErrorMessage: _Input.ERROR_MESSAGE,
    TableDefinition: _Input.DEFINITION,
    TableSwitch: _Input.SWITCH,
    Update: _Input.UPDATE,
    SkippedUpdate: _Input.SKIPPED_UPDATE,
    Ack: _Input.ACK,
    UnknownMessage: _Input.UNKNOWN,
}
_EVENT_INPUTS: dict[type, _Input] = {
    Connected: _Input.CONNECTED,
    StartLearning: _Input.LEARN,
    PushRequested: _Input.PUSH,
    WritePaused: _Input.WRITE_PAUSED,
    WriteResumed: _Input.WRITE_RESUMED,
    ConnectionLost: _Input.LOST,
    CloseRequested: _Input.CLOSE,
}


class PeerSession:
    """One connection with one peer, from the first byte to the close.

    ``role`` is ``"connector"`` (we connected to ``peer``, whose state is ``peers[peer]``) or
    ``"acceptor"`` (the hello will say who it is). ``tables`` gives the tables replicated now
    (the service refreshes them on reload). ``resync`` is this node's own resync.
    """

    def __init__(
        self,
        role: Literal["connector", "acceptor"],
        local: str,
        peers: dict[str, PeerState],
        tables: Callable[[], Iterable[LocalTable]],
        resync: Resync,
        now: float,
        *,
        peer: str | None = None,
        pid: int = 0,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        if role == "connector" and peer not in peers:
            raise ValueError(f"connector for unknown peer {peer!r}")
        self.role = role
        self.local = local
        self.peers = peers
        self.peer: PeerState | None = peers[peer] if peer is not None else None
        self._tables = tables
        self.resync = resync
        self.pid = pid
        self.state = State.CONNECTING if role == "connector" else State.AWAIT_HELLO
        self.version = self.peer.version if self.peer is not None else VERSION
        self.decoder = Decoder(
            "status" if role == "connector" else "hello", max_message_size=max_message_size
        )
        self.encoder = Encoder()
        self.started = now
        self.now = now
        self.last_sent = now
        self.last_received_at = now
        self.paused_since: float | None = None
        self.close_reason = ""
        # Per session, by their table id: what the peer defined, and our table for it (None when
        # the table is not shared); the last update id received, and the last one acknowledged.
        self.remote_tables: dict[int, LocalTable | None] = {}
        self._last_received: dict[int, int] = {}
        self._last_acked: dict[int, int] = {}
        self._ack_due = False  # updates received and not acknowledged yet
        self._acks_sent_at = float("-inf")
        self.sent: dict[str, int] = {}  # table name -> last update id sent in this session
        self._acked: dict[str, int] = {}  # table name -> last update id acked in this session
        self.learning = False  # asked this peer for a resync, no answer yet
        self.teaching: dict[str, int] | None = None  # table name -> teach cursor (update id)
        self.teach_done = False  # finished/partial sent, waiting for the confirm

    # -- the one entry point

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` at time ``now``; return the actions to carry out, in order."""
        if isinstance(event, DataReceived):
            return self.receive(event.data, now)
        self.now = now
        actions: list[Action] = []
        if isinstance(event, Tick):
            self._dispatch(self._tick_input(), event, actions)
        else:
            self._dispatch(_EVENT_INPUTS[type(event)], event, actions)
        return actions

    def receive(self, data: bytes, now: float) -> list[Action]:
        """``handle(DataReceived(data), now)`` without the event object: the service calls this
        for every read, often in a process woken from idle, where building an object is
        several microseconds of a peer's propagation lag."""
        self.now = now
        actions: list[Action] = []
        self._receive(data, actions)
        return actions

    def push(self, now: float) -> list[Action]:
        """``handle(PushRequested(), now)`` without the event and the dispatch: the service's push
        step, once per loop iteration in which entries were learned."""
        self.now = now
        actions: list[Action] = []
        if self.state is State.ESTABLISHED:
            self._push(actions)
        return actions

    def push_runs(self, now: float, tables: Iterable[LocalTable]) -> bytes | None:
        """The push step in its usual shape, without actions: the bytes to write when every
        table with new local changes has them all in its run, encoded as they happened, and this
        session has pushed exactly up to where each run starts (b"" when nothing changed).
        None when ``push`` must do it: a 2.0 peer, writes paused, a lesson under way, acks due,
        a session behind, a run that stopped growing."""
        if (
            self.state is not State.ESTABLISHED
            or self.version < VERSION
            or self.paused_since is not None
            or (self.teaching is not None and not self.teach_done)
            or (self._ack_due and now - self._acks_sent_at >= ACK_INTERVAL)
        ):
            return None
        pushed = self.peer.pushed  # type: ignore[union-attr]
        ready = []
        for local in tables:
            last = local.table.update_id
            after = pushed.get(local.name, 0)
            if last <= after:
                continue
            run = local.run
            if run is None or run.base != after or run.last_id != last or run.count >= PUSH_BATCH:
                return None
            ready.append(local)
        if not ready:
            return b""
        out = []
        for local in ready:
            run = local.run
            out.append(self.encoder.run(local.table_id, run))  # type: ignore[arg-type]
            pushed[local.name] = self.sent[local.name] = run.last_id  # type: ignore[union-attr]
            self.peer.updates_sent += run.count  # type: ignore[union-attr]
        self.now = self.last_sent = now
        return out[0] if len(out) == 1 else b"".join(out)

    def _dispatch(self, key: _Input, event: object, actions: list[Action]) -> None:
        try:
            handler, next_state = _TABLE[self.state, key]
        except KeyError:
            raise SessionError(f"{key.value} is not allowed in state {self.state.value}") from None
        self.state = next_state
        handler(self, event, actions)

    def _receive(self, data: bytes, actions: list[Action]) -> None:
        if self.state is State.CLOSED:
            return
        self.decoder.feed(data)
        while self.state is not State.CLOSED:
            if self.state is State.ESTABLISHED:
                # The bulk (pushes, a resync): runs of updates, without an object each, and
                # without _classify and _dispatch, which would give them to _on_update.
                run = self.decoder.plain_updates()
                if run is not None:
                    self.last_received_at = self.peer.last_message = self.now  # type: ignore[union-attr]
                    self._apply_updates(*run)
                    if not self.decoder.buffered:
                        break  # the usual read: updates and nothing else
                    continue
            try:
                message = self.decoder.next_message()
            except ProtocolError as exc:
                self._dispatch(_Input.PROTOCOL_ERROR, exc, actions)
                return
            if message is None:
                break
            self._dispatch(self._classify(message), message, actions)
        if self.state is State.ESTABLISHED:
            self._push(actions)

    def _classify(self, message: object) -> _Input:
        if isinstance(message, Hello):
            if message.remote_peer != self.local:
                return _Input.HELLO_NOT_FOR_US
            if message.local_peer not in self.peers:
                return _Input.HELLO_UNKNOWN_PEER
            return _Input.HELLO
        if isinstance(message, StatusLine):
            if message.code == Status.OK:
                return _Input.STATUS_OK
            if message.code == Status.BAD_VERSION:
                return _Input.STATUS_BAD_VERSION
            return _Input.STATUS_REFUSED
        self.last_received_at = self.now
        if self.peer is not None:
            self.peer.last_message = self.now
        if (
            isinstance(message, TableDefinition)
            and message.table_id not in self.remote_tables
            and len(self.remote_tables) >= MAX_REMOTE_TABLES
        ):
            return _Input.TOO_MANY_TABLES
        return _MESSAGE_INPUTS[type(message)]

    def _tick_input(self) -> _Input:
        now = self.now
        if self.state in (State.CONNECTING, State.AWAIT_STATUS, State.AWAIT_HELLO):
            if now - self.started >= HANDSHAKE_TIMEOUT:
                return _Input.HANDSHAKE_EXPIRED
        elif self.state is State.ESTABLISHED:
            if self.paused_since is not None:
                if now - self.paused_since >= STALLED_AFTER:
                    return _Input.PEER_STALLED
            elif now - self.last_sent >= HEARTBEAT_INTERVAL:
                return _Input.HEARTBEAT_DUE
            if now - self.last_received_at >= DEAD_AFTER:
                return _Input.PEER_DEAD
        return _Input.TICK

    # -- handshake

    def _on_connected(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        hello = Hello(self.peer.name, self.local, self.pid, 1, self.version)
        self._send(self.encoder.encode(hello), actions)

    def _on_hello(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, Hello)
        self.peer = self.peers[event.local_peer]
        self.version = event.version
        # A 2.1 hello clears an earlier downgrade (HAProxy clears PEER_F_DWNGRD the same way).
        self.peer.version = event.version
        self._send(self.encoder.encode(StatusLine(Status.OK)), actions)
        self.peer.direction = "in"
        self._established(actions)

    def _on_hello_refused(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, Hello)
        if event.remote_peer != self.local:
            status = Status.NAME_MISMATCH
            why = f"hello for {event.remote_peer!r}, we are {self.local!r}"
        else:
            status = Status.UNKNOWN_PEER
            why = f"hello from {event.local_peer!r}, not a configured peer"
        self._send(self.encoder.encode(StatusLine(status)), actions)
        self._close(actions, f"refused with {int(status)}: {why}", f"status_{int(status)}")

    def _on_status_ok(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.peer.direction = "out"
        self._established(actions)

    def _on_status_bad_version(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.peer.last_status = Status.BAD_VERSION
        self.peer.version = DOWNGRADED_VERSION
        actions.append(Rejected(Status.BAD_VERSION))
        self._close(actions, "answered 502 (bad version): retrying with 2.0", "status_502")

    def _on_status_refused(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, StatusLine) and self.peer is not None
        self.peer.last_status = event.code
        actions.append(Rejected(event.code))
        self._close(actions, f"refused our hello with {event.code}", f"status_{event.code}")

    def _on_handshake_error(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, ProtocolError)
        if self.role == "acceptor":
            status = event.status if isinstance(event, HandshakeError) else Status.PROTOCOL_ERROR
            self._send(self.encoder.encode(StatusLine(status)), actions)
            self._close(actions, f"bad hello: {event} (answered {int(status)})", "handshake")
        else:
            self._close(actions, f"bad status line: {event}", "handshake")

    def _on_handshake_expired(self, event: object, actions: list[Action]) -> None:
        self._close(actions, f"no handshake within {HANDSHAKE_TIMEOUT:g}s", "handshake_timeout")

    def _established(self, actions: list[Action]) -> None:
        peer = self.peer
        assert peer is not None
        peer.last_status = Status.OK
        if peer.sessions:
            peer.reconnects += 1
        peer.sessions += 1
        peer.established_at = self.now
        peer.last_message = self.now
        self.last_received_at = self.now
        for local in self._tables():
            # Resume after what the peer acknowledged (HAProxy: last_pushed = st->update).
            peer.pushed[local.name] = peer.acked.get(local.name, 0)
            self._send(self.encoder.encode(local.definition(self.version)), actions)
        actions.append(Established(peer.name, self.version))
        if self.resync.assign(peer.name):
            self._on_learn(None, actions)
        self._push(actions)

    # -- control messages

    def _on_learn(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.learning = True
        self._send(self.encoder.encode(ResyncRequest()), actions)
        actions.append(Notice(f"asking peer {self.peer.name} for a full resync"))

    def _on_resync_request(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.teaching = {local.name: 0 for local in self._tables()}
        self.teach_done = False
        for name in self.teaching:
            # What it acknowledged in earlier sessions it may have lost (it restarted: that is
            # why it asks); what it acknowledged in this one it has.
            self.peer.acked[name] = self._acked.get(name, 0)
        actions.append(Notice(f"peer {self.peer.name} asked for a full resync: teaching it"))

    def _on_resync_end(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self._send(self.encoder.encode(ResyncConfirm()), actions)
        if not self.learning:
            return
        self.learning = False
        if isinstance(event, ResyncFinished):
            self.resync.finished(self.peer.name, self.now)
            actions.append(Notice(f"full resync from peer {self.peer.name} finished"))
        else:
            self.resync.partial(self.peer.name, self.now)
            actions.append(
                Notice(f"full resync from peer {self.peer.name} partial: it is not up to date")
            )

    def _on_resync_confirm(self, event: object, actions: list[Action]) -> None:
        if self.teach_done:
            self.teaching = None
            self.teach_done = False

    def _on_heartbeat(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.peer.last_heartbeat = self.now

    def _on_error_message(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, ErrorMessage)
        kind = "protocol" if event.error == ErrorType.PROTOCOL else "size limit"
        self._close(actions, f"the peer reported a {kind} error", "peer_error")

    def _on_unknown(self, event: object, actions: list[Action]) -> None:
        assert self.peer is not None
        self.peer.count("unknown_message")

    def _on_protocol_error(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, ProtocolError)
        kind = "size_limit" if event.error == ErrorType.SIZE_LIMIT else "protocol"
        self._send(self.encoder.encode(ErrorMessage(event.error)), actions)
        self._close(actions, f"{kind.replace('_', ' ')} error: {event}", kind)

    # -- stick-table messages

    def _on_definition(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, TableDefinition) and self.peer is not None
        peer = self.peer
        local = next((t for t in self._tables() if t.name == event.name), None)
        known = event.table_id in self.remote_tables
        problem = _mismatch(event, local)
        if problem is None:
            self.remote_tables[event.table_id] = local
        else:
            self.remote_tables[event.table_id] = None
            self.decoder.skip_table(event.table_id)
        if known and peer.remote_definitions.get(event.name) == event:
            return  # the same definition again (HAProxy re-sends it at each table switch)
        if (
            event.name in peer.remote_definitions
            or len(peer.remote_definitions) < MAX_REMOTE_TABLES
        ):
            peer.remote_definitions[event.name] = event
        if problem is None:
            peer.mismatches.pop(event.name, None)
        else:
            peer.count("table_mismatch" if local is not None else "unknown_table")
            if peer.mismatches.get(event.name) != problem:
                peer.mismatches[event.name] = problem
                actions.append(Notice(f"peer {peer.name}: table {event.name!r} {problem}"))
            return
        assert local is not None
        ours_ms = int(local.table.expire * 1000)
        if event.expire_ms is not None and event.expire_ms != ours_ms:
            actions.append(
                Notice(
                    f"peer {peer.name}: table {event.name!r} expires after {event.expire_ms}ms "
                    f"there, {ours_ms}ms here (synced anyway)"
                )
            )

    def _on_too_many_tables(self, event: object, actions: list[Action]) -> None:
        self._send(self.encoder.encode(ErrorMessage(ErrorType.PROTOCOL)), actions)
        self._close(actions, f"more than {MAX_REMOTE_TABLES} tables defined", "too_many_tables")

    def _on_switch(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, TableSwitch) and self.peer is not None
        if event.table_id not in self.remote_tables:
            self.peer.count("unknown_table_id")

    def _on_update(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, Update)
        change = (event.update_id, event.key, event.server_id, event.expire_ms)
        self._apply_updates(event.table_id, (change,))

    def _apply_updates(
        self, table_id: int, updates: Sequence[tuple[int, object, int | None, int | None]]
    ) -> None:
        """Store received updates of one table: (update id, key, server id, expiry in ms)."""
        peer = self.peer
        assert peer is not None
        peer.updates_received += len(updates)
        last_id = updates[-1][0]
        self._last_received[table_id] = last_id
        self._ack_due = True
        local = self.remote_tables.get(table_id)
        if local is None:  # a table reload stopped replicating while the session ran
            peer.count("unshared_table", len(updates))
            return
        peer.received[local.name] = last_id
        server_ids, apply_remote = local.server_ids, local.table.apply_remote
        applied = 0
        for _, key, server_id, expire_ms in updates:
            if server_id not in server_ids:
                peer.count("unknown_server")
                continue
            try:
                apply_remote(key, server_id, expire_ms)  # type: ignore[arg-type]
            except (ValueError, TypeError):  # e.g. a configured server id above HAProxy's range
                peer.count("rejected")
                continue
            applied += 1
        peer.updates_applied += applied

    def _on_skipped_update(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, SkippedUpdate) and self.peer is not None
        self.peer.updates_received += 1
        if event.table_id is None:
            self.peer.count("unknown_table_id")
            return
        self.peer.count("unshared_table")

    def _on_ack(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, Ack) and self.peer is not None
        peer = self.peer
        local = next((t for t in self._tables() if t.table_id == event.table_id), None)
        if local is None:
            peer.count("unknown_table_id")
            return
        sent = self.sent.get(local.name)
        behind = (sent - event.update_id) & _U32 if sent is not None else _HALF
        if behind >= _HALF:
            peer.count("bad_ack")  # acknowledges an update this session never sent
            return
        acked = sent - behind
        self._acked[local.name] = max(acked, self._acked.get(local.name, 0))
        if acked > peer.acked.get(local.name, 0):
            peer.acked[local.name] = acked

    # -- timers, writing, closing

    def _on_tick(self, event: object, actions: list[Action]) -> None:
        if self.state is State.ESTABLISHED:
            # The acks held back, and a safety net: whatever a lost wake-up left pending.
            self._push(actions, flush_acks=True)

    def _on_heartbeat_due(self, event: object, actions: list[Action]) -> None:
        self._send(self.encoder.encode(Heartbeat()), actions)

    def _on_dead(self, event: object, actions: list[Action]) -> None:
        self._close(actions, f"nothing received for {DEAD_AFTER:g}s", "dead")

    def _on_stalled(self, event: object, actions: list[Action]) -> None:
        self._close(actions, f"the peer has not read for {STALLED_AFTER:g}s", "stalled")

    def _on_push(self, event: object, actions: list[Action]) -> None:
        self._push(actions)

    def _on_write_paused(self, event: object, actions: list[Action]) -> None:
        if self.paused_since is None:
            self.paused_since = self.now

    def _on_write_resumed(self, event: object, actions: list[Action]) -> None:
        self.paused_since = None
        if self.state is State.ESTABLISHED:
            self._push(actions)

    def _on_lost(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, ConnectionLost)
        self._ended(event.reason)

    def _on_close(self, event: object, actions: list[Action]) -> None:
        assert isinstance(event, CloseRequested)
        self._close(actions, event.reason, None)

    def _ignore(self, event: object, actions: list[Action]) -> None:
        pass

    def _close(self, actions: list[Action], reason: str, error: str | None) -> None:
        actions.append(Close(reason, error))
        self._ended(reason)

    def _ended(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        if self.learning and self.peer is not None:
            self.learning = False
            self.resync.aborted(self.peer.name, self.now)

    # -- output

    def _send(self, data: bytes, actions: list[Action]) -> None:
        self.last_sent = self.now
        actions.append(Send(data))

    def _push(self, actions: list[Action], flush_acks: bool = False) -> None:
        """Acks for what arrived (at most every ACK_INTERVAL, unless ``flush_acks``), then
        updates (the lesson while teaching), up to PUSH_BATCH."""
        out: list[bytes] = []
        if self._ack_due and (flush_acks or self.now - self._acks_sent_at >= ACK_INTERVAL):
            self._ack_due = False
            self._acks_sent_at = self.now
            for table_id, update_id in self._last_received.items():
                if self._last_acked.get(table_id) != update_id:
                    self._last_acked[table_id] = update_id
                    if self.remote_tables.get(table_id) is not None:
                        out.append(self.encoder.encode(Ack(table_id, update_id)))
        if self.paused_since is None:
            if self.teaching is not None and not self.teach_done:
                budget = self._teach({local.name: local for local in self._tables()}, out)
            else:
                budget = self._push_changes(self._tables(), out)
            if budget <= 0:
                actions.append(MorePending())
        if out:
            self._send(b"".join(out), actions)

    def _push_changes(self, tables: Iterable[LocalTable], out: list[bytes]) -> int:
        peer = self.peer
        assert peer is not None
        budget = PUSH_BATCH
        timed = self.version >= VERSION
        for local in tables:
            after = peer.pushed.get(local.name, 0)
            if local.table.update_id <= after:
                continue
            if budget <= 0:
                break
            run = local.run
            if run is not None and run.count and after == run.base and timed:
                # Up to date at the start of the iteration: its changes are encoded already.
                out.append(self.encoder.run(local.table_id, run))
                after = peer.pushed[local.name] = self.sent[local.name] = run.last_id
                peer.updates_sent += run.count
                budget -= run.count
                if local.table.update_id <= after or budget <= 0:
                    continue
            limit = budget
            changes = local.table.log_since(after, limit=limit)
            self._write_updates(local, changes, out)
            budget -= len(changes)
            if len(changes) < limit:
                peer.pushed[local.name] = local.table.update_id  # the rest had expired
            else:
                peer.pushed[local.name] = changes[-1][0]
        return budget

    def _teach(self, tables: dict[str, LocalTable], out: list[bytes]) -> int:
        teaching = self.teaching
        peer = self.peer
        assert teaching is not None and peer is not None
        budget = PUSH_BATCH
        for name in list(teaching):
            local = tables.get(name)
            if local is None:  # no longer replicated (reload)
                del teaching[name]
                continue
            if budget <= 0:
                break
            limit = budget
            changes = local.table.log_since(teaching[name], limit=limit, include_remote=True)
            self._write_updates(local, changes, out)
            budget -= len(changes)
            if len(changes) < limit:
                del teaching[name]
                peer.pushed[name] = local.table.update_id  # every local entry was in the lesson
            else:
                teaching[name] = changes[-1][0]
        if not teaching:
            self.teach_done = True
            out.append(
                self.encoder.encode(ResyncFinished() if self.resync.done else ResyncPartial())
            )
        return budget if teaching else max(budget, 1)

    def _write_updates(
        self, local: LocalTable, changes: list[tuple[int, Key, int, float]], out: list[bytes]
    ) -> None:
        """``changes`` (``StickTable.log_since``) as update messages: timed, carrying the life
        left, towards a 2.1 peer."""
        if not changes:
            return
        timed = self.version >= VERSION
        out.append(self.encoder.updates(local.table_id, changes, timed=timed))
        self.sent[local.name] = changes[-1][0]
        assert self.peer is not None
        self.peer.updates_sent += len(changes)


def _mismatch(event: TableDefinition, local: LocalTable | None) -> str | None:
    """Why a peer's table cannot be synced with ours, or None if it can."""
    if local is None:
        return "is not replicated here: not synced"
    ours = local.definition(VERSION)
    if (event.key_type, event.key_length) != (ours.key_type, ours.key_length):
        return (
            f"has key type {event.key_type} length {event.key_length} there, "
            f"key type {ours.key_type} length {ours.key_length} here: not synced"
        )
    if DataType.SERVER_ID not in event.data_types:
        return "carries no server_id: not synced"
    problem = event.layout_problem()
    if problem is not None:
        return f"cannot be decoded ({problem}): not synced"
    return None


_Handler = Callable[[PeerSession, object, list[Action]], None]
_I, _S, _P = _Input, State, PeerSession

# (state, input) -> (handler, next state)
_TABLE: dict[tuple[State, _Input], tuple[_Handler, State]] = {
    (_S.CONNECTING, _I.CONNECTED): (_P._on_connected, _S.AWAIT_STATUS),
    (_S.AWAIT_HELLO, _I.HELLO): (_P._on_hello, _S.ESTABLISHED),
    (_S.AWAIT_HELLO, _I.HELLO_NOT_FOR_US): (_P._on_hello_refused, _S.CLOSED),
    (_S.AWAIT_HELLO, _I.HELLO_UNKNOWN_PEER): (_P._on_hello_refused, _S.CLOSED),
    (_S.AWAIT_HELLO, _I.PROTOCOL_ERROR): (_P._on_handshake_error, _S.CLOSED),
    (_S.AWAIT_STATUS, _I.STATUS_OK): (_P._on_status_ok, _S.ESTABLISHED),
    (_S.AWAIT_STATUS, _I.STATUS_BAD_VERSION): (_P._on_status_bad_version, _S.CLOSED),
    (_S.AWAIT_STATUS, _I.STATUS_REFUSED): (_P._on_status_refused, _S.CLOSED),
    (_S.AWAIT_STATUS, _I.PROTOCOL_ERROR): (_P._on_handshake_error, _S.CLOSED),
    (_S.ESTABLISHED, _I.RESYNC_REQUEST): (_P._on_resync_request, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.RESYNC_FINISHED): (_P._on_resync_end, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.RESYNC_PARTIAL): (_P._on_resync_end, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.RESYNC_CONFIRM): (_P._on_resync_confirm, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.HEARTBEAT): (_P._on_heartbeat, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.ERROR_MESSAGE): (_P._on_error_message, _S.CLOSED),
    (_S.ESTABLISHED, _I.DEFINITION): (_P._on_definition, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.TOO_MANY_TABLES): (_P._on_too_many_tables, _S.CLOSED),
    (_S.ESTABLISHED, _I.SWITCH): (_P._on_switch, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.UPDATE): (_P._on_update, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.SKIPPED_UPDATE): (_P._on_skipped_update, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.ACK): (_P._on_ack, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.UNKNOWN): (_P._on_unknown, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.PROTOCOL_ERROR): (_P._on_protocol_error, _S.CLOSED),
    (_S.ESTABLISHED, _I.HEARTBEAT_DUE): (_P._on_heartbeat_due, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.PEER_DEAD): (_P._on_dead, _S.CLOSED),
    (_S.ESTABLISHED, _I.PEER_STALLED): (_P._on_stalled, _S.CLOSED),
    (_S.ESTABLISHED, _I.LEARN): (_P._on_learn, _S.ESTABLISHED),
    (_S.ESTABLISHED, _I.PUSH): (_P._on_push, _S.ESTABLISHED),
}
_OPEN = (_S.CONNECTING, _S.AWAIT_STATUS, _S.AWAIT_HELLO, _S.ESTABLISHED)
for _state in _OPEN:
    # The service may tick, pause, resume or close us in any open state, and the connection may
    # drop; a push request before the handshake waits for it.
    _TABLE[_state, _I.TICK] = (_P._on_tick, _state)
    _TABLE[_state, _I.WRITE_PAUSED] = (_P._on_write_paused, _state)
    _TABLE[_state, _I.WRITE_RESUMED] = (_P._on_write_resumed, _state)
    _TABLE[_state, _I.LOST] = (_P._on_lost, _S.CLOSED)
    _TABLE[_state, _I.CLOSE] = (_P._on_close, _S.CLOSED)
    _TABLE.setdefault((_state, _I.PUSH), (_P._ignore, _state))
    if _state is not _S.ESTABLISHED:
        _TABLE[_state, _I.HANDSHAKE_EXPIRED] = (_P._on_handshake_expired, _S.CLOSED)
# Once closed, whatever still arrives is ignored.
for _input in _Input:
    _TABLE[_S.CLOSED, _input] = (_P._ignore, _S.CLOSED)
