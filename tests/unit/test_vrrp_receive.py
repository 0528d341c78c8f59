"""The receive path of one interface (ha/vrrp/receive.py): owner lookup, checks, drop kinds."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ha.vrrp.packet import MULTICAST_GROUP, PROTOCOL, Advertisement, encode
from ha.vrrp.receive import NOTICE_INTERVAL, Accepted, Dropped, Receiver, Router

pytestmark = pytest.mark.unit

OURS = IPv4Address("198.18.0.11")
PEER = IPv4Address("198.18.0.12")
VIP = IPv4Address("198.18.0.100")
VIP2 = IPv4Address("198.18.0.101")

V3_51 = Router(51, 3, frozenset({VIP}), 0.1)
V2_52 = Router(52, 2, frozenset({VIP2}), 1.0)


def receiver(*routers: Router) -> Receiver:
    return Receiver(OURS, routers or (V3_51, V2_52))


def datagram(
    payload: bytes, *, src: IPv4Address = PEER, ttl: int = 255, protocol: int = PROTOCOL
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        ttl,
        protocol,
        0,
        src.packed,
        MULTICAST_GROUP.packed,
    )
    return header + payload


def advert(
    vrid: int = 51,
    version: int = 3,
    priority: int = 200,
    interval: float = 0.1,
    addresses: tuple[IPv4Address, ...] = (VIP,),
    src: IPv4Address = PEER,
) -> bytes:
    adv = Advertisement(version, vrid, priority, interval, addresses)
    return encode(adv, src, MULTICAST_GROUP, pseudo_header=True)


def test_a_valid_advertisement_goes_to_its_router() -> None:
    result = receiver().receive(datagram(advert()))
    assert isinstance(result, Accepted)
    assert (result.key, result.source, result.notice) == ((51, 3), PEER, "")
    assert result.advertisement.priority == 200


def test_the_version_nibble_picks_between_two_routers_with_one_vrid() -> None:
    v2_51 = Router(51, 2, frozenset({VIP2}), 1.0)
    r = receiver(V3_51, v2_51)
    v2 = r.receive(datagram(advert(version=2, interval=1.0, addresses=(VIP2,))))
    v3 = r.receive(datagram(advert()))
    assert isinstance(v2, Accepted) and v2.key == (51, 2)
    assert isinstance(v3, Accepted) and v3.key == (51, 3)


@pytest.mark.parametrize(
    ("data", "key", "kind"),
    [
        (datagram(advert()[:4]), (51, 3), "short packet"),
        (datagram(bytes([0x41]) + advert()[1:]), (51, 3), "unsupported version"),
        (datagram(advert(version=2, interval=1.0)), (51, 3), "wrong version"),
        (datagram(advert(), ttl=64), (51, 3), "wrong TTL"),
        (datagram(advert()[:7] + b"\x00" + advert()[8:]), (51, 3), "bad checksum"),
        (datagram(advert(addresses=(VIP2,))), (51, 3), "address list mismatch"),
        (datagram(advert(src=OURS), src=OURS), (51, 3), "own packet"),
        (datagram(advert(vrid=77)), None, "wrong VRID"),
        (datagram(b"\x31"), None, "short packet"),
        (datagram(b""), None, "short packet"),
        (datagram(advert(vrid=77), ttl=1), None, "wrong TTL"),
        (datagram(advert(), protocol=17), (51, 3), "wrong protocol"),
        (b"\x45\x00", None, "bad IP header"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_problem_is_dropped_with_its_kind_and_owner(data, key, kind) -> None:
    result = receiver().receive(data)
    assert isinstance(result, Dropped)
    assert (result.key, result.kind) == (key, kind), result.reason


def test_wrong_vrid_only_when_no_router_has_it_in_any_version() -> None:
    # VRID 52 exists in v2 only: a v3 packet for it is that router's "wrong version".
    result = receiver().receive(datagram(advert(vrid=52, addresses=(VIP2,))))
    assert isinstance(result, Dropped) and (result.key, result.kind) == ((52, 2), "wrong version")
    garbage = receiver().receive(datagram(bytes([0x31, 77]) + bytes(10)))
    assert isinstance(garbage, Dropped) and garbage.kind != "wrong VRID"  # not VRRP at all


def test_a_v3_interval_other_than_ours_is_accepted_with_a_notice() -> None:
    result = receiver().receive(datagram(advert(interval=1.0)))
    assert isinstance(result, Accepted)
    assert "interval 1s" in result.notice and "ours is 0.1s" in result.notice
    assert NOTICE_INTERVAL == "interval mismatch"


def test_a_v2_interval_other_than_ours_is_left_to_the_election() -> None:
    # RFC 3768 §7.1 drops it; ha.vrrp.machine does (Discard "interval mismatch").
    result = receiver().receive(datagram(advert(52, 2, interval=2.0, addresses=(VIP2,))))
    assert isinstance(result, Accepted) and result.notice == ""


def test_two_routers_with_one_key_are_refused() -> None:
    with pytest.raises(ValueError, match="VRID 51"):
        Receiver(OURS, [V3_51, V3_51])


@given(st.binary(max_size=80), st.integers(0, 255), st.integers(0, 255))
def test_any_datagram_is_accepted_or_dropped_never_raises(payload, ttl, protocol) -> None:
    result = receiver().receive(datagram(payload, ttl=ttl, protocol=protocol))
    assert isinstance(result, Accepted | Dropped)


@given(st.binary(max_size=80))
def test_any_raw_bytes_are_dropped_or_accepted(data) -> None:
    assert isinstance(receiver().receive(data), Accepted | Dropped)
