"""The VRRP advertisement on the wire: RFC 9568 §5 (VRRPv3) and RFC 3768 §5 (VRRPv2), IPv4.

Both versions share an 8-byte header followed by the virtual IPv4 addresses::

    version(4) type(4) | VRID(8) | priority(8) | count of addresses(8)
    v3: reserved(4) max advert interval(12, centiseconds) | checksum(16)
    v2: auth type(8) advert interval(8, seconds)          | checksum(16)
    addresses, 4 bytes each
    v2 only: 8 bytes of authentication data (zero with auth type 0)

``Advertisement.interval`` is always in seconds (a float): 0.01 to 40.95 in steps of
0.01 for v3, whole seconds 1 to 255 for v2.

The checksum is RFC 1071's one's complement of the one's complement sum of 16-bit words.
For v2 it covers the VRRP message (authentication data included). For v3 RFC 9568 §5.2.8
adds an IPv4 pseudo-header in front of the message: source address, destination address,
a zero byte, protocol 112 and the message length (12 bytes). keepalived does the same for
v3 by default. ``pseudo_header=False`` selects a checksum over the message alone for v3,
the dialect of implementations that read the v3 checksum as v2's; it is never right for
keepalived. Old keepalived releases (and keepalived's ``old_unicast_checksum``) put the
multicast group 224.0.0.18 in the pseudo-header even when sending unicast: pass
``dst=MULTICAST_GROUP`` to produce or accept that dialect. See docs/failover.md.

``decode`` checks everything a single packet can show wrong and raises one ``BadPacket``
subclass per problem, with a ``reason`` for the log; checks that need the local
configuration (VRID, address list, v2 interval) belong to the receiver. ``parse_ipv4`` and
``check_ip_header`` are the IP-layer half of the receive path (RFC 9568 §7.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

PROTOCOL = 112  # IP protocol number of VRRP
MULTICAST_GROUP = IPv4Address("224.0.0.18")
TTL = 255  # sent with, and required on receipt (RFC 9568 §7.1)
TYPE_ADVERTISEMENT = 1
AUTH_NONE = 0

_HEADER = struct.Struct("!BBBBHH")
_V2_AUTH_DATA = bytes(8)


class BadPacket(ValueError):
    """A received packet that is dropped; ``reason`` says why, for the log and counters.

    ``kind`` names the problem in the drop counters (the state file's ``drops``).
    """

    kind = "bad packet"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShortPacket(BadPacket):
    """Fewer bytes than the fixed header."""

    kind = "short packet"


class UnsupportedVersion(BadPacket):
    """A version other than 2 or 3."""

    kind = "unsupported version"


class WrongVersion(BadPacket):
    """A valid version, but not the one this virtual router speaks."""

    kind = "wrong version"


class WrongType(BadPacket):
    """A type other than 1 (advertisement), the only one defined."""

    kind = "wrong type"


class LengthMismatch(BadPacket):
    """The length disagrees with the count of addresses."""

    kind = "length mismatch"


class BadChecksum(BadPacket):
    """The checksum does not verify in the configured dialect."""

    kind = "bad checksum"


class BadInterval(BadPacket):
    """An advertisement interval of zero."""

    kind = "bad interval"


class BadVrid(BadPacket):
    """VRID 0, outside 1..255."""

    kind = "bad VRID"


class UnsupportedAuthType(BadPacket):
    """A v2 authentication type other than 0 (RFC 3768 removed the others)."""

    kind = "unsupported auth type"


class BadIpHeader(BadPacket):
    """An IPv4 header that cannot be parsed."""

    kind = "bad IP header"


class BadTtl(BadPacket):
    """A TTL other than 255: the packet may come from off the link."""

    kind = "wrong TTL"


class WrongProtocol(BadPacket):
    """An IP protocol other than 112."""

    kind = "wrong protocol"


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One VRRP advertisement: who speaks for which virtual router, how loudly, how often."""

    version: int  # 2 or 3
    vrid: int  # 1..255
    priority: int  # 0 (leaving) .. 255 (address owner)
    interval: float  # seconds
    addresses: tuple[IPv4Address, ...] = ()
    auth_type: int = AUTH_NONE  # v2 only; 0 is the only type Weir speaks (keepalived's default)

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"VRRP version {self.version}: only 2 and 3 exist")
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"VRID {self.vrid}: must be 1..255")
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority}: must be 0..255")
        if len(self.addresses) > 255:
            raise ValueError(f"{len(self.addresses)} addresses: at most 255 fit")
        if self.auth_type != AUTH_NONE:
            raise ValueError(f"auth type {self.auth_type}: only 0 (none) is supported")
        _interval_field(self.version, self.interval)


def _interval_field(version: int, seconds: float) -> int:
    """The interval's wire value; ``ValueError`` if the version cannot carry it exactly."""
    if version == 3:
        value, limit, unit = round(seconds * 100), 0xFFF, "centiseconds"
    else:
        value, limit, unit = round(seconds), 0xFF, "seconds"
    scale = 100 if version == 3 else 1
    if abs(seconds * scale - value) > 1e-6 or not 1 <= value <= limit:
        raise ValueError(
            f"advert interval {seconds}s: VRRPv{version} carries whole {unit}, 1 to {limit}"
        )
    return value


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: IPv4Address, dst: IPv4Address, length: int) -> bytes:
    """The IPv4 pseudo-header of the v3 checksum: src, dst, zero, protocol 112, length."""
    return src.packed + dst.packed + struct.pack("!BBH", 0, PROTOCOL, length)


def _checksummed(
    version: int, message: bytes, src: IPv4Address | None, dst: IPv4Address | None, use: bool
) -> bytes:
    """What the checksum covers: the message, behind the pseudo-header for v3 if ``use``."""
    if version == 2 or not use:
        return message
    if src is None or dst is None:
        raise ValueError("the VRRPv3 pseudo-header checksum needs the source and destination")
    return pseudo_header(src, dst, len(message)) + message


def encode(
    adv: Advertisement,
    src: IPv4Address | None = None,
    dst: IPv4Address | None = None,
    *,
    pseudo_header: bool,
) -> bytes:
    """The VRRP message for ``adv`` (the IP header is the kernel's).

    ``pseudo_header`` selects the v3 checksum dialect (see the module docstring); ``src`` and
    ``dst`` are the IP addresses the packet will carry, needed only for that dialect. v2 has
    no pseudo-header and ignores all three.
    """
    if adv.version == 3:
        second = _interval_field(3, adv.interval)
    else:
        second = (adv.auth_type << 8) | _interval_field(2, adv.interval)
    first = (adv.version << 4) | TYPE_ADVERTISEMENT
    body = b"".join(a.packed for a in adv.addresses)
    if adv.version == 2:
        body += _V2_AUTH_DATA
    header = _HEADER.pack(first, adv.vrid, adv.priority, len(adv.addresses), second, 0)
    message = header + body
    value = checksum(_checksummed(adv.version, message, src, dst, pseudo_header))
    return message[:6] + value.to_bytes(2, "big") + message[8:]


def decode(
    data: bytes,
    src: IPv4Address | None = None,
    dst: IPv4Address | None = None,
    *,
    pseudo_header: bool,
    expect_version: int | None = None,
) -> Advertisement:
    """Parse one VRRP message (the IP payload); any problem raises a ``BadPacket``.

    ``src`` and ``dst`` are the received IP header's addresses, needed for the v3
    pseudo-header dialect; ``expect_version`` rejects the other version.
    """
    if len(data) < _HEADER.size:
        raise ShortPacket(f"short packet: {len(data)} bytes, the header alone is 8")
    first, vrid, priority, count, second, _ = _HEADER.unpack_from(data)
    version, kind = first >> 4, first & 0x0F
    if version not in (2, 3):
        raise UnsupportedVersion(f"unsupported VRRP version {version}")
    if expect_version is not None and version != expect_version:
        raise WrongVersion(f"VRRPv{version} packet, this virtual router speaks v{expect_version}")
    if kind != TYPE_ADVERTISEMENT:
        raise WrongType(f"packet type {kind}, only 1 (advertisement) exists")
    expected = _HEADER.size + 4 * count + (len(_V2_AUTH_DATA) if version == 2 else 0)
    if len(data) != expected:
        raise LengthMismatch(
            f"{len(data)} bytes, but {count} addresses make a {expected}-byte VRRPv{version} packet"
        )
    if version == 3 and pseudo_header and (src is None or dst is None):
        raise ValueError("the VRRPv3 pseudo-header checksum needs the source and destination")
    if checksum(_checksummed(version, data, src, dst, pseudo_header)) != 0:
        dialect = "with" if version == 3 and pseudo_header else "without"
        raise BadChecksum(
            f"bad checksum 0x{int.from_bytes(data[6:8], 'big'):04x} "
            f"(VRRPv{version}, {dialect} pseudo-header)"
        )
    if vrid == 0:
        raise BadVrid("VRID 0, must be 1..255")
    if version == 3:
        ticks, auth_type, interval = second & 0x0FFF, AUTH_NONE, (second & 0x0FFF) / 100
    else:
        ticks, auth_type, interval = second & 0xFF, second >> 8, float(second & 0xFF)
    if ticks == 0:
        raise BadInterval("advert interval 0")
    if auth_type != AUTH_NONE:
        raise UnsupportedAuthType(f"auth type {auth_type}, only 0 (none) is supported")
    addresses = tuple(IPv4Address(data[i : i + 4]) for i in range(8, 8 + 4 * count, 4))
    return Advertisement(version, vrid, priority, interval, addresses)


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """The fields of a received IPv4 header that the VRRP receive path looks at."""

    src: IPv4Address
    dst: IPv4Address
    ttl: int
    protocol: int


def parse_ipv4(data: bytes) -> tuple[IPv4Header, bytes]:
    """Split a raw-socket datagram into its IPv4 header and payload (trimmed to total length).

    A raw IPv4 socket hands the IP header to the reader; Ethernet padding past the total
    length is dropped here, so ``decode`` sees exactly the VRRP message.
    """
    if len(data) < 20:
        raise BadIpHeader(f"short IPv4 header: {len(data)} bytes")
    version, header_length = data[0] >> 4, (data[0] & 0x0F) * 4
    total_length = int.from_bytes(data[2:4], "big")
    if version != 4:
        raise BadIpHeader(f"IP version {version}, expected 4")
    if header_length < 20 or not header_length <= total_length <= len(data):
        raise BadIpHeader(
            f"IPv4 header length {header_length}, total length {total_length}, "
            f"{len(data)} bytes received"
        )
    header = IPv4Header(
        src=IPv4Address(data[12:16]),
        dst=IPv4Address(data[16:20]),
        ttl=data[8],
        protocol=data[9],
    )
    return header, data[header_length:total_length]


def check_ip_header(*, ttl: int, protocol: int) -> None:
    """The IP-layer checks of RFC 9568 §7.1: protocol 112 and TTL 255, else ``BadPacket``."""
    if protocol != PROTOCOL:
        raise WrongProtocol(f"IP protocol {protocol}, VRRP is {PROTOCOL}")
    if ttl != TTL:
        raise BadTtl(f"TTL {ttl}, must be {TTL} (sent from off the link?)")
