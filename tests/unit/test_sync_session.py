"""The peers-protocol session (ha/sync/session.py), without sockets: every row of its table.

Two sessions are wired back to back (``Link``): what one sends is fed to the other, at a clock
the test moves. Expected bytes on the wire come from the codec, whose own tests check them
against HAProxy's documents; here the question is what the session decides.
"""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.persist.table import StickTable
from ha.sync import session as s
from ha.sync.codec import (
    Ack,
    DataType,
    Decoder,
    Encoder,
    ErrorMessage,
    ErrorType,
    Heartbeat,
    Hello,
    KeyType,
    ResyncConfirm,
    ResyncFinished,
    ResyncPartial,
    ResyncRequest,
    StatusLine,
    TableDefinition,
    TableSwitch,
    UnknownMessage,
    Update,
    UpdateRun,
)
from ha.sync.session import (
    Close,
    CloseRequested,
    Connected,
    ConnectionLost,
    DataReceived,
    Established,
    LocalTable,
    MorePending,
    Notice,
    PeerSession,
    PeerState,
    PushRequested,
    Rejected,
    Resync,
    Send,
    SessionError,
    StartLearning,
    State,
    Tick,
    WritePaused,
    WriteResumed,
)

pytestmark = pytest.mark.unit

APP = TableDefinition(1, "app", KeyType.STRING, 33, (DataType.SERVER_ID,), 1_800_000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """One side: its tables, its peers' states and its own resync."""

    def __init__(self, name: str, peer: str, clock: Clock, resync_needed: bool = True) -> None:
        self.name = name
        self.clock = clock
        self.table = StickTable("app", "string", 1000, 1800, clock=clock)
        self.tables = [LocalTable("app", self.table, 1, frozenset({1, 2}))]
        self.peers = {peer: PeerState(peer, "127.0.0.1:7777")}
        self.peer = self.peers[peer]
        self.resync = Resync(clock.now, needed=resync_needed)

    def session(self, role: str) -> PeerSession:
        peer = next(iter(self.peers)) if role == "connector" else None
        return PeerSession(
            role,
            self.name,
            self.peers,
            lambda: self.tables,
            self.resync,
            self.clock.now,
            peer=peer,
            pid=7,
        )


def sent(actions: list) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def decoded(actions: list, expect: str = "messages") -> list:
    decoder = Decoder(expect)
    decoder.feed(sent(actions))
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def closes(actions: list) -> list[Close]:
    return [a for a in actions if isinstance(a, Close)]


class Link:
    """lb1 (connector) and lb2 (acceptor), wired together."""

    def __init__(self, lb1_needs_resync: bool = False, lb2_needs_resync: bool = False) -> None:
        self.clock = Clock()
        self.lb1 = Node("lb1", "lb2", self.clock, lb1_needs_resync)
        self.lb2 = Node("lb2", "lb1", self.clock, lb2_needs_resync)
        self.a = self.lb1.session("connector")
        self.b = self.lb2.session("acceptor")
        self.actions: dict[str, list] = {"a": [], "b": []}
        # Everything each side wrote, decoded as its peer reads it.
        self.wire = {"a": Decoder("hello"), "b": Decoder("status")}

    def feed(self, side: str, event) -> list:
        session = self.a if side == "a" else self.b
        actions = session.handle(event, self.clock.now)
        self.actions[side] += actions
        self.wire[side].feed(sent(actions))
        return actions

    def said(self, side: str, event) -> list:
        """Feed ``event``; return the messages the side wrote in answer."""
        self.feed(side, event)
        out = []
        while (message := self.wire[side].next_message()) is not None:
            out.append(message)
        return out

    def drain(self, side: str) -> list:
        out = []
        while (message := self.wire[side].next_message()) is not None:
            out.append(message)
        return out

    def run(self, side: str, event) -> None:
        """Feed ``event`` to one side and carry bytes back and forth until both are quiet."""
        self.drain("a")
        self.drain("b")
        pending = [(side, event)]
        while pending:
            who, ev = pending.pop(0)
            data = sent(self.feed(who, ev))
            if data:
                pending.append(("b" if who == "a" else "a", DataReceived(data)))

    def connect(self) -> None:
        self.run("a", Connected())
        assert self.a.state is State.ESTABLISHED and self.b.state is State.ESTABLISHED
        self.drain("a")
        self.drain("b")


# -- handshake ------------------------------------------------------------------------------------


def test_the_connector_says_hello_and_both_sides_establish_and_announce_their_tables():
    link = Link()
    hello = link.feed("a", Connected())
    assert sent(hello) == b"HAProxyS 2.1\nlb2\nlb1 7 1\n"
    assert link.a.state is State.AWAIT_STATUS
    answer = link.feed("b", DataReceived(sent(hello)))
    assert sent(answer).startswith(b"200\n")
    assert Established("lb1", (2, 1)) in answer
    assert decoded([Send(sent(answer)[4:])]) == [APP]
    reply = link.feed("a", DataReceived(sent(answer)))
    assert Established("lb2", (2, 1)) in reply
    assert decoded(reply) == [APP]
    assert link.lb1.peer.direction == "out" and link.lb2.peer.direction == "in"
    assert link.lb1.peer.last_status == 200 and link.lb1.peer.sessions == 1


@pytest.mark.parametrize(
    ("hello", "status", "error"),
    [
        (b"HAProxyS 2.1\nsomeone\nlb1 1 1\n", b"503\n", "status_503"),
        (b"HAProxyS 2.1\nlb2\nintruder 1 1\n", b"504\n", "status_504"),
        (b"HAProxyS 2.2\nlb2\nlb1 1 1\n", b"502\n", "handshake"),
        (b"HAProxyS 2.1\nlb2\nlb1 x\n", b"501\n", "handshake"),
        (b"SSH-2.0-OpenSSH\n", b"501\n", "handshake"),
    ],
)
def test_the_acceptor_refuses_bad_hellos_with_haproxys_status_codes(hello, status, error):
    link = Link()
    actions = link.feed("b", DataReceived(hello))
    assert sent(actions) == status
    assert [c.error for c in closes(actions)] == [error]
    assert link.b.state is State.CLOSED
    assert link.feed("b", DataReceived(b"more")) == []  # closed: ignored


def test_a_502_downgrades_the_next_hello_to_2_0_without_timed_updates_or_expiry():
    link = Link()
    link.feed("a", Connected())
    actions = link.feed("a", DataReceived(b"502\n"))
    assert Rejected(502) in actions and closes(actions)[0].error == "status_502"
    assert link.lb1.peer.version == (2, 0)
    link.lb1.table.learn(b"k", 1)
    second = link.lb1.session("connector")
    assert sent(second.handle(Connected(), link.clock.now)) == b"HAProxyS 2.0\nlb2\nlb1 7 1\n"
    out = second.handle(DataReceived(b"200\n"), link.clock.now)
    definition, update = decoded(out)
    assert definition.expire_ms is None
    assert update == Update(1, 1, b"k", 1, None)


def test_a_2_0_hello_is_accepted_and_served_in_2_0():
    link = Link()
    actions = link.feed("b", DataReceived(b"HAProxyS 2.0\nlb2\nlb1 1 1\n"))
    assert Established("lb1", (2, 0)) in actions
    assert decoded([Send(sent(actions)[4:])])[0].expire_ms is None


@pytest.mark.parametrize(("status", "error"), [(b"503\n", "status_503"), (b"300\n", "status_300")])
def test_the_connector_gives_up_on_a_refusal(status, error):
    link = Link()
    link.feed("a", Connected())
    actions = link.feed("a", DataReceived(status))
    assert Rejected(int(status)) in actions and closes(actions)[0].error == error
    assert link.lb1.peer.last_status == int(status)


def test_a_bad_status_line_closes():
    link = Link()
    link.feed("a", Connected())
    actions = link.feed("a", DataReceived(b"hello?\n"))
    assert closes(actions)[0].error == "handshake" and sent(actions) == b""


@pytest.mark.parametrize("role", ["connector", "acceptor"])
def test_no_handshake_within_5s(role):
    link = Link()
    side = "a" if role == "connector" else "b"
    if role == "connector":
        link.feed("a", Connected())
    link.clock.now += 4.9
    assert link.feed(side, Tick()) == []
    link.clock.now += 0.1
    assert closes(link.feed(side, Tick()))[0].error == "handshake_timeout"


def test_a_connection_that_never_comes_up_times_out_too():
    link = Link()
    link.clock.now += 5
    assert closes(link.feed("a", Tick()))[0].error == "handshake_timeout"


def test_events_outside_the_table_are_bugs():
    with pytest.raises(SessionError, match="connected is not allowed in state await hello"):
        Link().feed("b", Connected())
    link = Link()
    link.connect()
    with pytest.raises(SessionError):
        link.feed("a", Connected())


def test_every_input_the_network_or_the_service_can_make_is_in_the_table():
    network = {s._MESSAGE_INPUTS[t] for t in s._MESSAGE_INPUTS} | {s._Input.PROTOCOL_ERROR}
    service = {s._Input.TICK, s._Input.PUSH, s._Input.WRITE_PAUSED, s._Input.WRITE_RESUMED}
    service |= {s._Input.LOST, s._Input.CLOSE}
    for state in State:
        for key in service:
            assert (state, key) in s._TABLE, (state, key)
    for key in network:
        assert (State.ESTABLISHED, key) in s._TABLE, key
    for key in s._Input:
        assert (State.CLOSED, key) in s._TABLE


# -- updates and acks -----------------------------------------------------------------------------


def test_local_changes_are_pushed_in_order_applied_there_and_never_pushed_back():
    link = Link()
    link.connect()
    link.lb1.table.learn(b"alice", 1)
    link.lb1.table.learn(b"bob", 2)
    link.lb1.table.learn(b"alice", 2)  # a change of server: one entry, at its latest id
    out = link.feed("a", PushRequested())
    assert link.drain("a") == [
        Update(1, 2, b"bob", 2, 1_800_000),
        Update(1, 3, b"alice", 2, 1_800_000),
    ]
    back = link.feed("b", DataReceived(sent(out)))
    assert {e.key: e.server_id for e in link.lb2.table} == {b"bob": 2, b"alice": 2}
    assert decoded(back) == [Ack(1, 3)]  # acknowledged, and nothing pushed back
    link.feed("a", DataReceived(sent(back)))
    assert link.lb1.peer.acked["app"] == 3 and link.lb1.peer.pushed["app"] == 3
    assert link.lb2.peer.updates_applied == 2 and link.lb2.peer.received["app"] == 3
    assert sent(link.feed("b", PushRequested())) == b""


def test_acks_are_held_back_while_updates_stream_in_and_sent_at_the_next_tick():
    link = Link()
    link.connect()
    enc = Encoder()
    data = enc.encode(APP) + enc.encode(Update(1, 1, b"a", 1, 1000))
    assert decoded(link.feed("b", DataReceived(data))) == [Ack(1, 1)]  # the first at once
    link.clock.now += s.ACK_INTERVAL / 2
    held = link.feed("b", DataReceived(enc.encode(Update(1, 2, b"b", 1, 1000))))
    assert decoded(held) == []
    link.clock.now += s.ACK_INTERVAL / 4
    assert decoded(link.feed("b", Tick())) == [Ack(1, 2)]  # the tick sends what was held
    assert decoded(link.feed("b", Tick())) == []  # once
    more = enc.encode(Update(1, 3, b"c", 1, 1000)) + enc.encode(Update(1, 4, b"d", 1, 1000))
    assert decoded(link.feed("b", DataReceived(more))) == []  # the last ack is too recent
    link.clock.now += s.ACK_INTERVAL
    late = link.feed("b", DataReceived(enc.encode(Update(1, 5, b"e", 2, 1000))))
    assert decoded(late) == [Ack(1, 5)]
    assert len(link.lb2.table) == 5


def test_a_session_up_to_date_sends_the_tables_run_and_one_behind_walks_the_log():
    link = Link()
    link.connect()
    local = link.lb1.tables[0]
    table = link.lb1.table
    table.learn(b"old", 1)
    link.run("a", PushRequested())  # up to date: pushed == 1
    local.run = UpdateRun(local.definition(s.VERSION), table.update_id, s.PUSH_BATCH)
    table.on_local_change = local.run.add
    for key in (b"k1", b"k2", b"k3"):
        table.learn(key, 2)
    out = link.feed("a", PushRequested())
    assert sent(out) == local.run.take()  # the run as it is, nothing encoded again
    assert link.lb1.peer.pushed["app"] == 4 and link.lb1.peer.updates_sent == 4
    link.drain("a")
    link.feed("b", DataReceived(sent(out)))
    assert {e.key for e in link.lb2.table} == {b"old", b"k1", b"k2", b"k3"}
    assert next(iter(link.lb2.table)).expires_in == 1800
    # A change after the run was taken, in the same iteration: from the log, incremental.
    table.learn(b"k4", 1)
    assert link.said("a", PushRequested()) == [Update(1, 5, b"k4", 1, 1_800_000)]
    # A session that is behind the run's base walks the log instead.
    local.run.clear(table.update_id)
    table.learn(b"k5", 1)
    link.lb1.peer.pushed["app"] = 4  # k4 (id 5) not pushed: behind the base, 5
    assert [m.key for m in link.said("a", PushRequested())] == [b"k4", b"k5"]


def push_as_the_service_does(link: Link, quick: bool) -> bytes:
    """One iteration's push on lb1: ``push_runs`` when ``quick`` (the general step when it
    declines), else the general step alone; then the run is emptied, as the service does."""
    local, now = link.lb1.tables[0], link.clock.now
    data = link.a.push_runs(now, link.lb1.tables) if quick else None
    if data is None:
        data = sent(link.a.push(now))
    if local.run is not None:
        local.run.clear(local.table.update_id)
    return data


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("learn"), st.sampled_from([b"a", b"b", b"c", b"d"]), st.integers(1, 2)
            ),
            st.tuples(st.just("push")),
            st.tuples(st.just("peer update"), st.sampled_from([b"x", b"y"])),
            st.tuples(st.just("time"), st.sampled_from([0.01, s.ACK_INTERVAL, 3.0])),
            st.tuples(st.sampled_from(["pause", "resume", "hook", "unhook"])),
        ),
        max_size=40,
    )
)
def test_the_quick_push_writes_what_the_general_push_step_would(ops):
    """Two identical pairs go through the same iterations; lb1 of one pushes with
    ``push_runs`` whenever it accepts, the other always through the general step. The bytes
    written and the peer's positions must never differ. A push step takes 3 updates at most,
    so that sessions fall behind their run."""
    batch = s.PUSH_BATCH
    s.PUSH_BATCH = 3
    try:
        quick_and_general_push(ops)
    finally:
        s.PUSH_BATCH = batch


def quick_and_general_push(ops: list[tuple]) -> None:
    links = [Link(), Link()]
    remote = Encoder()
    remote_wire = remote.encode(APP)
    for link in links:
        link.connect()
        local = link.lb1.tables[0]
        local.run = UpdateRun(local.definition(s.VERSION), local.table.update_id, 5)
    for step, op in enumerate(ops):
        if op[0] == "peer update":  # something for lb1 to acknowledge
            remote_wire += remote.encode(Update(1, 100 + step, op[1], 1, 1000))
        outputs = []
        for quick, link in zip((True, False), links, strict=True):
            local, table = link.lb1.tables[0], link.lb1.table
            if op[0] == "learn":
                table.learn(op[1], op[2])
            elif op[0] == "push":
                outputs.append(push_as_the_service_does(link, quick))
            elif op[0] == "peer update":
                outputs.append(sent(link.a.handle(DataReceived(remote_wire), link.clock.now)))
            elif op[0] == "time":
                link.clock.now += op[1]
            elif op[0] == "pause":
                link.a.handle(WritePaused(), link.clock.now)
            elif op[0] == "resume":
                outputs.append(sent(link.a.handle(WriteResumed(), link.clock.now)))
            elif op[0] == "hook":  # a 2.1 peer: the table's changes go to its run
                table.on_local_change = local.run.add  # type: ignore[union-attr]
            elif op[0] == "unhook":
                table.on_local_change = None
        if op[0] == "peer update":
            remote_wire = b""
        if outputs:
            assert outputs[0] == outputs[1]
        states = [
            (link.lb1.peer.pushed, link.a.sent, link.lb1.peer.updates_sent, link.a.last_sent)
            for link in links
        ]
        assert states[0] == states[1]


def test_the_quick_push_declines_what_only_the_general_step_does():
    link = Link()
    link.connect()
    local, table, now = link.lb1.tables[0], link.lb1.table, link.clock.now
    tables = link.lb1.tables
    local.run = UpdateRun(local.definition(s.VERSION), table.update_id, s.PUSH_BATCH)
    assert link.a.push_runs(now, tables) == b""  # nothing changed
    table.on_local_change = local.run.add
    table.learn(b"k1", 1)
    assert link.a.push_runs(now, tables) == local.run.take()
    local.run.clear(table.update_id)
    table.on_local_change = None
    table.learn(b"k2", 1)  # not in the run
    assert link.a.push_runs(now, tables) is None
    link.a.push(now)
    local.run.clear(table.update_id)
    table.on_local_change = local.run.add
    table.learn(b"k3", 1)
    link.a.handle(WritePaused(), now)
    assert link.a.push_runs(now, tables) is None  # paused: the general step holds the updates
    link.a.handle(WriteResumed(), now)  # sends k3
    local.run.clear(table.update_id)
    table.learn(b"k4", 1)
    link.a.version = (2, 0)
    assert link.a.push_runs(now, tables) is None  # a 2.0 peer: no timed updates
    link.a.version = s.VERSION
    link.a.teaching, link.a.teach_done = {"app": 0}, False  # a lesson under way
    assert link.a.push_runs(now, tables) is None
    link.a.teaching, link.a.teach_done = None, True
    assert link.a.push_runs(now, tables) == local.run.take()


def test_timed_updates_carry_the_remaining_life():
    link = Link()
    link.connect()
    link.lb1.table.learn(b"k", 1)
    link.clock.now += 600
    update = link.said("a", PushRequested())[0]
    assert update.expire_ms == 1_200_000
    enc = Encoder()
    link.feed("b", DataReceived(enc.encode(APP) + enc.encode(update)))
    assert round(next(iter(link.lb2.table)).expires_in) == 1200


def test_a_new_session_resumes_after_the_last_acknowledged_update():
    link = Link()
    link.connect()
    for key in (b"a", b"b", b"c"):
        link.lb1.table.learn(key, 1)
    link.run("a", PushRequested())
    assert link.lb1.peer.acked["app"] == 3
    link.feed("a", ConnectionLost("gone"))
    link.lb1.table.learn(b"d", 2)
    again = link.lb1.session("connector")
    again.handle(Connected(), link.clock.now)
    out = again.handle(DataReceived(b"200\n"), link.clock.now)
    assert [m for m in decoded(out) if isinstance(m, Update)] == [Update(1, 4, b"d", 2, 1_800_000)]
    assert link.lb1.peer.reconnects == 1


def test_a_push_stops_at_its_batch_and_asks_to_be_called_again(monkeypatch):
    monkeypatch.setattr(s, "PUSH_BATCH", 2)
    link = Link()
    link.connect()
    for key in (b"a", b"b", b"c"):
        link.lb1.table.learn(key, 1)
    first = link.feed("a", PushRequested())
    assert MorePending() in first and len(link.drain("a")) == 2
    second = link.feed("a", PushRequested())
    assert MorePending() not in second and [m.key for m in link.drain("a")] == [b"c"]


def test_updates_naming_unknown_servers_or_refused_by_the_table_are_skipped_and_counted():
    link = Link()
    link.connect()
    link.lb2.tables[0].server_ids = frozenset({1, 2**31 + 5})
    enc = Encoder()
    data = enc.encode(APP) + enc.encode(Update(1, 1, b"x", 9, 1000))
    data += enc.encode(Update(1, 2, b"y", 2**31 + 5, 1000))
    out = link.feed("b", DataReceived(data))
    assert link.lb2.peer.errors == {"unknown_server": 1, "rejected": 1}
    assert len(link.lb2.table) == 0
    assert decoded(out) == [Ack(1, 2)]  # skipped, but acknowledged: resending would not help


def test_updates_of_undefined_or_unshared_tables_are_skipped_and_counted():
    link = Link()
    # An update before any definition: table id unknown.
    hello = Encoder().encode(Hello("lb2", "lb1", 1))
    update = bytes((10, 0x80, 7)) + (5).to_bytes(4, "big") + b"\x01x\x01"
    link.feed("b", DataReceived(hello + update))
    assert link.lb2.peer.errors == {"unknown_table_id": 1}
    other = Encoder()
    link.feed(
        "b",
        DataReceived(
            other.encode(TableDefinition(4, "other", KeyType.STRING, 33, (0,), 1000))
            + other.encode(Update(4, 1, b"x", 1, 1000))
            + bytes((10, 0x83, 1, 9))  # a switch to a table id never defined
        ),
    )
    assert link.lb2.peer.errors == {"unknown_table_id": 2, "unknown_table": 1, "unshared_table": 1}
    assert len(link.lb2.table) == 0


@pytest.mark.parametrize(
    ("definition", "why"),
    [
        (TableDefinition(3, "app", KeyType.STRING, 65, (0,), 1_800_000), "length 65 there"),
        (TableDefinition(3, "app", KeyType.IPV6, 16, (0,), 1_800_000), "key type 5"),
        (TableDefinition(3, "app", KeyType.STRING, 33, (2,), 1_800_000), "no server_id"),
        (TableDefinition(3, "app", KeyType.STRING, 33, (0, 40), 1_800_000), "cannot be decoded"),
    ],
)
def test_a_definition_that_disagrees_is_not_synced_reported_once_and_counted(definition, why):
    link = Link()
    link.connect()
    enc = Encoder()
    data = enc.encode(definition) + enc.encode(TableSwitch(3)) + enc.encode(definition)
    actions = link.feed("b", DataReceived(data))
    notices = [a.message for a in actions if isinstance(a, Notice)]
    assert len(notices) == 1 and why in notices[0], notices
    assert link.lb2.peer.errors["table_mismatch"] == 1
    assert why in link.lb2.peer.mismatches["app"]
    link.feed("b", DataReceived(b"\x0a\x80\x07\x00\x00\x00\x01\x01x\x01"))
    assert link.lb2.peer.errors["unshared_table"] == 1 and len(link.lb2.table) == 0


def test_a_peer_defining_too_many_tables_is_cut(monkeypatch):
    monkeypatch.setattr(s, "MAX_REMOTE_TABLES", 3)
    link = Link()
    link.connect()
    enc = Encoder()
    data = b"".join(
        enc.encode(TableDefinition(i, f"t{i}", KeyType.STRING, 33, (0,), 1000)) for i in range(5)
    )
    actions = link.feed("b", DataReceived(data))
    assert decoded(actions) == [ErrorMessage(ErrorType.PROTOCOL)]
    assert closes(actions)[0].error == "too_many_tables"
    assert len(link.lb2.peer.remote_definitions) == 3


def test_a_different_expiry_is_reported_but_synced():
    link = Link()
    link.connect()
    enc = Encoder()
    definition = TableDefinition(3, "app", KeyType.STRING, 33, (0,), 600_000)
    actions = link.feed(
        "b", DataReceived(enc.encode(definition) + enc.encode(Update(3, 1, b"k", 1)))
    )
    assert any(
        "600000ms there, 1800000ms here" in a.message for a in actions if isinstance(a, Notice)
    )
    assert len(link.lb2.table) == 1


def test_a_source_address_table_syncs_ipv6_keys():
    link = Link()
    for node in (link.lb1, link.lb2):
        node.table = StickTable("src", "ipv6", 100, 60, clock=link.clock)
        node.tables = [LocalTable("src", node.table, 1, frozenset({1}))]
    link.connect()
    link.lb1.table.learn("198.18.0.7", 1)
    link.run("a", PushRequested())
    assert [e.key for e in link.lb2.table] == [IPv6Address("::ffff:198.18.0.7")]


def test_acks_that_make_no_sense_are_counted_and_ignored():
    link = Link()
    link.connect()
    enc = Encoder()
    link.feed("a", DataReceived(enc.encode(Ack(1, 5))))  # nothing sent yet
    link.lb1.table.learn(b"k", 1)
    link.feed("a", PushRequested())
    link.feed("a", DataReceived(enc.encode(Ack(1, 2)) + enc.encode(Ack(8, 1))))
    assert link.lb1.peer.errors == {"bad_ack": 2, "unknown_table_id": 1}
    assert link.lb1.peer.acked.get("app", 0) == 0
    link.feed("a", DataReceived(enc.encode(Ack(1, 1))))
    assert link.lb1.peer.acked["app"] == 1


def test_acks_map_32_bit_wire_ids_back_to_update_ids():
    link = Link()
    link.connect()
    link.a.sent["app"] = (1 << 32) + 10
    link.feed("a", DataReceived(Encoder().encode(Ack(1, 8))))
    assert link.lb1.peer.acked["app"] == (1 << 32) + 8


def test_unknown_messages_are_counted_and_ignored():
    link = Link()
    link.connect()
    link.feed("b", DataReceived(Encoder().encode(UnknownMessage(42, 0x90, b"future"))))
    assert link.lb2.peer.errors == {"unknown_message": 1} and link.b.state is State.ESTABLISHED


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "kind"),
    [
        (b"\x0a\x80\xff\xff\xff\xff\xff\xff", ErrorType.PROTOCOL, "protocol"),
        (b"\x0a\x80\xfa\xff\x9f\x01", ErrorType.SIZE_LIMIT, "size_limit"),
        (b"\xff\x00", ErrorType.PROTOCOL, "protocol"),
    ],
)
def test_a_protocol_error_is_answered_with_an_error_message_and_closes(data, error, kind):
    link = Link()
    link.connect()
    actions = link.feed("b", DataReceived(data))
    assert decoded(actions) == [ErrorMessage(error)]
    assert closes(actions)[0].error == kind and link.b.state is State.CLOSED


def test_an_error_message_from_the_peer_closes():
    link = Link()
    link.connect()
    actions = link.feed("a", DataReceived(Encoder().encode(ErrorMessage(ErrorType.SIZE_LIMIT))))
    assert closes(actions)[0].error == "peer_error" and "size limit" in closes(actions)[0].reason


# -- resync ---------------------------------------------------------------------------------------


def test_a_starting_node_learns_the_whole_table_local_and_learned_entries():
    link = Link(lb1_needs_resync=True)
    link.lb2.table.learn(b"local-on-lb2", 1)
    link.lb2.table.apply_remote(b"learned-by-lb2", 2, 60_000)
    link.connect()
    assert link.lb1.resync.done and "learned from lb2" in link.lb1.resync.describe()
    assert {e.key for e in link.lb1.table} == {b"local-on-lb2", b"learned-by-lb2"}
    sent_by_a = decoded([Send(sent(link.actions["a"]).split(b"\n", 3)[-1])])
    assert ResyncRequest() in sent_by_a and ResyncConfirm() in sent_by_a
    assert ResyncFinished() in decoded([Send(sent(link.actions["b"])[4:])])
    assert link.b.teaching is None  # the confirm ended the lesson
    assert link.lb2.peer.pushed["app"] == link.lb2.table.update_id


def test_a_teacher_that_is_not_up_to_date_says_partial_and_another_peer_is_tried():
    link = Link(lb1_needs_resync=True, lb2_needs_resync=True)
    link.connect()
    assert ResyncPartial() in decoded([Send(sent(link.actions["b"])[4:])])
    resync = link.lb1.resync
    assert not resync.done and resync.not_up_to_date == {"lb2"} and resync.assigned is None
    assert not resync.assign("lb2")
    link.clock.now += 5
    resync.tick(link.clock.now)
    assert resync.done and "timed out" in resync.describe()


def test_a_session_lost_while_learning_lets_another_try_later():
    link = Link(lb1_needs_resync=True)
    link.run("a", Connected())
    link.lb1.resync.done = False  # as if the lesson had not arrived yet
    link.lb1.resync.assigned = "lb2"
    link.a.learning = True
    link.feed("a", ConnectionLost("reset"))
    assert link.lb1.resync.assigned is None
    assert link.lb1.resync.deadline == link.clock.now + 5


def test_the_service_can_assign_an_established_session_later():
    link = Link()
    link.connect()
    link.lb1.resync = link.a.resync = Resync(link.clock.now)
    assert link.lb1.resync.assign("lb2")
    assert link.said("a", StartLearning()) == [ResyncRequest()] and link.a.learning


def test_acks_during_a_lesson_count_from_the_lesson():
    link = Link()
    link.lb2.table.learn(b"k", 1)
    link.connect()
    assert link.lb2.peer.acked["app"] == 1  # acknowledged in this session
    link.run("a", StartLearning())
    assert link.lb2.peer.acked["app"] == 1  # kept: the lesson re-sends id 1, not acked again
    link.lb2.peer.acked["app"] = 99  # as if from an earlier life of lb1
    link.run("a", StartLearning())
    assert link.lb2.peer.acked["app"] == 1


# -- liveness and backpressure --------------------------------------------------------------------


def test_heartbeats_after_3s_without_sending_and_dead_after_5s_of_silence():
    link = Link()
    link.connect()
    link.clock.now += 2.9
    assert link.feed("a", Tick()) == []
    link.clock.now += 0.1
    assert link.said("a", Tick()) == [Heartbeat()]
    link.feed("b", DataReceived(Encoder().encode(Heartbeat())))
    assert link.lb2.peer.last_heartbeat == link.clock.now
    link.clock.now += 2
    assert closes(link.feed("a", Tick()))[0].error == "dead"


def test_a_peer_that_does_not_read_for_5s_is_cut_and_gets_no_heartbeat():
    link = Link()
    link.connect()
    link.feed("a", WritePaused())
    link.lb1.table.learn(b"k", 1)
    assert link.said("a", PushRequested()) == []  # nothing queued while paused
    link.clock.now += 4
    link.feed("b", DataReceived(Encoder().encode(Heartbeat())))
    link.feed("a", DataReceived(Encoder().encode(Heartbeat())))
    assert link.feed("a", Tick()) == []
    link.feed("a", WriteResumed())
    link.feed("a", WritePaused())
    link.clock.now += 5
    assert closes(link.feed("a", Tick()))[0].error == "stalled"


def test_writing_resumes_with_what_is_pending():
    link = Link()
    link.connect()
    link.feed("a", WritePaused())
    link.lb1.table.learn(b"k", 1)
    assert [m.key for m in link.said("a", WriteResumed())] == [b"k"]


def test_a_tick_pushes_what_a_lost_wake_up_left_pending():
    link = Link()
    link.connect()
    link.lb1.table.learn(b"k", 1)
    assert [m.key for m in link.said("a", Tick())] == [b"k"]


# -- closing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["connector", "acceptor"])
def test_closing_or_losing_a_session_in_any_open_state(role):
    for event in (CloseRequested("stopping"), ConnectionLost("reset")):
        link = Link()
        side = "a" if role == "connector" else "b"
        actions = link.feed(side, event)
        session = link.a if side == "a" else link.b
        assert session.state is State.CLOSED
        assert session.close_reason in ("stopping", "reset")
        assert [c.error for c in closes(actions)] == (
            [None] if isinstance(event, CloseRequested) else []
        )
        assert link.feed(side, PushRequested()) == [] and link.feed(side, Tick()) == []


def test_push_requests_before_the_handshake_wait_for_it():
    link = Link()
    link.lb1.table.learn(b"k", 1)
    assert link.feed("a", PushRequested()) == []
    link.feed("a", Connected())
    assert link.feed("a", PushRequested()) == []
    out = link.feed("a", DataReceived(b"200\n"))
    assert [m.key for m in decoded(out) if isinstance(m, Update)] == [b"k"]


def test_statuses_and_hellos_are_only_understood_at_their_place():
    link = Link()
    link.connect()
    # After the handshake, text is read as messages of classes nobody knows: ignored, counted.
    link.feed("b", DataReceived(Encoder().encode(Hello("lb2", "lb1", 1))))
    link.feed("a", DataReceived(Encoder().encode(StatusLine(200))))
    assert link.b.state is State.ESTABLISHED and link.a.state is State.ESTABLISHED
    assert link.lb2.peer.errors["unknown_message"] == 12
    assert link.lb1.peer.errors["unknown_message"] == 2
