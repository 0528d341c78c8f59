"""The server health state machine (appliance/checks/state.py).

Every (state, input) pair of both tables is exercised, then the log lines and
HAProxy's status strings are checked word for word.
"""

from __future__ import annotations

import itertools

import pytest

from appliance.checks import state as st
from appliance.checks.state import (
    Admin,
    CheckResult,
    Event,
    Health,
    InvalidTransition,
    Kind,
    ServerState,
)

pytestmark = pytest.mark.unit

OK = CheckResult(True, "Layer7 check passed", code=200, info="OK", duration=0.001)
BAD = CheckResult(
    False, "Layer7 wrong status", code=500, info="Internal Server Error", duration=0.002
)
REFUSED = CheckResult(False, "Layer4 connection problem", info="Connection refused", duration=0)


def machine(health: Health = Health.UP, *, rise: int = 2, fall: int = 3, **kw) -> ServerState:
    """A machine driven into ``health`` by checks (never by forcing)."""
    s = ServerState("app", "web1", rise=rise, fall=fall, **kw)
    if health in (Health.DOWN, Health.GOING_UP):
        for _ in range(fall):
            s.feed(Event.CHECK_FAILED, BAD)
        assert s.health is Health.DOWN
    if health is Health.GOING_UP:
        s.feed(Event.CHECK_PASSED, OK)
    if health is Health.GOING_DOWN:
        s.feed(Event.CHECK_FAILED, BAD)
    assert s.health is health
    return s


def kinds(notices: list[st.Notice]) -> list[Kind]:
    return [n.kind for n in notices]


# -- the health table, pair by pair ------------------------------------------------

# (start, event, result) -> (health after, notice kinds), with rise 2 / fall 3.
HEALTH_CASES = [
    (Health.UP, Event.CHECK_PASSED, OK, Health.UP, []),
    (Health.UP, Event.CHECK_FAILED, BAD, Health.GOING_DOWN, [Kind.CHECK_FAILED]),
    (Health.UP, Event.FORCE_UP, None, Health.UP, []),
    (Health.UP, Event.FORCE_DOWN, None, Health.DOWN, [Kind.DOWN]),
    (Health.GOING_DOWN, Event.CHECK_PASSED, OK, Health.UP, [Kind.CHECK_SUCCEEDED]),
    (Health.GOING_DOWN, Event.CHECK_FAILED, BAD, Health.GOING_DOWN, []),
    (Health.GOING_DOWN, Event.FORCE_UP, None, Health.UP, []),
    (Health.GOING_DOWN, Event.FORCE_DOWN, None, Health.DOWN, [Kind.DOWN]),
    (Health.DOWN, Event.CHECK_PASSED, OK, Health.GOING_UP, [Kind.CHECK_SUCCEEDED]),
    (Health.DOWN, Event.CHECK_FAILED, BAD, Health.DOWN, []),
    (Health.DOWN, Event.FORCE_UP, None, Health.UP, [Kind.UP]),
    (Health.DOWN, Event.FORCE_DOWN, None, Health.DOWN, []),
    (Health.GOING_UP, Event.CHECK_PASSED, OK, Health.UP, [Kind.UP]),
    (Health.GOING_UP, Event.CHECK_FAILED, BAD, Health.DOWN, [Kind.CHECK_FAILED]),
    (Health.GOING_UP, Event.FORCE_UP, None, Health.UP, [Kind.UP]),
    (Health.GOING_UP, Event.FORCE_DOWN, None, Health.DOWN, []),
]


@pytest.mark.parametrize(("start", "event", "result", "after", "notices"), HEALTH_CASES)
def test_health_transition(start, event, result, after, notices):
    s = machine(start)
    assert kinds(s.feed(event, result)) == notices
    assert s.health is after
    assert s.admin is Admin.READY


def test_every_pair_of_the_health_table_is_defined():
    for pair in itertools.product(Health, st._Input):
        assert pair in st._HEALTH


def test_every_pair_of_the_admin_table_is_defined():
    admin_events = (Event.SET_READY, Event.SET_DRAIN, Event.SET_MAINT)
    for pair in itertools.product(Admin, admin_events):
        assert pair in st._ADMIN
    assert len(st._ADMIN) == len(Admin) * len(admin_events)


def test_the_last_input_of_rise_and_fall_is_a_transition_of_its_own():
    # rise 1 / fall 1: a single check settles the state.
    s = machine(rise=1, fall=1)
    assert kinds(s.feed(Event.CHECK_FAILED, BAD)) == [Kind.DOWN]
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.UP]
    assert s.health is Health.UP


def test_a_pair_missing_from_the_table_is_an_error(monkeypatch):
    monkeypatch.delitem(st._HEALTH, (Health.UP, st._Input.FAIL))
    s = machine()
    with pytest.raises(InvalidTransition, match="UP cannot take fail"):
        s.feed(Event.CHECK_FAILED, BAD)


def test_a_check_event_needs_a_result():
    with pytest.raises(ValueError, match="needs a check result"):
        machine().feed(Event.CHECK_FAILED)


def test_rise_and_fall_must_be_positive():
    with pytest.raises(ValueError):
        ServerState("app", "web1", rise=0)


# -- counting ------------------------------------------------------------------------


def test_fall_consecutive_failures_take_a_server_down():
    s = machine(fall=3)
    assert kinds(s.feed(Event.CHECK_FAILED, BAD)) == [Kind.CHECK_FAILED]
    assert s.status == "UP 2/3"
    assert s.feed(Event.CHECK_FAILED, BAD) == []
    assert s.status == "UP 1/3"
    assert s.usable
    assert kinds(s.feed(Event.CHECK_FAILED, BAD)) == [Kind.DOWN]
    assert s.status == "DOWN"
    assert not s.usable


def test_a_success_in_between_restarts_the_count_of_failures():
    s = machine(fall=2)
    s.feed(Event.CHECK_FAILED, BAD)
    s.feed(Event.CHECK_PASSED, OK)
    assert s.health is Health.UP
    s.feed(Event.CHECK_FAILED, BAD)
    assert s.health is Health.GOING_DOWN
    assert kinds(s.feed(Event.CHECK_FAILED, BAD)) == [Kind.DOWN]


def test_rise_consecutive_successes_bring_a_server_back():
    s = machine(Health.DOWN, rise=3)
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.CHECK_SUCCEEDED]
    assert s.status == "DOWN 1/3"
    assert not s.usable
    s.feed(Event.CHECK_PASSED, OK)
    assert s.status == "DOWN 2/3"
    s.feed(Event.CHECK_FAILED, BAD)  # the count starts again
    assert s.status == "DOWN"
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.CHECK_SUCCEEDED]
    assert s.feed(Event.CHECK_PASSED, OK) == []
    assert s.health is Health.GOING_UP
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.UP]
    assert s.usable


def test_after_a_forced_state_the_counts_start_afresh():
    s = machine()
    for _ in range(5):
        s.feed(Event.CHECK_PASSED, OK)
    s.feed(Event.FORCE_DOWN)
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.CHECK_SUCCEEDED]
    assert s.health is Health.GOING_UP


# -- admin states --------------------------------------------------------------------

ADMIN_CASES = [
    (Admin.READY, Event.SET_READY, Admin.READY, []),
    (Admin.READY, Event.SET_DRAIN, Admin.DRAIN, [Kind.ENTER_DRAIN]),
    (Admin.READY, Event.SET_MAINT, Admin.MAINT, [Kind.ENTER_MAINT]),
    (Admin.DRAIN, Event.SET_READY, Admin.READY, [Kind.LEAVE_DRAIN]),
    (Admin.DRAIN, Event.SET_DRAIN, Admin.DRAIN, []),
    (Admin.DRAIN, Event.SET_MAINT, Admin.MAINT, [Kind.ENTER_MAINT]),
    (Admin.MAINT, Event.SET_READY, Admin.READY, [Kind.LEAVE_MAINT]),
    (Admin.MAINT, Event.SET_DRAIN, Admin.DRAIN, [Kind.LEAVE_MAINT]),
    (Admin.MAINT, Event.SET_MAINT, Admin.MAINT, []),
]
_TO = {Admin.READY: Event.SET_READY, Admin.DRAIN: Event.SET_DRAIN, Admin.MAINT: Event.SET_MAINT}


@pytest.mark.parametrize(("start", "event", "after", "notices"), ADMIN_CASES)
@pytest.mark.parametrize("health", list(Health))
def test_admin_transition(health, start, event, after, notices):
    s = machine(health)
    s.feed(_TO[start])
    assert kinds(s.feed(event)) == notices
    assert s.admin is after
    assert s.health is health  # orthogonal: the operator does not touch the health
    expected = after is Admin.READY and health in (Health.UP, Health.GOING_DOWN)
    assert s.usable is expected


@pytest.mark.parametrize("admin", [Admin.DRAIN, Admin.MAINT])
def test_checks_keep_counting_under_drain_and_maint(admin):
    s = machine()
    s.feed(_TO[admin])
    for _ in range(3):
        s.feed(Event.CHECK_FAILED, BAD)
    assert s.health is Health.DOWN
    assert not s.usable
    notices = s.feed(Event.SET_READY)
    assert not s.usable  # still down after the operator's READY
    if admin is Admin.MAINT:
        assert notices[0].line(1, 0) == (
            "Server app/web1 is DOWN (leaving forced maintenance). 1 active and 0 backup "
            "servers left."
        )


def test_status_strings():
    s = machine()
    assert s.status == "UP"
    s.feed(Event.SET_DRAIN)
    assert s.status == "DRAIN"
    s.feed(Event.SET_MAINT)
    assert s.status == "MAINT"
    s.feed(Event.SET_READY)
    s.feed(Event.FORCE_DOWN)
    assert s.status == "DOWN"


# -- log lines -----------------------------------------------------------------------


def test_down_line():
    s = machine(fall=1)
    (notice,) = s.feed(Event.CHECK_FAILED, BAD)
    assert notice.line(1, 0) == (
        'Server app/web1 is DOWN, reason: Layer7 wrong status, code: 500, info: "Internal '
        'Server Error", check duration: 2ms. 1 active and 0 backup servers left.'
    )


def test_up_line():
    s = machine(Health.GOING_UP)
    (notice,) = s.feed(Event.CHECK_PASSED, OK)
    assert notice.line(2, 0) == (
        "Server app/web1 is UP, reason: Layer7 check passed, code: 200, check duration: 1ms. "
        "2 active and 0 backup servers online."
    )


def test_layer4_line_has_no_code():
    s = machine(fall=1)
    (notice,) = s.feed(Event.CHECK_FAILED, REFUSED)
    assert notice.line(0, 0) == (
        'Server app/web1 is DOWN, reason: Layer4 connection problem, info: "Connection '
        'refused", check duration: 0ms. 0 active and 0 backup servers left.'
    )


def test_backup_servers_are_named_so():
    s = ServerState("app", "spare", backup=True, fall=1)
    (notice,) = s.feed(Event.CHECK_FAILED, BAD)
    assert notice.line(0, 0).startswith("Backup Server app/spare is DOWN, ")


def test_intermediate_check_lines():
    s = machine(fall=3)
    (notice,) = s.feed(Event.CHECK_FAILED, BAD)
    assert notice.line(1, 0) == (
        "Health check for server app/web1 failed, reason: Layer7 wrong status, code: 500, info: "
        '"Internal Server Error", check duration: 2ms, status: 2/3 UP.'
    )
    (notice,) = s.feed(Event.CHECK_PASSED, OK)
    assert notice.line(1, 0) == (
        "Health check for server app/web1 succeeded, reason: Layer7 check passed, code: 200, "
        "check duration: 1ms, status: UP."
    )
    s = machine(Health.DOWN, rise=2)
    (notice,) = s.feed(Event.CHECK_PASSED, OK)
    assert notice.line(0, 0).endswith("status: 1/2 DOWN.")


def test_forced_lines():
    s = machine()
    (notice,) = s.feed(Event.FORCE_DOWN)
    assert notice.line(0, 0) == (
        "Server app/web1 is DOWN, reason: changed from CLI. 0 active and 0 backup servers left."
    )


def test_admin_lines():
    s = machine()
    assert s.feed(Event.SET_DRAIN)[0].line(1, 0) == (
        "Server app/web1 enters drain state. 1 active and 0 backup servers left."
    )
    assert s.feed(Event.SET_READY)[0].line(2, 0) == (
        "Server app/web1 is UP (leaving forced drain). 2 active and 0 backup servers online."
    )
    assert s.feed(Event.SET_MAINT)[0].line(1, 0) == (
        "Server app/web1 is going DOWN for maintenance. 1 active and 0 backup servers left."
    )
    assert s.feed(Event.SET_READY)[0].line(2, 0) == (
        "Server app/web1 is UP (leaving forced maintenance). 2 active and 0 backup servers online."
    )


# -- the agent's verdict ------------------------------------------------------------

AGENT_DOWN = CheckResult(False, "Layer7 wrong status", info="via agent : down")
AGENT_UP = CheckResult(True, "Layer7 check passed", info="via agent : up")


def test_every_triple_of_the_agent_table_is_defined():
    for pair in itertools.product((False, True), (Event.AGENT_UP, Event.AGENT_DOWN), (False, True)):
        assert pair in st._AGENT


def test_the_agent_holds_a_healthy_server_down_until_it_says_up():
    s = machine()
    (down,) = s.feed(Event.AGENT_DOWN, AGENT_DOWN)
    assert down.line(1, 0) == (
        'Server app/web1 is DOWN, reason: Layer7 wrong status, info: "via agent : down". '
        "1 active and 0 backup servers left."
    )
    assert (s.usable, s.status, s.health) == (False, "DOWN (agent)", Health.UP)
    assert s.feed(Event.AGENT_DOWN, AGENT_DOWN) == []  # said again: nothing new
    assert s.feed(Event.CHECK_PASSED, OK) == []  # passing checks do not override it
    assert not s.usable
    assert kinds(s.feed(Event.AGENT_UP, AGENT_UP)) == [Kind.UP]
    assert s.usable


def test_checks_keep_counting_while_the_agent_holds_the_server_down():
    s = machine(fall=2)
    s.feed(Event.AGENT_DOWN, AGENT_DOWN)
    # The checks' own DOWN is not logged again: the server is already down.
    assert kinds(s.feed(Event.CHECK_FAILED, BAD)) == [Kind.CHECK_FAILED]
    assert s.feed(Event.CHECK_FAILED, BAD) == []
    assert s.health is Health.DOWN
    # The agent lets go, but the checks still say down: no traffic, no UP line.
    assert s.feed(Event.AGENT_UP, AGENT_UP) == []
    assert not s.usable
    s.feed(Event.CHECK_PASSED, OK)
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.UP]
    assert s.usable


def test_agent_up_on_a_server_it_never_held_is_silent():
    assert machine().feed(Event.AGENT_UP, AGENT_UP) == []
    assert machine(Health.DOWN).feed(Event.AGENT_DOWN, AGENT_DOWN) == []


# -- passive observation -------------------------------------------------------------

WRONG = CheckResult(False, st.HEALTH_ANALYZE, info="Wrong http response")


def test_error_limit_consecutive_errors_take_the_server_down_at_once():
    s = machine(error_limit=3)
    assert s.feed(Event.OBSERVED_ERROR, WRONG) == []
    assert s.feed(Event.OBSERVED_ERROR, WRONG) == []
    assert s.health is Health.UP
    (down,) = s.feed(Event.OBSERVED_ERROR, WRONG)
    assert s.health is Health.DOWN
    assert down.line(1, 0) == (
        'Server app/web1 is DOWN, reason: Health analyze, info: "Detected 3 consecutive '
        'errors, last one was: Wrong http response". 1 active and 0 backup servers left.'
    )
    # Back up through the checks, a full ``rise`` run.
    s.feed(Event.CHECK_PASSED, OK)
    assert kinds(s.feed(Event.CHECK_PASSED, OK)) == [Kind.UP]


def test_a_passed_check_restarts_the_count_of_errors():
    s = machine(error_limit=2)
    s.feed(Event.OBSERVED_ERROR, WRONG)
    s.feed(Event.CHECK_PASSED, OK)
    assert s.feed(Event.OBSERVED_ERROR, WRONG) == []
    assert s.health is Health.UP
    assert kinds(s.feed(Event.OBSERVED_ERROR, WRONG)) == [Kind.DOWN]


def test_error_limit_must_be_positive():
    with pytest.raises(ValueError, match="error_limit"):
        ServerState("app", "web1", error_limit=0)
