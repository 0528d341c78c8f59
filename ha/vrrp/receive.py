"""The receive path of one interface: which virtual router a packet is for, or why it is dropped.

RFC 9568 §7.1 (RFC 3768 §7.1 for v2) lists what a receiver checks. One raw socket per
interface serves every virtual router on it (as keepalived does), so the receiver first
finds the packet's owner, the router with the packet's VRID and version, then runs the
checks in the owner's configuration and answers ``Accepted`` or ``Dropped``:

1. the IPv4 header parses (else dropped, owner unknown);
2. the owner: the version nibble and the VRID byte, read before anything is trusted; a VRID
   that only a router of the other version has goes to that router, which drops it for its
   version;
3. IP protocol 112 and TTL 255;
4. not our own address as the source;
5. the VRRP message in the owner's version, checksum with the IPv4 pseudo-header for v3
   (``ha.vrrp.packet``);
6. the address list equals the owner's VIPs (keepalived logs a mismatch; Weir drops it, so
   that two misconfigured nodes never elect across different VIP sets).

A packet that no router owns is still checked (3 to 5, in no particular version) so that
garbage is counted as what it is; only a well-formed advertisement is counted as "wrong
VRID". The advertisement interval is the election's business (``ha.vrrp.machine``: v2 drops
another interval, RFC 3768 §7.1), except that a v3 interval other than ours is reported as a
notice: RFC 9568 makes a backup adopt the master's interval, so it is not dropped, but two
nodes configured differently deserve a log line.

No I/O: the daemon feeds the raw socket's datagrams and counts, logs and dispatches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from ha.vrrp import packet

RouterKey = tuple[int, int]  # (VRID, version)


@dataclass(frozen=True, slots=True)
class Router:
    """What the receive path needs to know about one virtual router on the interface."""

    vrid: int
    version: int
    vips: frozenset[IPv4Address]
    interval: float  # seconds, as configured

    @property
    def key(self) -> RouterKey:
        return (self.vrid, self.version)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid advertisement for the router ``key``; ``notice`` is a reason to log, if any."""

    key: RouterKey
    source: IPv4Address
    advertisement: packet.Advertisement
    notice: str = ""


@dataclass(frozen=True, slots=True)
class Dropped:
    """A packet dropped for ``kind`` (the counter) and ``reason`` (the log line).

    ``key`` is the router the packet was meant for, None when no router here claims it.
    """

    key: RouterKey | None
    kind: str
    reason: str


NOTICE_INTERVAL = "interval mismatch"


class Receiver:
    """The receive path of one interface whose primary address is ``address``."""

    def __init__(self, address: IPv4Address, routers: Iterable[Router]) -> None:
        self.address = address
        self.routers: dict[RouterKey, Router] = {}
        self.by_vrid: dict[int, Router] = {}
        for router in routers:
            if router.key in self.routers:
                raise ValueError(f"VRID {router.vrid} (VRRPv{router.version}) twice")
            self.routers[router.key] = router
            self.by_vrid.setdefault(router.vrid, router)

    def owner(self, payload: bytes) -> Router | None:
        """The router a VRRP payload claims to be for, from its first two bytes alone."""
        if len(payload) < 2:
            return None
        vrid = payload[1]
        return self.routers.get((vrid, payload[0] >> 4)) or self.by_vrid.get(vrid)

    def receive(self, data: bytes) -> Accepted | Dropped:
        """Check one datagram from the raw socket (IPv4 header included)."""
        try:
            header, payload = packet.parse_ipv4(data)
        except packet.BadPacket as exc:
            return Dropped(None, exc.kind, exc.reason)
        router = self.owner(payload)
        key = router.key if router else None
        try:
            packet.check_ip_header(ttl=header.ttl, protocol=header.protocol)
            if header.src == self.address:
                return Dropped(key, "own packet", f"our own packet from {header.src}")
            adv = packet.decode(
                payload,
                header.src,
                header.dst,
                pseudo_header=True,
                expect_version=router.version if router else None,
            )
        except packet.BadPacket as exc:
            return Dropped(key, exc.kind, f"{exc.reason} from {header.src}")
        if router is None:
            return Dropped(
                None,
                "wrong VRID",
                f"VRRPv{adv.version} VRID {adv.vrid} from {header.src}: no virtual router here",
            )
        if set(adv.addresses) != router.vips:
            theirs = ", ".join(map(str, adv.addresses)) or "none"
            ours = ", ".join(map(str, sorted(router.vips)))
            return Dropped(
                key,
                "address list mismatch",
                f"addresses [{theirs}] from {header.src}, ours are [{ours}]",
            )
        notice = ""
        if adv.version == 3 and abs(adv.interval - router.interval) > 1e-6:
            notice = (
                f"advertisement interval {adv.interval:g}s from {header.src}, ours is "
                f"{router.interval:g}s (accepted: a v3 backup follows the master's)"
            )
        return Accepted(router.key, header.src, adv, notice)
