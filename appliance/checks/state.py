"""The health state of one server: every rule that changes it lives here.

The article's "Testing the servers": a load balancer sends traffic only to
servers that pass their checks, takes a server out after ``fall`` consecutive
failed checks and puts it back after ``rise`` consecutive successes, and lets
the operator drain or remove a server by hand. This module owns those rules,
without I/O (the sans-io style of h11/h2): the scheduler and the runtime API
feed it events, it answers with notices for the log, and the backend reads
``usable`` to decide whether the server takes new traffic.

Two states are kept, orthogonal as in HAProxy:

- the operational (health) state, from the checks: ``UP``, ``GOING_DOWN``
  (HAProxy's "UP 1/3": up, with some failures counted), ``DOWN`` and
  ``GOING_UP`` ("DOWN 1/2": down, with some successes counted);
- the admin state, from the operator or the server's agent: ``READY``,
  ``DRAIN`` (no new users, still checked) and ``MAINT`` (no traffic at all;
  checks still run, so the health state is current when the server leaves
  maintenance).

A third, smaller dimension is the agent's verdict (HAProxy's agent check): an
agent that says ``down`` holds the server down whatever the checks find, until
it says ``up``; the checks keep counting meanwhile. Passive observation of
live traffic adds one more input: ``error_limit`` consecutive errors (with no
passed check or good live answer in between) force the server down at once.

All are table driven, as in h2: a dict from (state, input) to (next state,
notice kind); a pair missing from a table is a bug and raises
``InvalidTransition``. A check result becomes one of four inputs according to
the counters (a success that does or does not complete ``rise``, a failure
that does or does not complete ``fall``), so the table itself has no guards.

Notices carry what a log line needs except the farm-wide counts ("1 active
and 0 backup servers left"), which only the backend knows: ``Notice.line``
takes them and returns HAProxy's wording, e.g.

    Server app/web1 is DOWN, reason: Layer7 wrong status, code: 500,
    info: "Internal Server Error", check duration: 2ms. 1 active and 0 backup
    servers left.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass


class Health(enum.Enum):
    UP = "UP"
    GOING_DOWN = "GOING_DOWN"
    DOWN = "DOWN"
    GOING_UP = "GOING_UP"


class Admin(enum.Enum):
    READY = "READY"
    DRAIN = "DRAIN"
    MAINT = "MAINT"


class Event(enum.Enum):
    """What can happen to a server."""

    CHECK_PASSED = "check passed"
    CHECK_FAILED = "check failed"
    SET_READY = "set ready"
    SET_DRAIN = "set drain"
    SET_MAINT = "set maint"
    FORCE_UP = "force up"
    FORCE_DOWN = "force down"
    AGENT_UP = "agent up"  # the agent lets go of the server
    AGENT_DOWN = "agent down"  # the agent holds the server down
    OBSERVED_ERROR = "observed error"  # an error on live traffic (passive observation)


class _Input(enum.Enum):
    """Health-table inputs: a check result classified by the counters, or a forced state."""

    PASS = "pass"  # a success that does not complete ``rise``
    PASS_RISE = "pass, rise reached"
    FAIL = "fail"  # a failure that does not complete ``fall``
    FAIL_FALL = "fail, fall reached"
    FORCE_UP = "force up"
    FORCE_DOWN = "force down"


class Kind(enum.Enum):
    """What a notice reports."""

    UP = "up"  # became operational (or was forced up)
    DOWN = "down"  # stopped being operational (or was forced down)
    CHECK_SUCCEEDED = "check succeeded"  # first success while down: now going up
    CHECK_FAILED = "check failed"  # first failure while up: now going down
    ENTER_DRAIN = "enter drain"
    LEAVE_DRAIN = "leave drain"
    ENTER_MAINT = "enter maint"
    LEAVE_MAINT = "leave maint"


class InvalidTransition(RuntimeError):
    """A (state, input) pair that the tables do not allow."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check, in HAProxy's terms (``reason`` as in its logs)."""

    ok: bool
    reason: str  # "Layer7 check passed", "Layer4 connection problem", ...
    code: int | None = None  # HTTP status, when there was one
    info: str = ""  # e.g. the status line's reason phrase, "Connection refused"
    duration: float | None = None  # seconds

    def describe(self) -> str:
        """``reason: X, code: N, info: "Y", check duration: Zms`` (parts that exist)."""
        parts = [f"reason: {self.reason}"]
        if self.code is not None:
            parts.append(f"code: {self.code}")
        if self.info and not self.ok:
            parts.append(f'info: "{self.info}"')
        if self.duration is not None:
            parts.append(f"check duration: {int(self.duration * 1000)}ms")
        return ", ".join(parts)


FORCED = CheckResult(ok=True, reason="changed from CLI")


# (health, input) -> (next health, notice or None)
_HEALTH: dict[tuple[Health, _Input], tuple[Health, Kind | None]] = {
    (Health.UP, _Input.PASS): (Health.UP, None),
    (Health.UP, _Input.PASS_RISE): (Health.UP, None),
    (Health.UP, _Input.FAIL): (Health.GOING_DOWN, Kind.CHECK_FAILED),
    (Health.UP, _Input.FAIL_FALL): (Health.DOWN, Kind.DOWN),
    (Health.UP, _Input.FORCE_UP): (Health.UP, None),
    (Health.UP, _Input.FORCE_DOWN): (Health.DOWN, Kind.DOWN),
    (Health.GOING_DOWN, _Input.PASS): (Health.UP, Kind.CHECK_SUCCEEDED),
    (Health.GOING_DOWN, _Input.PASS_RISE): (Health.UP, Kind.CHECK_SUCCEEDED),
    (Health.GOING_DOWN, _Input.FAIL): (Health.GOING_DOWN, None),
    (Health.GOING_DOWN, _Input.FAIL_FALL): (Health.DOWN, Kind.DOWN),
    (Health.GOING_DOWN, _Input.FORCE_UP): (Health.UP, None),
    (Health.GOING_DOWN, _Input.FORCE_DOWN): (Health.DOWN, Kind.DOWN),
    (Health.DOWN, _Input.PASS): (Health.GOING_UP, Kind.CHECK_SUCCEEDED),
    (Health.DOWN, _Input.PASS_RISE): (Health.UP, Kind.UP),
    (Health.DOWN, _Input.FAIL): (Health.DOWN, None),
    (Health.DOWN, _Input.FAIL_FALL): (Health.DOWN, None),
    (Health.DOWN, _Input.FORCE_UP): (Health.UP, Kind.UP),
    (Health.DOWN, _Input.FORCE_DOWN): (Health.DOWN, None),
    (Health.GOING_UP, _Input.PASS): (Health.GOING_UP, None),
    (Health.GOING_UP, _Input.PASS_RISE): (Health.UP, Kind.UP),
    (Health.GOING_UP, _Input.FAIL): (Health.DOWN, Kind.CHECK_FAILED),
    (Health.GOING_UP, _Input.FAIL_FALL): (Health.DOWN, Kind.CHECK_FAILED),
    (Health.GOING_UP, _Input.FORCE_UP): (Health.UP, Kind.UP),
    (Health.GOING_UP, _Input.FORCE_DOWN): (Health.DOWN, None),
}

# (admin, event) -> (next admin, notice or None)
_ADMIN: dict[tuple[Admin, Event], tuple[Admin, Kind | None]] = {
    (Admin.READY, Event.SET_READY): (Admin.READY, None),
    (Admin.READY, Event.SET_DRAIN): (Admin.DRAIN, Kind.ENTER_DRAIN),
    (Admin.READY, Event.SET_MAINT): (Admin.MAINT, Kind.ENTER_MAINT),
    (Admin.DRAIN, Event.SET_READY): (Admin.READY, Kind.LEAVE_DRAIN),
    (Admin.DRAIN, Event.SET_DRAIN): (Admin.DRAIN, None),
    (Admin.DRAIN, Event.SET_MAINT): (Admin.MAINT, Kind.ENTER_MAINT),
    (Admin.MAINT, Event.SET_READY): (Admin.READY, Kind.LEAVE_MAINT),
    (Admin.MAINT, Event.SET_DRAIN): (Admin.DRAIN, Kind.LEAVE_MAINT),
    (Admin.MAINT, Event.SET_MAINT): (Admin.MAINT, None),
}

# (agent holds it down, event, health operational) -> (agent holds it down, notice or None)
_AGENT: dict[tuple[bool, Event, bool], tuple[bool, Kind | None]] = {
    (False, Event.AGENT_DOWN, True): (True, Kind.DOWN),
    (False, Event.AGENT_DOWN, False): (True, None),
    (True, Event.AGENT_DOWN, True): (True, None),
    (True, Event.AGENT_DOWN, False): (True, None),
    (False, Event.AGENT_UP, True): (False, None),
    (False, Event.AGENT_UP, False): (False, None),
    (True, Event.AGENT_UP, True): (False, Kind.UP),
    (True, Event.AGENT_UP, False): (False, None),  # the checks still say down
}

_OPERATIONAL = (Health.UP, Health.GOING_DOWN)
HEALTH_ANALYZE = "Health analyze"  # HAProxy's reason for a server taken out by observation


@dataclass(frozen=True, slots=True)
class Notice:
    """One event worth a log line; ``line`` completes it with the farm's counts."""

    kind: Kind
    backend: str
    server: str
    backup: bool
    result: CheckResult | None = None
    status: str = ""  # "1/2 DOWN": the counter after a check (CHECK_* notices)
    operational: bool = True  # health after the change (for the admin notices)

    def line(self, active: int, backup: int) -> str:
        """The log line, given the usable servers of the backend after the change."""
        who = f"{'Backup ' if self.backup else ''}Server {self.backend}/{self.server}"
        left = f"{active} active and {backup} backup servers left."
        online = f"{active} active and {backup} backup servers online."
        kind = self.kind
        result = self.result
        if kind is Kind.UP:
            return f"{who} is UP, {result.describe()}. {online}"
        if kind is Kind.DOWN:
            return f"{who} is DOWN, {result.describe()}. {left}"
        if kind in (Kind.CHECK_SUCCEEDED, Kind.CHECK_FAILED):
            verb = "succeeded" if kind is Kind.CHECK_SUCCEEDED else "failed"
            return (
                f"Health check for {who[0].lower()}{who[1:]} {verb}, "
                f"{result.describe()}, status: {self.status}."
            )
        if kind is Kind.ENTER_DRAIN:
            return f"{who} enters drain state. {left}"
        if kind is Kind.ENTER_MAINT:
            return f"{who} is going DOWN for maintenance. {left}"
        word = "UP" if self.operational else "DOWN"
        how = "drain" if kind is Kind.LEAVE_DRAIN else "maintenance"
        return f"{who} is {word} (leaving forced {how}). {online if self.operational else left}"


class ServerState:
    """Health and admin state of one server, with its check counters.

    A server starts UP and READY, as in HAProxy: it needs ``fall`` failed
    checks to be taken out. A server that is not checked simply never gets
    check events.
    """

    __slots__ = (
        "admin",
        "agent_down",
        "backend",
        "backup",
        "error_limit",
        "errors",
        "failures",
        "fall",
        "health",
        "rise",
        "server",
        "successes",
    )

    def __init__(
        self,
        backend: str,
        server: str,
        *,
        rise: int = 2,
        fall: int = 3,
        backup: bool = False,
        error_limit: int = 10,
    ) -> None:
        if rise < 1 or fall < 1 or error_limit < 1:
            raise ValueError(
                f"rise, fall and error_limit must be at least 1, "
                f"got {rise}, {fall} and {error_limit}"
            )
        self.backend = backend
        self.server = server
        self.backup = backup
        self.rise = rise
        self.fall = fall
        self.health = Health.UP
        self.admin = Admin.READY
        self.successes = 0  # consecutive successful checks (reset by a failure)
        self.failures = 0  # consecutive failed checks (reset by a success)
        self.agent_down = False  # the agent said down (or fail, stopped) and not up since
        self.error_limit = error_limit
        self.errors = 0  # consecutive errors on live traffic (reset by a pass or a good answer)

    @property
    def operational(self) -> bool:
        """Up as far as the checks know (UP or going down) and not held down by the agent."""
        return self.health in _OPERATIONAL and not self.agent_down

    @property
    def usable(self) -> bool:
        """May take new traffic: operational and READY."""
        return self.admin is Admin.READY and self.operational

    @property
    def status(self) -> str:
        """HAProxy's check status: ``UP``, ``UP 1/3``, ``DOWN``, ``DOWN 1/2``, ``MAINT``..."""
        if self.admin is Admin.MAINT:
            return "MAINT"
        if self.agent_down:
            return "DOWN (agent)"
        text = {
            Health.UP: "UP",
            Health.GOING_DOWN: f"UP {self._left()}/{self.fall}",
            Health.DOWN: "DOWN",
            Health.GOING_UP: f"DOWN {self.successes}/{self.rise}",
        }[self.health]
        return "DRAIN" if self.admin is Admin.DRAIN and self.operational else text

    def _left(self) -> int:
        """Failures still needed to go down (HAProxy counts down: "UP 2/3" after one)."""
        return self.fall - self.failures

    def feed(self, event: Event, result: CheckResult | None = None) -> list[Notice]:
        """Apply ``event`` (check events need their ``result``); return the notices."""
        if event in (Event.SET_READY, Event.SET_DRAIN, Event.SET_MAINT):
            return self._admin(event)
        if event is Event.FORCE_UP:
            return self._health(_Input.FORCE_UP, result or FORCED)
        if event is Event.FORCE_DOWN:
            return self._health(_Input.FORCE_DOWN, result or FORCED)
        if result is None:
            raise ValueError(f"{event.value} needs a check result")
        if event in (Event.AGENT_UP, Event.AGENT_DOWN):
            return self._agent(event, result)
        if event is Event.OBSERVED_ERROR:
            return self._observed(result)
        if event is Event.CHECK_PASSED:
            self.errors = 0  # "consecutive" errors: none since the last passed check
            self.failures = 0
            self.successes += 1
            rose = self.successes >= self.rise
            return self._health(_Input.PASS_RISE if rose else _Input.PASS, result)
        self.successes = 0
        self.failures += 1
        fell = self.failures >= self.fall
        return self._health(_Input.FAIL_FALL if fell else _Input.FAIL, result)

    def _health(self, what: _Input, result: CheckResult) -> list[Notice]:
        try:
            health, kind = _HEALTH[self.health, what]
        except KeyError:
            raise InvalidTransition(f"{self.health.value} cannot take {what.value}") from None
        self.health = health
        if what in (_Input.FORCE_UP, _Input.FORCE_DOWN):
            # A forced state is settled: leaving it takes a full ``rise``/``fall`` run.
            self.successes = self.failures = 0
        if self.agent_down and kind in (Kind.UP, Kind.DOWN):
            kind = None  # held down by the agent: nothing changes for traffic
        if kind is None:
            return []
        status = ""
        if kind is Kind.CHECK_SUCCEEDED:
            status = "UP" if health is Health.UP else f"{self.successes}/{self.rise} DOWN"
        elif kind is Kind.CHECK_FAILED:
            status = "DOWN" if health is Health.DOWN else f"{self._left()}/{self.fall} UP"
        return [self._notice(kind, result, status)]

    def _agent(self, event: Event, result: CheckResult) -> list[Notice]:
        healthy = self.health in _OPERATIONAL
        self.agent_down, kind = _AGENT[self.agent_down, event, healthy]
        return [] if kind is None else [self._notice(kind, result, "")]

    def _observed(self, result: CheckResult) -> list[Notice]:
        """One more error on live traffic; at ``error_limit`` the server goes down at once."""
        self.errors += 1
        if self.errors < self.error_limit:
            return []
        info = f"Detected {self.errors} consecutive errors, last one was: {result.info}"
        self.errors = 0
        return self._health(_Input.FORCE_DOWN, dataclasses.replace(result, info=info))

    def _admin(self, event: Event) -> list[Notice]:
        try:
            admin, kind = _ADMIN[self.admin, event]
        except KeyError:
            raise InvalidTransition(f"{self.admin.value} cannot take {event.value}") from None
        self.admin = admin
        return [] if kind is None else [self._notice(kind, None, "")]

    def _notice(self, kind: Kind, result: CheckResult | None, status: str) -> Notice:
        return Notice(
            kind=kind,
            backend=self.backend,
            server=self.server,
            backup=self.backup,
            result=result,
            status=status,
            operational=self.operational,
        )


def ramp(value: int, elapsed: float, slowstart: float) -> int:
    """Effective weight or maxconn ``elapsed`` seconds into a ``slowstart`` ramp.

    HAProxy ramps both: grows linearly from 1 to ``value``; zero (no weight,
    or no maxconn limit) stays zero.
    """
    if value == 0 or elapsed >= slowstart:
        return value
    return max(1, math.ceil(value * elapsed / slowstart))
