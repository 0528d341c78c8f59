"""VRRP advertisements on the wire (ha/vrrp/packet.py): RFC 3768 (v2) and RFC 9568 (v3), IPv4.

The known-answer vectors were computed by hand from the RFC layouts, then checked against
the code. For VRID 51, priority 150, one address 198.18.0.100 (c6 12 00 64), interval 1 s:

- v2: 21 33 96 01 | 00 01 cksum | c6 12 00 64 | 8 zero bytes of auth data. The 16-bit
  words with the checksum zero: 2133 + 9601 + 0001 + c612 + 0064 = 0x17dab; folding the
  carry gives 0x7dac, and its one's complement is 0x8253.
- v3 (interval 100 centiseconds = 0x064): 31 33 96 01 | 00 64 cksum | c6 12 00 64.
  Without pseudo-header: 3133+9601+0064+c612+0064 = 0x18e0e -> 8e0f; complement 0x71f0.
  With the pseudo-header src 198.18.0.11, dst 224.0.0.18, 00 70 (protocol 112), 00 0c
  (length 12): c612+000b+e000+0012+0070+000c = 0x1a6ab; plus the message words 0x1a6ab +
  0x18e0e = 0x334b9 -> 34bc; complement 0xcb43.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ha.vrrp.packet import (
    MULTICAST_GROUP,
    PROTOCOL,
    Advertisement,
    BadChecksum,
    BadInterval,
    BadIpHeader,
    BadPacket,
    BadTtl,
    BadVrid,
    LengthMismatch,
    ShortPacket,
    UnsupportedAuthType,
    UnsupportedVersion,
    WrongProtocol,
    WrongType,
    WrongVersion,
    check_ip_header,
    checksum,
    decode,
    encode,
    parse_ipv4,
)

pytestmark = pytest.mark.unit

SRC = IPv4Address("198.18.0.11")
VIP = IPv4Address("198.18.0.100")
VIPS = (VIP, IPv4Address("198.18.0.101"), IPv4Address("198.18.1.7"))

V2_VECTOR = bytes.fromhex("2133960100018253c61200640000000000000000")
V3_VECTOR_PSEUDO = bytes.fromhex("313396010064cb43c6120064")
V3_VECTOR_PLAIN = bytes.fromhex("31339601006471f0c6120064")


def adv(version: int = 3, **kw) -> Advertisement:
    fields = {"vrid": 51, "priority": 150, "interval": 1.0, "addresses": (VIP,)}
    return Advertisement(version=version, **(fields | kw))


def with_checksum(message: bytes, src=SRC, dst=MULTICAST_GROUP, pseudo=True) -> bytes:
    """``message`` with a correct checksum in the given dialect (to reach later checks)."""
    zeroed = message[:6] + b"\x00\x00" + message[8:]
    covered = zeroed
    if pseudo and message[0] >> 4 == 3:
        covered = src.packed + dst.packed + bytes([0, PROTOCOL]) + len(message).to_bytes(2, "big")
        covered += zeroed
    return zeroed[:6] + checksum(covered).to_bytes(2, "big") + zeroed[8:]


# Known answers.


def test_v2_known_answer() -> None:
    assert encode(adv(2), pseudo_header=False) == V2_VECTOR
    assert decode(V2_VECTOR, pseudo_header=False) == adv(2)


def test_v3_known_answer_with_pseudo_header() -> None:
    assert encode(adv(3), SRC, MULTICAST_GROUP, pseudo_header=True) == V3_VECTOR_PSEUDO
    assert decode(V3_VECTOR_PSEUDO, SRC, MULTICAST_GROUP, pseudo_header=True) == adv(3)


def test_v3_known_answer_without_pseudo_header() -> None:
    assert encode(adv(3), pseudo_header=False) == V3_VECTOR_PLAIN
    assert decode(V3_VECTOR_PLAIN, pseudo_header=False) == adv(3)


def test_checksum_of_a_message_with_its_checksum_is_zero() -> None:
    assert checksum(V2_VECTOR) == 0
    assert checksum(b"\x01") == 0xFEFF  # odd length: padded with a zero byte


# Round trips.


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("pseudo", [True, False])
def test_round_trip_with_several_vips(version: int, pseudo: bool) -> None:
    original = adv(version, priority=254, interval=3.0, addresses=VIPS)
    data = encode(original, SRC, MULTICAST_GROUP, pseudo_header=pseudo)
    assert len(data) == 8 + 4 * 3 + (8 if version == 2 else 0)
    assert decode(data, SRC, MULTICAST_GROUP, pseudo_header=pseudo) == original


def test_v3_interval_in_centiseconds() -> None:
    data = encode(adv(3, interval=0.1), pseudo_header=False)
    assert data[4:6] == b"\x00\x0a"
    assert decode(data, pseudo_header=False).interval == 0.1
    assert encode(adv(3, interval=40.95), pseudo_header=False)[4:6] == b"\x0f\xff"


def test_v2_interval_in_seconds() -> None:
    assert encode(adv(2, interval=255.0), pseudo_header=False)[4:6] == b"\x00\xff"


def test_v2_ignores_the_pseudo_header_setting() -> None:
    assert encode(adv(2), SRC, MULTICAST_GROUP, pseudo_header=True) == V2_VECTOR
    assert decode(V2_VECTOR, SRC, MULTICAST_GROUP, pseudo_header=True) == adv(2)


def test_priority_zero_and_no_addresses() -> None:
    original = adv(3, priority=0, addresses=())
    assert decode(encode(original, pseudo_header=False), pseudo_header=False) == original


def test_v3_reserved_bits_are_ignored_on_receipt() -> None:
    data = with_checksum(V3_VECTOR_PSEUDO[:4] + b"\xf0\x64" + V3_VECTOR_PSEUDO[6:])
    assert decode(data, SRC, MULTICAST_GROUP, pseudo_header=True).interval == 1.0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"version": 4}, "version"),
        ({"vrid": 0}, "VRID"),
        ({"priority": 256}, "priority"),
        ({"interval": 0.005}, "interval"),
        ({"interval": 41.0}, "interval"),
        ({"version": 2, "interval": 0.5}, "interval"),
        ({"version": 2, "interval": 256.0}, "interval"),
        ({"auth_type": 1}, "auth type"),
        ({"addresses": (VIP,) * 256}, "addresses"),
    ],
)
def test_unrepresentable_advertisements_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adv(**({"version": 3} | kw))


def test_pseudo_header_needs_the_addresses() -> None:
    with pytest.raises(ValueError, match="source and destination"):
        encode(adv(3), pseudo_header=True)


# Every BadPacket reason.


def test_short_packet() -> None:
    with pytest.raises(ShortPacket, match="7 bytes"):
        decode(V3_VECTOR_PLAIN[:7], pseudo_header=False)


def test_unsupported_version() -> None:
    with pytest.raises(UnsupportedVersion, match="version 1"):
        decode(b"\x11" + V3_VECTOR_PLAIN[1:], pseudo_header=False)


def test_wrong_version() -> None:
    with pytest.raises(WrongVersion, match="VRRPv2 packet, this virtual router speaks v3"):
        decode(V2_VECTOR, pseudo_header=False, expect_version=3)


def test_wrong_type() -> None:
    with pytest.raises(WrongType, match="type 2"):
        decode(b"\x32" + V3_VECTOR_PLAIN[1:], pseudo_header=False)


@pytest.mark.parametrize(
    "data",
    [
        V3_VECTOR_PLAIN + b"\x00\x00\x00\x00",  # one address too many for the count
        V3_VECTOR_PLAIN[:3] + b"\x02" + V3_VECTOR_PLAIN[4:],  # count 2, one address
        V2_VECTOR[:-8],  # v2 without its authentication data
    ],
)
def test_count_and_length_mismatch(data: bytes) -> None:
    with pytest.raises(LengthMismatch, match="addresses make a"):
        decode(data, pseudo_header=False)


def test_bad_checksum() -> None:
    corrupted = V2_VECTOR[:2] + b"\x97" + V2_VECTOR[3:]  # priority changed in flight
    with pytest.raises(BadChecksum, match="0x8253"):
        decode(corrupted, pseudo_header=False)


def test_checksum_dialects_do_not_mix() -> None:
    with pytest.raises(BadChecksum, match="with pseudo-header"):
        decode(V3_VECTOR_PLAIN, SRC, MULTICAST_GROUP, pseudo_header=True)
    with pytest.raises(BadChecksum, match="without pseudo-header"):
        decode(V3_VECTOR_PSEUDO, pseudo_header=False)


def test_pseudo_header_covers_the_addresses() -> None:
    """A unicast packet checked against the multicast group: old keepalived's dialect."""
    peer = IPv4Address("198.18.0.12")
    unicast = encode(adv(3), SRC, peer, pseudo_header=True)
    assert decode(unicast, SRC, peer, pseudo_header=True) == adv(3)
    with pytest.raises(BadChecksum):
        decode(unicast, SRC, MULTICAST_GROUP, pseudo_header=True)
    with pytest.raises(BadChecksum):
        decode(unicast, IPv4Address("198.18.0.13"), peer, pseudo_header=True)


def test_bad_vrid() -> None:
    with pytest.raises(BadVrid, match="VRID 0"):
        decode(
            with_checksum(b"\x31\x00" + V3_VECTOR_PSEUDO[2:]),
            SRC,
            MULTICAST_GROUP,
            pseudo_header=True,
        )


@pytest.mark.parametrize(
    "message",
    [
        V3_VECTOR_PLAIN[:4] + b"\xf0\x00" + V3_VECTOR_PLAIN[6:],
        V2_VECTOR[:4] + b"\x00\x00" + V2_VECTOR[6:],
    ],
)
def test_bad_interval(message: bytes) -> None:
    with pytest.raises(BadInterval, match="interval 0"):
        decode(with_checksum(message, pseudo=False), pseudo_header=False)


def test_unsupported_auth_type() -> None:
    simple_password = with_checksum(V2_VECTOR[:4] + b"\x01\x01" + V2_VECTOR[6:])
    with pytest.raises(UnsupportedAuthType, match="auth type 1"):
        decode(simple_password, pseudo_header=False)


# The IP layer.


def ipv4(payload: bytes, ttl: int = 255, protocol: int = PROTOCOL, pad: bytes = b"") -> bytes:
    total = (20 + len(payload)).to_bytes(2, "big")
    header = b"\x45\x00" + total + bytes(4) + bytes([ttl, protocol]) + bytes(2)
    return header + SRC.packed + MULTICAST_GROUP.packed + payload + pad


def test_parse_ipv4_splits_header_and_payload_and_drops_padding() -> None:
    header, payload = parse_ipv4(ipv4(V3_VECTOR_PSEUDO, pad=bytes(34)))
    assert (header.src, header.dst, header.ttl, header.protocol) == (
        SRC,
        MULTICAST_GROUP,
        255,
        PROTOCOL,
    )
    assert payload == V3_VECTOR_PSEUDO
    check_ip_header(ttl=header.ttl, protocol=header.protocol)
    assert decode(payload, header.src, header.dst, pseudo_header=True) == adv(3)


@pytest.mark.parametrize(
    "data",
    [
        bytes(19),  # short
        b"\x65" + ipv4(b"")[1:],  # IPv6 version nibble
        b"\x44" + ipv4(b"")[1:],  # header length 16
        ipv4(V3_VECTOR_PSEUDO)[:-1],  # total length beyond the data
    ],
)
def test_parse_ipv4_rejects_broken_headers(data: bytes) -> None:
    with pytest.raises(BadIpHeader):
        parse_ipv4(data)


def test_ttl_must_be_255() -> None:
    with pytest.raises(BadTtl, match="TTL 254"):
        check_ip_header(ttl=254, protocol=PROTOCOL)


def test_protocol_must_be_112() -> None:
    with pytest.raises(WrongProtocol, match="protocol 17"):
        check_ip_header(ttl=255, protocol=17)


# Properties.


@given(st.binary(max_size=64), st.booleans(), st.sampled_from([None, 2, 3]))
def test_decode_raises_only_bad_packet(data: bytes, pseudo: bool, version: int | None) -> None:
    try:
        decode(data, SRC, MULTICAST_GROUP, pseudo_header=pseudo, expect_version=version)
    except BadPacket as error:
        assert error.reason


@given(st.binary(max_size=64))
def test_parse_ipv4_raises_only_bad_packet(data: bytes) -> None:
    try:
        parse_ipv4(data)
    except BadPacket as error:
        assert error.reason


addresses = st.lists(st.integers(0, 2**32 - 1).map(IPv4Address), max_size=20).map(tuple)
advertisements = st.one_of(
    st.builds(
        Advertisement,
        version=st.just(3),
        vrid=st.integers(1, 255),
        priority=st.integers(0, 255),
        interval=st.integers(1, 4095).map(lambda cs: cs / 100),
        addresses=addresses,
    ),
    st.builds(
        Advertisement,
        version=st.just(2),
        vrid=st.integers(1, 255),
        priority=st.integers(0, 255),
        interval=st.integers(1, 255).map(float),
        addresses=addresses,
    ),
)


@given(advertisements, st.booleans(), st.integers(0, 2**32 - 1).map(IPv4Address))
def test_encode_decode_identity(original: Advertisement, pseudo: bool, dst: IPv4Address) -> None:
    data = encode(original, SRC, dst, pseudo_header=pseudo)
    assert decode(data, SRC, dst, pseudo_header=pseudo, expect_version=original.version) == original
