"""The bad-packet drill: crafted VRRP packets from the client namespace at a running pair.

lb1 (MASTER) and lb2 (BACKUP) run two virtual routers each: VRID 51 in VRRPv3 at 100 ms
and VRID 52 in VRRPv2 at 1 s. The client sends, on a raw socket with IP_HDRINCL (so the
TTL is ours to choose), to 224.0.0.18: one packet of every kind of bad input, then a
flood of 1000 random payloads. Every packet must be counted by both daemons (each state
file's ``drops`` and ``notices``; the drops no router claimed are in ``interface_drops``
of both files), the log must stay at one line per kind, and neither node may change state.

The packets that would be valid but for one field carry priority 254, above both nodes:
if any were accepted, the master would step down and the test would see it. The one
accepted on purpose, a v3 advertisement with another interval (RFC 9568: a backup adopts
the master's interval, so it is a notice, not a drop), carries a lower priority.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import time
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ha.lab import Lab
from ha.vrrp import packet
from ha.vrrp.packet import MULTICAST_GROUP, Advertisement
from tests.lab.vrrp import VIP, WAIT, Vr, WeirNode, lab_fixture, wait_for

pytestmark = pytest.mark.lab

CLIENT = IPv4Address("198.18.0.2")
VIP2 = "198.18.0.101"
FLOOD = 1000

_SEND = r"""
import json, socket, sys, time
packets = [bytes.fromhex(p) for p in json.load(open(sys.argv[1]))]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
for n, p in enumerate(packets):
    s.sendto(p, ("224.0.0.18", 0))
    if n % 20 == 19:
        time.sleep(0.002)  # paced: the receivers' socket buffers must not overflow
"""


def ip(payload: bytes, ttl: int = 255, protocol: int = packet.PROTOCOL) -> bytes:
    """An IPv4 header (the kernel fills in the length, id and checksum) and ``payload``."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, ttl, protocol, 0, CLIENT.packed, MULTICAST_GROUP.packed
    )
    return header + payload


def advert(
    vrid: int = 51,
    priority: int = 254,
    interval: float = 0.1,
    addresses: tuple[str, ...] = (VIP,),
    version: int = 3,
) -> bytes:
    adv = Advertisement(version, vrid, priority, interval, tuple(map(IPv4Address, addresses)))
    return packet.encode(adv, CLIENT, MULTICAST_GROUP, pseudo_header=True)


def bad_packets() -> dict[str, bytes]:
    """One packet per kind of bad input, by the counter it must land in."""
    valid = advert()
    corrupted = valid[:6] + bytes([valid[6] ^ 0xFF]) + valid[7:]
    return {
        "short packet": ip(valid[:4]),
        "unsupported version": ip(bytes([0x41]) + valid[1:]),
        "wrong version": ip(advert(version=2, interval=1.0)),  # VRID 51 speaks v3
        "wrong VRID": ip(advert(vrid=77)),
        "wrong TTL": ip(valid, ttl=64),
        "bad checksum": ip(corrupted),
        "address list mismatch": ip(advert(addresses=("198.18.0.150",))),
        "interval mismatch (v2, dropped)": ip(
            advert(vrid=52, interval=2.0, addresses=(VIP2,), version=2)
        ),
        "interval mismatch (v3, a notice)": ip(advert(priority=50, interval=1.0)),
    }


def garbage(count: int) -> list[bytes]:
    rng = random.Random(5)
    return [ip(rng.randbytes(rng.randrange(0, 60))) for _ in range(count)]


lab = lab_fixture("wd")


def counted(node: WeirNode) -> tuple[list[Counter[str]], Counter[str], Counter[str]]:
    """(each router's own drops, drops no router claimed, notices) from the state files."""
    own: list[Counter[str]] = []
    notices: Counter[str] = Counter()
    unclaimed: Counter[str] = Counter()
    for vrid in (51, 52):
        status = node.status(vrid)
        assert status is not None
        unclaimed = Counter(status["interface_drops"])
        own.append(Counter(status["drops"]) - unclaimed)
        notices += Counter(status["notices"])
    return own, unclaimed, notices


def test_bad_packets_are_dropped_counted_and_logged_at_a_limited_rate(
    lab: Lab, tmp_path: Path
) -> None:
    routers = {
        "lb1": [Vr(51, 150), Vr(52, 150, VIP2, version=2, interval="1s")],
        "lb2": [Vr(51, 100), Vr(52, 100, VIP2, version=2, interval="1s")],
    }
    lb1, lb2 = nodes = [WeirNode(lab, host, tmp_path, vrs) for host, vrs in routers.items()]
    for node in nodes:
        node.start()
    expected = {"lb1": "MASTER", "lb2": "BACKUP"}

    def settled() -> bool:
        return all(n.state(v) == expected[n.host] for n in nodes for v in (51, 52))

    wait_for(settled, "lb1 MASTER and lb2 BACKUP of both VRIDs", nodes, 30.0)
    before = [n.transitions() for n in nodes]

    bad = bad_packets()
    flood = garbage(FLOOD)
    batch = tmp_path / "packets.json"
    batch.write_text(json.dumps([p.hex() for p in [*bad.values(), *flood]]))
    sent = lab.run("client", [sys.executable, "-c", _SEND, str(batch)], capture_output=True)
    assert sent.returncode == 0, sent.stderr
    total = len(bad) + FLOOD

    def all_counted(node: WeirNode) -> bool:
        own, unclaimed, notices = counted(node)
        return (
            sum(map(sum, [*(c.values() for c in own), unclaimed.values(), notices.values()]))
            == total
        )

    wait_for(lambda: all(all_counted(n) for n in nodes), "every packet counted", nodes, WAIT)
    time.sleep(1.0)  # anything the nodes would do about it has had time to happen

    assert settled() and [n.transitions() for n in nodes] == before, "a node changed state"
    assert lb1.holds_vip(VIP) and lb1.holds_vip(VIP2)
    for node in nodes:
        own, unclaimed, notices = counted(node)
        kinds = set(own[0]) | set(own[1]) | set(unclaimed)
        for kind in ("short packet", "unsupported version", "wrong version", "wrong TTL"):
            assert kind in kinds, (node.host, kinds)
        for kind in ("bad checksum", "address list mismatch", "interval mismatch"):
            assert kind in kinds, (node.host, kinds)
        assert unclaimed["wrong VRID"] >= 1
        assert notices == {"interval mismatch": 1}
        # Rate limited: at most one line per counter and kind, whatever the flood.
        lines = node.log.read_text().count("dropped a packet")
        assert 0 < lines <= len(own[0]) + len(own[1]) + len(unclaimed), node.log.read_text()
        drops = dict(own[0] + own[1] + unclaimed)
        print(f"{node.host}: {total} packets, {lines} log lines, drops {drops}")
