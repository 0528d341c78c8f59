"""The VRRP election (ha/vrrp/machine.py): RFC 9568 §6.4 plus keepalived's FAULT and preempt_delay.

Intervals and priorities are chosen so that timer values are exact binary fractions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from appliance.config.model import VrrpConfig
from ha.vrrp import machine
from ha.vrrp.machine import (
    Action,
    AddVips,
    AdvertisementReceived,
    Discard,
    Fault,
    FaultCleared,
    MasterHintLost,
    Notify,
    PriorityChanged,
    ProtocolError,
    RemoveVips,
    SendAdvertisement,
    SendGratuitousArps,
    Shutdown,
    StartTimer,
    Startup,
    State,
    StopTimer,
    Timer,
    TimerExpired,
    VirtualRouter,
)

pytestmark = pytest.mark.unit

LB1 = IPv4Address("198.18.0.11")
LB2 = IPv4Address("198.18.0.12")
LB0 = IPv4Address("198.18.0.10")


def router(priority: int = 128, address: IPv4Address = LB1, **kw) -> VirtualRouter:
    return VirtualRouter(vrid=51, priority=priority, primary_address=address, **kw)


def backup(**kw) -> VirtualRouter:
    r = router(**kw)
    r.handle(Startup())
    assert r.state is State.BACKUP
    return r


def master(**kw) -> VirtualRouter:
    r = backup(**kw)
    r.handle(TimerExpired(Timer.MASTER_DOWN))
    assert r.state is State.MASTER
    return r


def owner(**kw) -> VirtualRouter:
    r = router(priority=255, **kw)
    r.handle(Startup())
    assert r.state is State.MASTER
    return r


def master_after_lower(**kw) -> VirtualRouter:
    """A master that has just answered a lower priority (its ARP hold runs)."""
    r = master(**kw)
    r.handle(advert(100))
    assert r.garp_held
    return r


def fault(**kw) -> VirtualRouter:
    r = backup(**kw)
    r.handle(Fault("eth1 link down"))
    assert r.state is State.FAULT
    return r


def advert(priority: int, source: IPv4Address = LB2, interval: float = 1.0):
    return AdvertisementReceived(priority=priority, source=source, interval=interval)


# Every row of the table: (state reached by, event, next state). Priority 128, address LB1.
ROWS: list[tuple[str, Callable[..., VirtualRouter], Callable[[], object], dict, State]] = [
    ("init startup", router, Startup, {}, State.BACKUP),
    ("init startup owner", router, Startup, {"priority": 255}, State.MASTER),
    ("init shutdown", router, Shutdown, {}, State.INITIALIZE),
    ("init fault", router, lambda: Fault("down"), {}, State.FAULT),
    ("init priority", router, lambda: PriorityChanged(100, "t"), {}, State.INITIALIZE),
    ("init advert zero", router, lambda: advert(0), {}, State.INITIALIZE),
    ("init advert higher", router, lambda: advert(200), {}, State.INITIALIZE),
    ("init advert equal", router, lambda: advert(128, LB0), {}, State.INITIALIZE),
    ("init advert lower", router, lambda: advert(100), {}, State.INITIALIZE),
    (
        "init advert interval",
        router,
        lambda: advert(200, interval=2.0),
        {"version": 2},
        State.INITIALIZE,
    ),
    ("backup shutdown", backup, Shutdown, {}, State.INITIALIZE),
    ("backup master down", backup, lambda: TimerExpired(Timer.MASTER_DOWN), {}, State.MASTER),
    ("backup advert zero", backup, lambda: advert(0), {}, State.BACKUP),
    ("backup advert higher", backup, lambda: advert(200), {}, State.BACKUP),
    ("backup advert equal", backup, lambda: advert(128, LB0), {}, State.BACKUP),
    ("backup advert lower", backup, lambda: advert(100), {}, State.BACKUP),
    (
        "backup advert interval",
        backup,
        lambda: advert(200, interval=2.0),
        {"version": 2},
        State.BACKUP,
    ),
    (
        "backup preempt delay",
        backup,
        lambda: TimerExpired(Timer.PREEMPT_DELAY),
        {"preempt_delay": 5.0},
        State.BACKUP,
    ),
    ("backup fault", backup, lambda: Fault("down"), {}, State.FAULT),
    ("backup fault cleared", backup, lambda: FaultCleared("up"), {}, State.BACKUP),
    ("backup priority", backup, lambda: PriorityChanged(100, "t"), {}, State.BACKUP),
    ("backup hint lost", backup, lambda: MasterHintLost(LB1), {}, State.BACKUP),
    ("backup hint lost other", backup, lambda: MasterHintLost(LB2), {}, State.BACKUP),
    ("init hint lost", router, lambda: MasterHintLost(LB1), {}, State.INITIALIZE),
    ("init hint lost other", router, lambda: MasterHintLost(LB2), {}, State.INITIALIZE),
    ("master hint lost", master, lambda: MasterHintLost(LB1), {}, State.MASTER),
    ("master hint lost other", master, lambda: MasterHintLost(LB2), {}, State.MASTER),
    ("fault hint lost other", fault, lambda: MasterHintLost(LB2), {}, State.FAULT),
    (
        "master garp hold",
        master_after_lower,
        lambda: TimerExpired(Timer.GARP_HOLD),
        {},
        State.MASTER,
    ),
    ("master shutdown", master, Shutdown, {}, State.INITIALIZE),
    ("master advert timer", master, lambda: TimerExpired(Timer.ADVERT), {}, State.MASTER),
    ("master advert zero", master, lambda: advert(0), {}, State.MASTER),
    ("master advert higher", master, lambda: advert(200), {}, State.BACKUP),
    ("master advert equal", master, lambda: advert(128, LB0), {}, State.MASTER),
    ("master advert lower", master, lambda: advert(100), {}, State.MASTER),
    (
        "master advert interval",
        master,
        lambda: advert(200, interval=2.0),
        {"version": 2},
        State.MASTER,
    ),
    (
        "master preempt delay",
        master,
        lambda: TimerExpired(Timer.PREEMPT_DELAY),
        {"preempt_delay": 5.0},
        State.MASTER,
    ),
    ("master fault", master, lambda: Fault("down"), {}, State.FAULT),
    ("master fault cleared", master, lambda: FaultCleared("up"), {}, State.MASTER),
    (
        "master fault cleared owner",
        owner,
        lambda: FaultCleared("up"),
        {},
        State.MASTER,
    ),
    ("master priority", master, lambda: PriorityChanged(100, "t"), {}, State.MASTER),
    ("fault shutdown", fault, Shutdown, {}, State.INITIALIZE),
    ("fault fault", fault, lambda: Fault("proxy down"), {}, State.FAULT),
    ("fault cleared", fault, lambda: FaultCleared("up"), {}, State.BACKUP),
    (
        "fault preempt delay",
        fault,
        lambda: TimerExpired(Timer.PREEMPT_DELAY),
        {"preempt_delay": 5.0},
        State.FAULT,
    ),
    ("fault priority", fault, lambda: PriorityChanged(100, "t"), {}, State.FAULT),
    ("fault advert zero", fault, lambda: advert(0), {}, State.FAULT),
    ("fault advert higher", fault, lambda: advert(200), {}, State.FAULT),
    ("fault advert equal", fault, lambda: advert(128, LB0), {}, State.FAULT),
    ("fault advert lower", fault, lambda: advert(100), {}, State.FAULT),
    (
        "fault advert interval",
        fault,
        lambda: advert(200, interval=2.0),
        {"version": 2},
        State.FAULT,
    ),
]


@pytest.mark.parametrize(
    ("name", "reach", "event", "kw", "expected"), ROWS, ids=[r[0] for r in ROWS]
)
def test_every_row_of_the_table(name, reach, event, kw, expected) -> None:
    r = reach(**kw)
    r.handle(event())
    assert r.state is expected


def test_rows_cover_the_table() -> None:
    """The two owner rows and (FAULT, hint lost), reachable only through odd paths, are
    covered below."""
    assert len(ROWS) + 3 == len(machine._TABLE)


def test_fault_cleared_as_owner_goes_master_at_once() -> None:
    r = router(priority=255)
    r.handle(Fault("eth1 link down"))
    actions = r.handle(FaultCleared("eth1 link up"))
    assert r.state is State.MASTER
    assert actions[:3] == [SendAdvertisement(255), AddVips(), SendGratuitousArps()]


def test_an_owner_that_lost_a_tie_ignores_a_repeated_fault_cleared() -> None:
    r = router(priority=255, address=LB1)
    r.handle(Startup())
    r.handle(advert(255, LB2))  # two owners: the higher address wins
    assert r.state is State.BACKUP
    assert r.handle(FaultCleared("up")) == []


@pytest.mark.parametrize(
    ("reach", "event"),
    [
        (router, TimerExpired(Timer.MASTER_DOWN)),
        (router, TimerExpired(Timer.ADVERT)),
        (router, FaultCleared("up")),
        (backup, Startup()),
        (backup, TimerExpired(Timer.ADVERT)),
        (master, Startup()),
        (master, TimerExpired(Timer.MASTER_DOWN)),
        (fault, Startup()),
        (fault, TimerExpired(Timer.MASTER_DOWN)),
        (fault, TimerExpired(Timer.ADVERT)),
    ],
)
def test_pairs_missing_from_the_table_are_protocol_errors(reach, event) -> None:
    r = reach()
    with pytest.raises(ProtocolError, match="not allowed in state"):
        r.handle(event)


def test_tracking_cannot_make_an_owner() -> None:
    with pytest.raises(ValueError, match=r"1\.\.254"):
        backup().handle(PriorityChanged(255, "t"))


# Timers and transitions in detail.


def test_skew_and_master_down_interval_v3() -> None:
    r = router(priority=192, advert_interval=0.5)
    assert r.skew_time == (256 - 192) * 0.5 / 256 == 0.125
    assert r.master_down_interval == 1.625


def test_skew_v2_is_in_seconds_whatever_the_interval() -> None:
    r = router(priority=192, advert_interval=2.0, version=2)
    assert r.skew_time == 0.25
    assert r.master_down_interval == 6.25


def test_startup_as_backup() -> None:
    r = router(priority=192)
    assert r.handle(Startup()) == [
        StartTimer(Timer.MASTER_DOWN, 3.25),
        Notify(State.BACKUP, "started with priority 192"),
    ]


def test_address_owner_goes_master_at_once() -> None:
    r = router(priority=255)
    assert r.handle(Startup()) == [
        SendAdvertisement(255),
        AddVips(),
        SendGratuitousArps(),
        StartTimer(Timer.ADVERT, 1.0),
        Notify(State.MASTER, "started as address owner (priority 255)"),
    ]


def test_master_down_takes_over() -> None:
    r = backup(priority=192)
    actions = r.handle(TimerExpired(Timer.MASTER_DOWN))
    assert actions == [
        SendAdvertisement(192),
        AddVips(),
        SendGratuitousArps(),
        StartTimer(Timer.ADVERT, 1.0),
        Notify(State.MASTER, "no advertisement from a master for 3.250s"),
    ]
    assert r.reason == "no advertisement from a master for 3.250s"


def test_master_advertises_on_its_timer() -> None:
    assert master().handle(TimerExpired(Timer.ADVERT)) == [
        SendAdvertisement(128),
        StartTimer(Timer.ADVERT, 1.0),
    ]


def test_backup_learns_the_master_interval_v3() -> None:
    r = backup(priority=192, advert_interval=1.0)
    assert r.handle(advert(200, interval=0.5)) == [StartTimer(Timer.MASTER_DOWN, 1.625)]
    assert r.master_adver_interval == 0.5
    assert r.last_master == LB2


def test_v2_backup_drops_another_interval() -> None:
    r = backup(version=2)
    [discard] = r.handle(advert(200, interval=2.0))
    assert isinstance(discard, Discard)
    assert "interval 2s, ours is 1s" in discard.reason
    assert r.master_adver_interval == 1.0


# Elections.


def test_master_steps_down_on_higher_priority_with_a_last_advertisement() -> None:
    r = master(priority=128)
    actions = r.handle(advert(200))
    # keepalived's higher_prio_send_advert: the winner hears our lower priority once more.
    assert actions[:3] == [StopTimer(Timer.ADVERT), SendAdvertisement(128), RemoveVips()]
    assert isinstance(actions[3], StartTimer) and actions[3].timer is Timer.MASTER_DOWN
    assert actions[4] == Notify(
        State.BACKUP, "higher priority advertisement from 198.18.0.12 (priority 200, ours 128)"
    )


def test_tie_goes_to_the_higher_address() -> None:
    low, high = master(address=LB1), master(address=LB2)
    assert high.handle(advert(128, LB1))[0] == SendAdvertisement(128)
    assert high.state is State.MASTER
    low.handle(advert(128, LB2))
    assert low.state is State.BACKUP


def test_master_answers_a_lower_priority_and_refreshes_arp_caches_at_a_limited_rate() -> None:
    r = master(priority=200)
    assert r.handle(advert(100)) == [
        SendAdvertisement(200),
        SendGratuitousArps(),
        StartTimer(Timer.GARP_HOLD, machine.LOWER_PRIORITY_GARP_HOLD),
    ]
    assert r.handle(advert(100)) == [SendAdvertisement(200)]  # ARPs held back
    r.handle(TimerExpired(Timer.GARP_HOLD))
    assert SendGratuitousArps() in r.handle(advert(100))


def test_leaving_master_stops_the_arp_hold() -> None:
    for event in (advert(250), Fault("down"), Shutdown()):
        r = master_after_lower(priority=200)
        actions = r.handle(event)
        assert StopTimer(Timer.GARP_HOLD) in actions
        assert not r.garp_held


def test_lost_hint_shortens_master_down_to_one_interval_plus_skew() -> None:
    r = backup(priority=128, advert_interval=1.0)
    r.handle(advert(200, LB2))
    assert r.handle(MasterHintLost(LB2)) == [StartTimer(Timer.MASTER_DOWN, 1.5)]
    assert r.state is State.BACKUP  # never on the hint alone
    # The master's next advertisement comes after all: the usual timer is back.
    assert r.handle(advert(200, LB2)) == [StartTimer(Timer.MASTER_DOWN, 3.5)]


def test_a_hint_never_lengthens_a_timer_already_cut_short() -> None:
    r = backup(priority=128, advert_interval=1.0)
    r.handle(advert(200, LB2))
    assert r.handle(advert(0, LB2)) == [StartTimer(Timer.MASTER_DOWN, 0.5)]  # it left cleanly
    assert r.handle(MasterHintLost(LB2)) == []  # and then its process exited
    r = backup(priority=128, advert_interval=1.0)
    r.handle(advert(200, LB2))
    r.handle(MasterHintLost(LB2))
    assert r.handle(MasterHintLost(LB2)) == []  # one missed advertisement, not a new wait


def test_a_hint_about_another_daemon_changes_nothing() -> None:
    r = backup(priority=128)
    r.handle(advert(200, LB2))
    assert r.handle(MasterHintLost(LB0)) == []
    f = fault()
    f.last_master = LB2
    assert f.handle(MasterHintLost(LB2)) == []


def test_preempting_backup_ignores_a_lower_master() -> None:
    r = backup(priority=200)
    assert r.handle(advert(100)) == []  # its master-down timer runs on: it will take over


def test_nopreempt_backup_accepts_a_lower_master() -> None:
    r = backup(priority=200, preempt=False)
    assert r.handle(advert(100)) == [StartTimer(Timer.MASTER_DOWN, 3 + 56 / 256)]


def test_backup_accepts_an_equal_master_with_a_lower_address() -> None:
    r = backup(address=LB2)
    assert r.handle(advert(128, LB1)) == [StartTimer(Timer.MASTER_DOWN, 3.5)]


def test_preempt_delay_holds_preemption_back_then_lets_go() -> None:
    r = router(priority=200, preempt_delay=30.0)
    actions = r.handle(Startup())
    assert StartTimer(Timer.PREEMPT_DELAY, 30.0) in actions
    assert r.handle(advert(100)) == [StartTimer(Timer.MASTER_DOWN, 3 + 56 / 256)]
    assert r.handle(TimerExpired(Timer.PREEMPT_DELAY)) == []
    assert r.handle(advert(100)) == []


def test_preempt_delay_is_not_used_without_preempt() -> None:
    r = router(preempt=False, preempt_delay=30.0)
    assert StartTimer(Timer.PREEMPT_DELAY, 30.0) not in r.handle(Startup())


def test_preempt_delay_timer_stops_on_shutdown() -> None:
    r = backup(preempt_delay=30.0)
    assert StopTimer(Timer.PREEMPT_DELAY) in r.handle(Shutdown())


# Priority 0: clean shutdown and fast takeover.


def test_master_shutdown_sends_priority_zero_and_removes_vips() -> None:
    r = master()
    assert r.handle(Shutdown()) == [
        StopTimer(Timer.ADVERT),
        SendAdvertisement(0),
        RemoveVips(),
        Notify(State.INITIALIZE, "shutdown: sent priority 0 so that a backup takes over at once"),
    ]


def test_backup_hearing_priority_zero_takes_over_after_skew_time() -> None:
    r = backup(priority=192)
    assert r.handle(advert(0)) == [StartTimer(Timer.MASTER_DOWN, 0.25)]


def test_master_hearing_priority_zero_advertises_at_once() -> None:
    assert master().handle(advert(0)) == [SendAdvertisement(128), StartTimer(Timer.ADVERT, 1.0)]


def test_master_advertises_a_changed_priority_at_once() -> None:
    r = master(priority=200)
    assert r.handle(PriorityChanged(50, "proxy unhealthy")) == [
        SendAdvertisement(50),
        StartTimer(Timer.ADVERT, 1.0),
    ]
    assert r.priority == 50


# FAULT.


def test_link_down_as_master_releases_the_vips() -> None:
    r = master()
    assert r.handle(Fault("eth1 link down")) == [
        StopTimer(Timer.ADVERT),
        SendAdvertisement(0),
        RemoveVips(),
        Notify(State.FAULT, "fault: eth1 link down"),
    ]


def test_link_down_as_backup_stops_listening() -> None:
    assert backup().handle(Fault("eth1 link down")) == [
        StopTimer(Timer.MASTER_DOWN),
        Notify(State.FAULT, "fault: eth1 link down"),
    ]


def test_recovery_returns_to_backup_and_holds_preemption_again() -> None:
    r = fault(priority=192, preempt_delay=10.0)
    assert r.handle(FaultCleared("eth1 link up")) == [
        StartTimer(Timer.MASTER_DOWN, 3.25),
        StartTimer(Timer.PREEMPT_DELAY, 10.0),
        Notify(State.BACKUP, "fault cleared: eth1 link up"),
    ]


def test_from_config() -> None:
    config = VrrpConfig(vrid=7, priority=150, advert_interval=0.1, version=3, preempt=False)
    r = VirtualRouter.from_config(config, LB1)
    assert (r.vrid, r.priority, r.advert_interval, r.preempt) == (7, 150, 0.1, False)


# Two routers on one link, with a fake clock.


class Link:
    """Two (or more) virtual routers, their timers on a fake clock, advertisements delivered."""

    def __init__(self, *routers: VirtualRouter) -> None:
        self.now = 0.0
        self.routers = list(routers)
        self.timers: dict[tuple[int, Timer], float] = {}
        self.up = {id(r): True for r in routers}
        self.transitions: list[tuple[float, IPv4Address, State]] = []
        self.in_flight: list[tuple[VirtualRouter, AdvertisementReceived]] = []
        self.garps: list[tuple[float, IPv4Address]] = []

    def apply(self, r: VirtualRouter, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case StartTimer(timer=timer, delay=delay):
                    self.timers[id(r), timer] = self.now + delay
                case StopTimer(timer=timer):
                    self.timers.pop((id(r), timer), None)
                case SendAdvertisement(priority=priority):
                    for other in self.routers:
                        if other is not r and self.up[id(other)]:
                            event = advert(priority, r.primary_address, r.advert_interval)
                            self.in_flight.append((other, event))
                case Notify(state=state):
                    self.transitions.append((self.now, r.primary_address, state))
                case SendGratuitousArps():
                    self.garps.append((self.now, r.primary_address))

    def feed(self, r: VirtualRouter, event: object) -> None:
        """Apply ``event``, then deliver what it sent (in order, at the same instant)."""
        self.apply(r, r.handle(event))
        while self.in_flight:
            other, sent = self.in_flight.pop(0)
            self.apply(other, other.handle(sent))

    def run_until(self, end: float) -> None:
        while True:
            # Ties at one instant fire in router order, so a run is reproducible.
            order = {id(r): n for n, r in enumerate(self.routers)}
            due = [(t, order[i], k.value, i, k) for (i, k), t in self.timers.items() if t <= end]
            if not due:
                break
            t, _, _, i, timer = heapq.nsmallest(1, due)[0]
            self.now = t
            del self.timers[i, timer]
            [r] = [r for r in self.routers if id(r) == i]
            self.feed(r, TimerExpired(timer))
        self.now = end

    def masters(self) -> list[IPv4Address]:
        return [r.primary_address for r in self.routers if r.state is State.MASTER]


def test_two_routers_converge_on_exactly_one_master() -> None:
    lb1 = router(priority=150, address=LB1, advert_interval=0.125)
    lb2 = router(priority=100, address=LB2, advert_interval=0.125)
    link = Link(lb1, lb2)
    link.feed(lb2, Startup())  # the lower priority starts first and becomes master alone
    link.run_until(1.0)
    assert link.masters() == [LB2]
    link.feed(lb1, Startup())  # the higher priority preempts
    link.run_until(5.0)
    assert link.masters() == [LB1]
    settled = len(link.transitions)
    link.run_until(60.0)
    assert link.masters() == [LB1]
    assert len(link.transitions) == settled  # no flapping


@pytest.mark.parametrize("first", [0, 1])
def test_equal_priorities_starting_together_end_with_one_master(first: int) -> None:
    # Both time out at the same instant. Whichever advertises first is accepted by
    # the other (a backup does not compare addresses); if both became master, the
    # lower address steps down. Either way exactly one master remains.
    lb1 = router(priority=100, address=LB1, advert_interval=0.125)
    lb2 = router(priority=100, address=LB2, advert_interval=0.125)
    routers = [lb1, lb2] if first == 0 else [lb2, lb1]
    link = Link(*routers)
    for r in routers:
        link.feed(r, Startup())
    link.run_until(3.0)
    assert link.masters() == [routers[0].primary_address]
    settled = len(link.transitions)
    link.run_until(30.0)
    assert len(link.transitions) == settled


def test_clean_shutdown_hands_over_after_skew_time_only() -> None:
    lb1 = router(priority=150, address=LB1, advert_interval=1.0)
    lb2 = router(priority=100, address=LB2, advert_interval=1.0)
    link = Link(lb1, lb2)
    link.feed(lb1, Startup())
    link.feed(lb2, Startup())
    link.run_until(10.0)
    assert link.masters() == [LB1]
    link.feed(lb1, Shutdown())
    link.run_until(10.0 + lb2.skew_time)
    assert link.masters() == [LB2]
    assert link.transitions[-1] == (10.0 + 156 / 256, LB2, State.MASTER)


def settled_pair(interval: float = 0.125) -> tuple[Link, VirtualRouter, VirtualRouter]:
    """lb1 (150) MASTER and lb2 (100) BACKUP on one link, at t = 2 s."""
    lb1 = router(priority=150, address=LB1, advert_interval=interval)
    lb2 = router(priority=100, address=LB2, advert_interval=interval)
    link = Link(lb1, lb2)
    link.feed(lb1, Startup())
    link.feed(lb2, Startup())
    link.run_until(2.0)
    assert link.masters() == [LB1]
    return link, lb1, lb2


def test_split_brain_heals_to_one_master() -> None:
    link, lb1, lb2 = settled_pair()
    link.up[id(lb2)] = False  # lb2 hears nothing, as when the link between them is cut
    link.run_until(4.0)
    assert sorted(link.masters()) == [LB1, LB2]
    link.up[id(lb2)] = True
    link.run_until(4.0 + 3 * 0.125)
    assert link.masters() == [LB1]


@pytest.mark.parametrize("restored", [4.0, 4.03, 4.06, 4.09, 4.12])
def test_after_a_full_cut_the_survivor_sends_arps_whoever_advertises_first(
    restored: float,
) -> None:
    # Both masters during the cut; clients may follow either. Once the link is back, the
    # winner must refresh the ARP caches within three intervals, whether its advertisement
    # or the loser's crosses first (the restore instants cover both orders).
    link, lb1, lb2 = settled_pair()
    link.up[id(lb1)] = link.up[id(lb2)] = False
    link.run_until(restored)
    assert sorted(link.masters()) == [LB1, LB2]
    link.up[id(lb1)] = link.up[id(lb2)] = True
    link.run_until(restored + 3 * 0.125)
    assert link.masters() == [LB1]
    assert [t for t, who in link.garps if who == LB1 and t >= restored]
