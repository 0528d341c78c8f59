"""Tracking (ha/vrrp/track.py, ha/vrrp/netlink.py): fall/rise, fault sources, what is asked."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from appliance.config import load_text
from ha.vrrp.machine import Fault, FaultCleared
from ha.vrrp.netlink import IFF_RUNNING, IFF_UP, Link, LinkError, is_up
from ha.vrrp.track import (
    FALL,
    PROBE_MAX,
    PROBE_MIN,
    RISE,
    FallRise,
    FaultSet,
    ProxyTarget,
    probe_interval,
    proxy_target,
)

pytestmark = pytest.mark.unit


def run(health: FallRise, results: str) -> list[bool | None]:
    return [health.observe(r == "+") for r in results]


def test_fall_consecutive_failures_mark_it_down_rise_successes_up() -> None:
    health = FallRise(fall=3, rise=2)
    assert run(health, "--+--") == [None] * 5  # never three in a row
    assert run(health, "-") == [False]  # the third in a row (after the last success)
    assert not health.healthy
    assert run(health, "+-+") == [None] * 3  # never two in a row
    assert run(health, "+") == [True]


def test_defaults_are_keepaliveds_fall_and_rise_rule_with_documented_counts() -> None:
    health = FallRise()
    assert (health.fall, health.rise) == (FALL, RISE) == (3, 2)
    assert health.healthy  # a proxy is presumed up until FALL probes say otherwise
    with pytest.raises(ValueError):
        FallRise(fall=0)


def test_probe_interval_follows_the_fastest_router_within_bounds() -> None:
    assert probe_interval([1.0, 0.2]) == 0.2
    assert probe_interval([0.01]) == PROBE_MIN
    assert probe_interval([5.0]) == PROBE_MAX


def test_the_first_fault_and_the_last_clearance_reach_the_machine() -> None:
    faults = FaultSet()
    assert faults.raise_("link", "eth0 link down") == Fault("eth0 link down")
    assert faults.raise_("proxy", "proxy down") is None  # already in FAULT
    assert faults.clear("link", "eth0 link up") is None  # the proxy still fails
    assert faults.clear("link", "eth0 link up") is None  # not active: nothing to clear
    assert faults.clear("proxy", "proxy up again") == FaultCleared("proxy up again")
    assert faults.active == {}


def test_the_runtime_socket_is_asked_when_there_are_frontends() -> None:
    head = '[frontends.www]\nbind = "0.0.0.0:8080"\ndefault_backend = "app"\n[backends.app]\n'
    config = load_text(head + '[global]\nruntime_socket = "/run/w.sock"\n')
    assert proxy_target(config) == ProxyTarget(runtime_socket="/run/w.sock")
    assert str(proxy_target(config)) == "runtime API /run/w.sock (show info)"
    config = load_text(head + '[global]\nruntime_socket = ""\n')
    assert proxy_target(config) == ProxyTarget(host="127.0.0.1", port=8080)
    assert proxy_target(load_text('[ha.vrrp]\nvips = ["198.18.0.100/24"]\n')) is None


def test_link_state_is_up_and_running() -> None:
    assert is_up(IFF_UP | IFF_RUNNING)
    assert not is_up(IFF_UP)  # no carrier
    assert not is_up(IFF_RUNNING)


def test_the_primary_address_is_the_first_that_is_not_a_vip() -> None:
    vip = IPv4Interface("198.18.0.100/24")
    link = Link("eth0", 2, b"\x02" * 6, True, (vip, IPv4Interface("198.18.0.11/24")))
    assert link.primary_address({vip.ip}) == IPv4Address("198.18.0.11")
    with pytest.raises(LinkError, match="eth0 has no IPv4 address of its own"):
        Link("eth0", 2, b"", True, (vip,)).primary_address({vip.ip})
