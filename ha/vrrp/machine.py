"""The VRRP election of one virtual router: every rule that changes its state lives here.

RFC 9568 §6.4 (VRRPv3; RFC 3768 §6.4 for v2) defines three states, Initialize, Backup and
Master ("Active" in RFC 9568's wording; Weir keeps keepalived's word). Weir adds keepalived's
FAULT: the interface is down or a tracked resource (the local proxy) failed, so the node
holds no VIPs and takes no part in the election until the fault clears.

The object has no I/O and reads no clock (the sans-io style of h11/h2): the daemon feeds it
events (``Startup``, ``AdvertisementReceived``, a timer's expiry, ...) and carries out the
actions it returns, in order: send an advertisement, add or remove the VIPs, send
gratuitous ARPs, start or stop a timer (with its duration), and ``Notify`` on every state
change with the reason for the log and the notify hooks. Starting a timer that runs
replaces it; a stopped timer must never report its expiry.

The transitions are table driven, as in h2: a dict from (state, input) to (handler, next
state). An event becomes one input according to the context (an advertisement is
classified by its priority and source against ours, a startup by whether we own the
addresses), so the table itself has no guards; a pair missing from it raises
``ProtocolError``. Events from the network are in the table for every state, so a packet
can never raise.

Timers, as in RFC 9568 §6.1-6.2:

- Skew_Time = (256 - Priority) * Master_Adver_Interval / 256 for v3, (256 - Priority) / 256
  seconds for v2;
- Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, where a v3 backup learns
  Master_Adver_Interval from the master's advertisements (v2 requires both sides to be
  configured alike; an advertisement with another interval is discarded, RFC 3768 §7.1).

Election: a master steps down on hearing a higher priority, or the same priority from a
higher primary address. A backup with preemption ignores lower priorities, so its
Master_Down timer runs out and it takes over; without preemption (``preempt=False``, or
during ``preempt_delay`` after startup or fault recovery, as keepalived) it accepts any
master. Priority 255 (the address owner) goes master at once. On shutdown a master sends
priority 0, and a backup hearing priority 0 takes over after Skew_Time instead of
Master_Down_Interval.

Two master rules follow keepalived rather than the RFC, to heal a split brain (two masters
while the link between them was cut) for the clients too, not only for the election:

- a master that hears a lower priority (or its own priority from a lower address) answers
  with an advertisement and gratuitous ARPs, since clients may have followed the other
  master's ARPs (keepalived's default, ``garp_lower_prio_repeat``); the ARPs at most once
  per ``LOWER_PRIORITY_GARP_HOLD``;
- a master that steps down for a higher priority first sends one advertisement with its own
  priority (keepalived's ``higher_prio_send_advert``), so that the winner hears a lower
  priority and sends its ARPs even when its advertisement reached the loser first.

The takeover hint (``MasterHintLost``): the daemon keeps a TCP connection to the master's
daemon; when the kernel closes it (the master's process died), a backup shortens its
Master_Down timer to one advertisement interval plus Skew_Time from then. It takes over only
if that advertisement does not come either: never on the hint alone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from appliance.config.model import VrrpConfig

OWNER_PRIORITY = 255


class State(enum.Enum):
    INITIALIZE = "INITIALIZE"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"


class Timer(enum.Enum):
    MASTER_DOWN = "master down"
    ADVERT = "advert"
    PREEMPT_DELAY = "preempt delay"
    GARP_HOLD = "gratuitous ARP hold"


LOWER_PRIORITY_GARP_HOLD = 2.0  # seconds between two ARP bursts answering lower priorities


class ProtocolError(RuntimeError):
    """An event that the table does not allow in the current state: a bug in the caller."""


# Events: what the daemon feeds in.


@dataclass(frozen=True, slots=True)
class Startup:
    """The daemon starts this virtual router."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The daemon stops (SIGTERM): leave cleanly."""


@dataclass(frozen=True, slots=True)
class AdvertisementReceived:
    """A valid advertisement for our VRID (already checked by ha.vrrp.packet)."""

    priority: int
    source: IPv4Address  # the IP source: the sender's primary address
    interval: float  # seconds


@dataclass(frozen=True, slots=True)
class TimerExpired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Fault:
    """The interface went down, or a tracked resource failed (the first of them, if several)."""

    reason: str


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The last fault cleared."""

    reason: str


@dataclass(frozen=True, slots=True)
class MasterHintLost:
    """The TCP connection to the daemon at ``source`` closed: that master may have died."""

    source: IPv4Address


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    """Tracking moved our priority (1..254; ownership is configuration, not tracking)."""

    priority: int
    reason: str


Event = (
    Startup
    | Shutdown
    | AdvertisementReceived
    | TimerExpired
    | Fault
    | FaultCleared
    | PriorityChanged
    | MasterHintLost
)


# Actions: what the daemon carries out, in order.


@dataclass(frozen=True, slots=True)
class SendAdvertisement:
    priority: int


@dataclass(frozen=True, slots=True)
class AddVips:
    pass


@dataclass(frozen=True, slots=True)
class RemoveVips:
    pass


@dataclass(frozen=True, slots=True)
class SendGratuitousArps:
    pass


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    delay: float  # seconds from now


@dataclass(frozen=True, slots=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Notify:
    """A state change, with the reason for the log and the notify hooks."""

    state: State
    reason: str


@dataclass(frozen=True, slots=True)
class Discard:
    """An advertisement dropped by a rule that needs our configuration (count and log it)."""

    kind: str  # the drop counter
    reason: str


Action = (
    SendAdvertisement
    | AddVips
    | RemoveVips
    | SendGratuitousArps
    | StartTimer
    | StopTimer
    | Notify
    | Discard
)


class _Input(enum.Enum):
    """Table inputs: an event classified by the context."""

    STARTUP = "startup"
    STARTUP_OWNER = "startup as address owner"
    SHUTDOWN = "shutdown"
    ADVERT_ZERO = "advertisement with priority 0"
    ADVERT_HIGHER = "advertisement that outranks us"  # priority, or tie and higher address
    ADVERT_EQUAL = "advertisement with our priority from a lower address"
    ADVERT_LOWER = "advertisement with a lower priority"
    ADVERT_BAD_INTERVAL = "v2 advertisement with another interval"
    MASTER_DOWN_EXPIRED = "master down timer expired"
    ADVERT_EXPIRED = "advert timer expired"
    PREEMPT_DELAY_EXPIRED = "preempt delay expired"
    FAULT = "fault"
    FAULT_CLEARED = "fault cleared"
    FAULT_CLEARED_OWNER = "fault cleared, address owner"
    PRIORITY_CHANGED = "priority changed"
    GARP_HOLD_EXPIRED = "gratuitous ARP hold expired"
    HINT_LOST = "connection to the master's daemon lost"
    HINT_LOST_OTHER = "connection to a daemon that is not our master lost"


_ADVERTS = (
    _Input.ADVERT_ZERO,
    _Input.ADVERT_HIGHER,
    _Input.ADVERT_EQUAL,
    _Input.ADVERT_LOWER,
    _Input.ADVERT_BAD_INTERVAL,
)

_TIMER_INPUTS = {
    Timer.MASTER_DOWN: _Input.MASTER_DOWN_EXPIRED,
    Timer.ADVERT: _Input.ADVERT_EXPIRED,
    Timer.PREEMPT_DELAY: _Input.PREEMPT_DELAY_EXPIRED,
    Timer.GARP_HOLD: _Input.GARP_HOLD_EXPIRED,
}


class VirtualRouter:
    """One VRRP instance (one VRID) on this node."""

    def __init__(
        self,
        *,
        vrid: int,
        priority: int,
        primary_address: IPv4Address,
        advert_interval: float = 1.0,
        version: int = 3,
        preempt: bool = True,
        preempt_delay: float = 0.0,
    ) -> None:
        if not 1 <= vrid <= 255:
            raise ValueError(f"VRID {vrid}: must be 1..255")
        if not 1 <= priority <= OWNER_PRIORITY:
            raise ValueError(f"VRID {vrid}: priority {priority} must be 1..255")
        if version not in (2, 3):
            raise ValueError(f"VRID {vrid}: VRRP version {version}, only 2 and 3 exist")
        if advert_interval <= 0 or preempt_delay < 0:
            raise ValueError(f"VRID {vrid}: advert interval must be > 0, preempt delay >= 0")
        self.vrid = vrid
        self.priority = priority
        self.primary_address = primary_address
        self.advert_interval = advert_interval
        self.version = version
        self.preempt = preempt
        self.preempt_delay = preempt_delay
        self.state = State.INITIALIZE
        self.reason = "not started"  # why the current state was entered
        self.master_adver_interval = advert_interval
        self.preempt_held = False  # True while preempt_delay holds preemption back
        self.garp_held = False  # True while LOWER_PRIORITY_GARP_HOLD runs
        self.down_shortened = False  # Master_Down already cut short (priority 0 or a hint)
        self.last_master: IPv4Address | None = None

    @classmethod
    def from_config(cls, config: VrrpConfig, primary_address: IPv4Address) -> VirtualRouter:
        return cls(
            vrid=config.vrid,
            priority=config.priority,
            primary_address=primary_address,
            advert_interval=config.advert_interval,
            version=config.version,
            preempt=config.preempt,
            preempt_delay=config.preempt_delay,
        )

    # Timer arithmetic (RFC 9568 §6.1).

    @property
    def skew_time(self) -> float:
        if self.version == 2:
            return (256 - self.priority) / 256
        return (256 - self.priority) * self.master_adver_interval / 256

    @property
    def master_down_interval(self) -> float:
        return 3 * self.master_adver_interval + self.skew_time

    # The one entry point.

    def handle(self, event: Event) -> list[Action]:
        """Apply ``event``; return the actions to carry out, in order."""
        key = (self.state, self._classify(event))
        try:
            handler, next_state = _TABLE[key]
        except KeyError:
            raise ProtocolError(
                f"VRID {self.vrid}: {key[1].value} is not allowed in state {self.state.value}"
            ) from None
        actions: list[Action] = []
        reason = handler(self, event, actions)
        if next_state is not self.state:
            self.state = next_state
            self.reason = reason
            actions.append(Notify(next_state, reason))
        return actions

    def _classify(self, event: Event) -> _Input:
        match event:
            case Startup():
                return _Input.STARTUP_OWNER if self._owner else _Input.STARTUP
            case Shutdown():
                return _Input.SHUTDOWN
            case AdvertisementReceived(priority=priority, source=source, interval=interval):
                if self.version == 2 and interval != self.advert_interval:
                    return _Input.ADVERT_BAD_INTERVAL
                if priority == 0:
                    return _Input.ADVERT_ZERO
                if (priority, source) > (self.priority, self.primary_address):
                    return _Input.ADVERT_HIGHER
                if priority == self.priority:
                    return _Input.ADVERT_EQUAL
                return _Input.ADVERT_LOWER
            case TimerExpired(timer=timer):
                return _TIMER_INPUTS[timer]
            case Fault():
                return _Input.FAULT
            case FaultCleared():
                return _Input.FAULT_CLEARED_OWNER if self._owner else _Input.FAULT_CLEARED
            case PriorityChanged(priority=priority):
                if not 1 <= priority < OWNER_PRIORITY:
                    raise ValueError(f"VRID {self.vrid}: tracked priority {priority}, not 1..254")
                return _Input.PRIORITY_CHANGED
            case MasterHintLost(source=source):
                return _Input.HINT_LOST if source == self.last_master else _Input.HINT_LOST_OTHER
        raise TypeError(f"not a VRRP event: {event!r}")

    @property
    def _owner(self) -> bool:
        return self.priority == OWNER_PRIORITY

    # Handlers: append actions, return the reason a state change (if any) is logged with.

    def _become_master(self, actions: list[Action]) -> None:
        actions += [
            SendAdvertisement(self.priority),
            AddVips(),
            SendGratuitousArps(),
            StartTimer(Timer.ADVERT, self.advert_interval),
        ]
        self.last_master = self.primary_address

    def _become_backup(self, actions: list[Action]) -> None:
        self.master_adver_interval = self.advert_interval
        self.down_shortened = False
        actions.append(StartTimer(Timer.MASTER_DOWN, self.master_down_interval))

    def _hold_preemption(self, actions: list[Action]) -> None:
        """keepalived's preempt_delay: no preemption for a while after (re)starting."""
        if self.preempt and self.preempt_delay > 0:
            self.preempt_held = True
            actions.append(StartTimer(Timer.PREEMPT_DELAY, self.preempt_delay))

    def _on_startup(self, event: Event, actions: list[Action]) -> str:
        self._become_backup(actions)
        self._hold_preemption(actions)
        return f"started with priority {self.priority}"

    def _on_startup_owner(self, event: Event, actions: list[Action]) -> str:
        self._become_master(actions)
        return "started as address owner (priority 255)"

    def _on_fault_cleared(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, FaultCleared)
        self._become_backup(actions)
        self._hold_preemption(actions)
        return f"fault cleared: {event.reason}"

    def _on_fault_cleared_owner(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, FaultCleared)
        self._become_master(actions)
        return f"fault cleared: {event.reason}; address owner (priority 255)"

    def _stop_backup_timers(self, actions: list[Action]) -> None:
        actions.append(StopTimer(Timer.MASTER_DOWN))
        if self.preempt_held:
            self.preempt_held = False
            actions.append(StopTimer(Timer.PREEMPT_DELAY))

    def _on_backup_shutdown(self, event: Event, actions: list[Action]) -> str:
        self._stop_backup_timers(actions)
        return "shutdown"

    def _leave_master(self, actions: list[Action], *, priority: int) -> None:
        """Stop advertising after one last advertisement with ``priority``; drop the VIPs."""
        actions += [StopTimer(Timer.ADVERT), SendAdvertisement(priority), RemoveVips()]
        if self.garp_held:
            self.garp_held = False
            actions.append(StopTimer(Timer.GARP_HOLD))

    def _on_master_shutdown(self, event: Event, actions: list[Action]) -> str:
        self._leave_master(actions, priority=0)
        if self.preempt_held:
            self.preempt_held = False
            actions.append(StopTimer(Timer.PREEMPT_DELAY))
        return "shutdown: sent priority 0 so that a backup takes over at once"

    def _on_fault_shutdown(self, event: Event, actions: list[Action]) -> str:
        if self.preempt_held:
            self.preempt_held = False
            actions.append(StopTimer(Timer.PREEMPT_DELAY))
        return "shutdown"

    def _on_master_down(self, event: Event, actions: list[Action]) -> str:
        interval = self.master_down_interval
        self._become_master(actions)
        return f"no advertisement from a master for {interval:.3f}s"

    def _on_backup_advert_zero(self, event: Event, actions: list[Action]) -> str:
        self.down_shortened = True
        actions.append(StartTimer(Timer.MASTER_DOWN, self.skew_time))
        return ""

    def _accept_master(self, event: AdvertisementReceived, actions: list[Action]) -> None:
        if self.version == 3:
            self.master_adver_interval = event.interval
        self.last_master = event.source
        self.down_shortened = False
        actions.append(StartTimer(Timer.MASTER_DOWN, self.master_down_interval))

    def _on_backup_advert(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, AdvertisementReceived)
        self._accept_master(event, actions)
        return ""

    def _on_backup_advert_lower(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, AdvertisementReceived)
        if not self.preempt or self.preempt_held:
            self._accept_master(event, actions)
        # With preemption the lower master is ignored: Master_Down runs out and we take over.
        return ""

    def _on_master_advert_higher(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, AdvertisementReceived)
        # Our own priority once more: the winner hears a lower one and refreshes ARP caches.
        self._leave_master(actions, priority=self.priority)
        self._accept_master(event, actions)
        return (
            f"higher priority advertisement from {event.source} "
            f"(priority {event.priority}, ours {self.priority})"
        )

    def _on_v2_interval_mismatch(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, AdvertisementReceived)
        actions.append(
            Discard(
                "interval mismatch",
                f"advertisement from {event.source} with interval {event.interval:g}s, "
                f"ours is {self.advert_interval:g}s (VRRPv2 needs them equal)",
            )
        )
        return ""

    def _on_advert_timer(self, event: Event, actions: list[Action]) -> str:
        actions += [
            SendAdvertisement(self.priority),
            StartTimer(Timer.ADVERT, self.advert_interval),
        ]
        return ""

    def _on_preempt_delay_expired(self, event: Event, actions: list[Action]) -> str:
        self.preempt_held = False
        return ""

    def _on_master_advert_lower(self, event: Event, actions: list[Action]) -> str:
        # Another master (a split brain ending): outrank it now and win the clients back.
        actions.append(SendAdvertisement(self.priority))
        if not self.garp_held:
            self.garp_held = True
            actions += [
                SendGratuitousArps(),
                StartTimer(Timer.GARP_HOLD, LOWER_PRIORITY_GARP_HOLD),
            ]
        return ""

    def _on_garp_hold_expired(self, event: Event, actions: list[Action]) -> str:
        self.garp_held = False
        return ""

    def _on_hint_lost(self, event: Event, actions: list[Action]) -> str:
        # The master's process is gone, or so the kernel says: wait for one advertisement
        # (and our skew) instead of three; if it comes, the usual timer is back. A timer
        # already cut short (the master said priority 0 before exiting) stays as it is.
        if not self.down_shortened:
            self.down_shortened = True
            delay = self.master_adver_interval + self.skew_time
            actions.append(StartTimer(Timer.MASTER_DOWN, delay))
        return ""

    def _on_backup_fault(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, Fault)
        actions.append(StopTimer(Timer.MASTER_DOWN))
        return f"fault: {event.reason}"

    def _on_master_fault(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, Fault)
        # Priority 0 lets the peer take over at once when the link still works (a tracked
        # proxy failed); with the link down the send fails and the peer times out instead.
        self._leave_master(actions, priority=0)
        return f"fault: {event.reason}"

    def _on_initialize_fault(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, Fault)
        return f"fault: {event.reason}"

    def _on_priority_changed(self, event: Event, actions: list[Action]) -> str:
        assert isinstance(event, PriorityChanged)
        self.priority = event.priority
        return ""

    def _on_master_priority_changed(self, event: Event, actions: list[Action]) -> str:
        # Advertise the new priority at once so that a better backup can preempt now.
        self._on_priority_changed(event, actions)
        return self._on_advert_timer(event, actions)

    def _ignore(self, event: Event, actions: list[Action]) -> str:
        return ""


_Handler = Callable[[VirtualRouter, Event, list[Action]], str]

_I, _S, _V = _Input, State, VirtualRouter

# (state, input) -> (handler, next state)
_TABLE: dict[tuple[State, _Input], tuple[_Handler, State]] = {
    (_S.INITIALIZE, _I.STARTUP): (_V._on_startup, _S.BACKUP),
    (_S.INITIALIZE, _I.STARTUP_OWNER): (_V._on_startup_owner, _S.MASTER),
    (_S.INITIALIZE, _I.SHUTDOWN): (_V._ignore, _S.INITIALIZE),
    (_S.INITIALIZE, _I.FAULT): (_V._on_initialize_fault, _S.FAULT),
    (_S.INITIALIZE, _I.PRIORITY_CHANGED): (_V._on_priority_changed, _S.INITIALIZE),
    (_S.BACKUP, _I.SHUTDOWN): (_V._on_backup_shutdown, _S.INITIALIZE),
    (_S.BACKUP, _I.MASTER_DOWN_EXPIRED): (_V._on_master_down, _S.MASTER),
    (_S.BACKUP, _I.ADVERT_ZERO): (_V._on_backup_advert_zero, _S.BACKUP),
    (_S.BACKUP, _I.ADVERT_HIGHER): (_V._on_backup_advert, _S.BACKUP),
    (_S.BACKUP, _I.ADVERT_EQUAL): (_V._on_backup_advert, _S.BACKUP),
    (_S.BACKUP, _I.ADVERT_LOWER): (_V._on_backup_advert_lower, _S.BACKUP),
    (_S.BACKUP, _I.ADVERT_BAD_INTERVAL): (_V._on_v2_interval_mismatch, _S.BACKUP),
    (_S.BACKUP, _I.PREEMPT_DELAY_EXPIRED): (_V._on_preempt_delay_expired, _S.BACKUP),
    (_S.BACKUP, _I.FAULT): (_V._on_backup_fault, _S.FAULT),
    (_S.BACKUP, _I.FAULT_CLEARED): (_V._ignore, _S.BACKUP),
    (_S.BACKUP, _I.FAULT_CLEARED_OWNER): (_V._ignore, _S.BACKUP),
    (_S.BACKUP, _I.PRIORITY_CHANGED): (_V._on_priority_changed, _S.BACKUP),
    (_S.BACKUP, _I.HINT_LOST): (_V._on_hint_lost, _S.BACKUP),
    (_S.MASTER, _I.SHUTDOWN): (_V._on_master_shutdown, _S.INITIALIZE),
    (_S.MASTER, _I.ADVERT_EXPIRED): (_V._on_advert_timer, _S.MASTER),
    (_S.MASTER, _I.ADVERT_ZERO): (_V._on_advert_timer, _S.MASTER),
    (_S.MASTER, _I.ADVERT_HIGHER): (_V._on_master_advert_higher, _S.BACKUP),
    (_S.MASTER, _I.ADVERT_EQUAL): (_V._on_master_advert_lower, _S.MASTER),
    (_S.MASTER, _I.ADVERT_LOWER): (_V._on_master_advert_lower, _S.MASTER),
    (_S.MASTER, _I.GARP_HOLD_EXPIRED): (_V._on_garp_hold_expired, _S.MASTER),
    (_S.MASTER, _I.ADVERT_BAD_INTERVAL): (_V._on_v2_interval_mismatch, _S.MASTER),
    (_S.MASTER, _I.PREEMPT_DELAY_EXPIRED): (_V._on_preempt_delay_expired, _S.MASTER),
    (_S.MASTER, _I.FAULT): (_V._on_master_fault, _S.FAULT),
    (_S.MASTER, _I.FAULT_CLEARED): (_V._ignore, _S.MASTER),
    (_S.MASTER, _I.FAULT_CLEARED_OWNER): (_V._ignore, _S.MASTER),
    (_S.MASTER, _I.PRIORITY_CHANGED): (_V._on_master_priority_changed, _S.MASTER),
    (_S.FAULT, _I.SHUTDOWN): (_V._on_fault_shutdown, _S.INITIALIZE),
    (_S.FAULT, _I.FAULT): (_V._ignore, _S.FAULT),
    (_S.FAULT, _I.FAULT_CLEARED): (_V._on_fault_cleared, _S.BACKUP),
    (_S.FAULT, _I.FAULT_CLEARED_OWNER): (_V._on_fault_cleared_owner, _S.MASTER),
    (_S.FAULT, _I.PREEMPT_DELAY_EXPIRED): (_V._on_preempt_delay_expired, _S.FAULT),
    (_S.FAULT, _I.PRIORITY_CHANGED): (_V._on_priority_changed, _S.FAULT),
}
# Packets arrive in any state; outside BACKUP and MASTER they are ignored (RFC 9568 §6.4.1).
for _state in (_S.INITIALIZE, _S.FAULT):
    for _advert in _ADVERTS:
        _TABLE[_state, _advert] = (_V._ignore, _state)
# A hint is only a hint: it matters to a backup about its own master, and to nobody else.
for _state in _S:
    _TABLE[_state, _I.HINT_LOST_OTHER] = (_V._ignore, _state)
    _TABLE.setdefault((_state, _I.HINT_LOST), (_V._ignore, _state))
