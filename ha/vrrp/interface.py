"""One network interface of ``weir ha``: the raw sockets shared by its virtual routers.

Every virtual router on an interface shares (as in keepalived):

- one raw IPv4 socket for protocol 112, bound to the interface, joined to 224.0.0.18 when
  any of its routers uses multicast (TTL 255 either way, no loopback of our own packets);
  its datagrams go through ``ha.vrrp.receive`` and are dispatched by VRID and version;
- one ``AF_PACKET`` socket for gratuitous ARPs, sent from the interface's MAC;
- the counter of packets that no router here claims (bad IP header, "wrong VRID", ...);
  each router's state file shows them with its own drops.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from ha.vrrp import packet
from ha.vrrp.counters import RateLimitedCounter
from ha.vrrp.netlink import Link
from ha.vrrp.receive import Accepted, Dropped, Receiver, Router

log = logging.getLogger("weir.ha")

_IP_MREQN = struct.Struct("4s4si")  # group, local address, interface index
_ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6


def open_vrrp_socket(link: Link, address: IPv4Address, *, multicast: bool) -> socket.socket:
    """The raw protocol-112 socket on ``link``; ``OSError`` if the kernel refuses it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, packet.PROTOCOL)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.name.encode())
        mreqn = _IP_MREQN.pack(packet.MULTICAST_GROUP.packed, address.packed, link.index)
        if multicast:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, packet.TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, packet.TTL)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_arp_socket(link: Link) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((link.name, _ETH_P_ARP))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def gratuitous_arp(mac: bytes, address: IPv4Address) -> bytes:
    """A broadcast ARP request announcing ``address`` at ``mac`` (sender = target, RFC 5227)."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + address.packed
    arp += b"\x00" * 6 + address.packed
    return _BROADCAST + mac + _ETH_P_ARP.to_bytes(2, "big") + arp


class Interface:
    """The sockets and facts of one interface; ``deliver`` is called with what arrives."""

    def __init__(
        self,
        link: Link,
        address: IPv4Address,
        routers: Iterable[Router],
        *,
        multicast: bool,
    ) -> None:
        self.name = link.name
        self.index = link.index
        self.mac = link.mac
        self.up = link.up
        self.address = address
        self.receiver = Receiver(address, routers)
        self.drops = RateLimitedCounter(self.name, "dropped a packet")
        self.sock = open_vrrp_socket(link, address, multicast=multicast)
        try:
            self.arp = open_arp_socket(link)
        except BaseException:
            self.sock.close()
            raise

    def read(self, deliver: Callable[[Accepted | Dropped], None]) -> None:
        """Drain the raw socket (called when it is readable)."""
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: receive failed: %s", self.name, exc)
                return
            deliver(self.receiver.receive(data))

    def send(self, message: bytes, destination: IPv4Address) -> bool:
        try:
            self.sock.sendto(message, (str(destination), 0))
        except OSError as exc:
            log.warning("%s: advertisement to %s not sent: %s", self.name, destination, exc)
            return False
        return True

    def send_garps(self, addresses: list[IPv4Address], repeat: int) -> None:
        """``repeat`` gratuitous ARPs for each address, from this interface's MAC."""
        frames = [gratuitous_arp(self.mac, address) for address in addresses]
        try:
            for _ in range(repeat):
                for frame in frames:
                    self.arp.send(frame)
        except OSError as exc:
            log.warning("%s: gratuitous ARPs not sent: %s", self.name, exc)

    def close(self) -> None:
        self.sock.close()
        self.arp.close()
