"""The interface and its VIPs through rtnetlink (pyroute2), on the daemon's event loop.

keepalived talks netlink to the kernel directly; so does Weir, through pyroute2's
``AsyncIPRoute``: no ``ip`` process per VIP (a takeover adds its addresses in well under a
millisecond) and no polling for the link state, which arrives as ``RTM_NEWLINK``
notifications (keepalived's "LinkWatch kernel netlink reflector").

- ``Netlink``: requests on one socket: an interface's facts (``Link``: index, MAC, link
  state, IPv4 addresses) and adding or removing a VIP;
- ``LinkMonitor``: the ``RTMGRP_LINK`` group; calls back with every link change.

A link is up when it is administratively up and the kernel says it is running (IFF_UP and
IFF_RUNNING, keepalived's test): a cable pulled, or a veth whose peer went down, clears
IFF_RUNNING and the operstate turns LOWERLAYERDOWN.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from socket import AF_INET

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

IFF_UP = 0x1
IFF_RUNNING = 0x40
RESUBSCRIBE_DELAY = 1.0  # seconds before reopening a failed notification socket

log = logging.getLogger("weir.ha")


class LinkError(Exception):
    """An interface that cannot be used (missing, no address); the message says which."""


def is_up(flags: int) -> bool:
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


@dataclass(frozen=True, slots=True)
class Link:
    """What the daemon needs to know about one interface."""

    name: str
    index: int
    mac: bytes
    up: bool
    addresses: tuple[IPv4Interface, ...]

    def primary_address(self, vips: set[IPv4Address]) -> IPv4Address:
        """The first IPv4 address that is not a VIP: the source of our advertisements."""
        for address in self.addresses:
            if address.ip not in vips:
                return address.ip
        raise LinkError(f"interface {self.name} has no IPv4 address of its own")


class Netlink:
    """One rtnetlink socket for requests; open and close it inside the event loop."""

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None

    @property
    def ipr(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
        return self._ipr

    async def link(self, name: str) -> Link:
        try:
            [msg] = await self.ipr.link("get", ifname=name)
        except NetlinkError as exc:
            reason = "no such interface" if exc.code == errno.ENODEV else exc.args[-1]
            raise LinkError(f"interface {name}: {reason}") from None
        index = msg["index"]
        addresses = [
            IPv4Interface(f"{a.get('address')}/{a['prefixlen']}")
            async for a in await self.ipr.addr("dump", index=index, family=AF_INET)
        ]
        mac = bytes.fromhex((msg.get("address") or "").replace(":", ""))
        return Link(name, index, mac, is_up(msg["flags"]), tuple(addresses))

    async def add_address(self, index: int, vip: IPv4Interface) -> None:
        """Add ``vip``; one that is there already is fine (a restart, or two paths to it)."""
        try:
            await self.ipr.addr(
                "add", index=index, address=str(vip.ip), prefixlen=vip.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    async def remove_address(self, index: int, vip: IPv4Interface) -> bool:
        """Remove ``vip``; False if it was not there."""
        try:
            await self.ipr.addr(
                "del", index=index, address=str(vip.ip), prefixlen=vip.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code == errno.EADDRNOTAVAIL:
                return False
            raise
        return True

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


LinkChange = Callable[[int, bool, bool], None]  # (index, up, removed)


class LinkMonitor:
    """Link notifications from the kernel, as callbacks on the event loop.

    Should the notification socket fail (the kernel drops notifications when its buffer
    overflows), it is reopened and ``resync`` is awaited to read the links' state afresh.
    """

    def __init__(self, on_change: LinkChange, resync: Callable[[], Awaitable[None]]) -> None:
        self.on_change = on_change
        self.resync = resync
        self._ipr: AsyncIPRoute | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._subscribe()
        self._task = asyncio.ensure_future(self._run())

    async def _subscribe(self) -> None:
        self._ipr = AsyncIPRoute()
        await self._ipr.bind(groups=RTMGRP_LINK)

    async def _run(self) -> None:
        while True:
            try:
                await self._read()
            except (OSError, NetlinkError) as exc:
                log.error("link notifications failed (%s); subscribing again", exc)
                self._close()
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                await self._subscribe()
                await self.resync()

    async def _read(self) -> None:
        assert self._ipr is not None
        while True:  # get() ends after each batch of notifications
            async for msg in self._ipr.get():
                event = msg.get("event")
                if event in ("RTM_NEWLINK", "RTM_DELLINK"):
                    removed = event == "RTM_DELLINK"
                    self.on_change(msg["index"], is_up(msg["flags"]) and not removed, removed)

    def _close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._close()
