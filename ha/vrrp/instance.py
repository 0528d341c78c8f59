"""One virtual router of ``weir ha``: the election's actions carried out on the box.

Everything that decides lives in ``ha.vrrp.machine``; an ``Instance`` feeds it events and
carries out what it answers:

- advertisements, encoded by ``ha.vrrp.packet`` and sent on the interface's shared socket
  (multicast 224.0.0.18, or one copy per ``unicast_peers`` address);
- timers with ``loop.call_later``;
- the VIPs added and removed through netlink (``ha.vrrp.netlink``) and the gratuitous ARPs
  sent after them: a burst of ``GARP_REPEAT`` per VIP, repeated ``GARP_DELAY`` later if
  still master (keepalived's ``garp_master_repeat`` and ``garp_master_delay``). These run
  in order, one at a time, so a VIP is never removed before it was added;
- on every transition a keepalived-style log line, the JSON state file and the optional
  notify script (``SCRIPT INSTANCE <name> STATE PRIORITY``);
- the drop and notice counters, which reach the state file within ``STATE_WRITE_DELAY``.

``FaultSet`` collects the fault sources (the link, the tracked proxy) so that the machine
sees one ``Fault`` and one ``FaultCleared``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from appliance.config.model import VrrpConfig
from ha.vrrp import packet
from ha.vrrp.counters import RateLimitedCounter
from ha.vrrp.interface import Interface
from ha.vrrp.machine import (
    Action,
    AddVips,
    AdvertisementReceived,
    Discard,
    Event,
    Notify,
    RemoveVips,
    SendAdvertisement,
    SendGratuitousArps,
    StartTimer,
    State,
    StopTimer,
    Timer,
    TimerExpired,
    VirtualRouter,
)
from ha.vrrp.netlink import Netlink, NetlinkError
from ha.vrrp.receive import NOTICE_INTERVAL, Accepted, Router
from ha.vrrp.track import FaultSet

log = logging.getLogger("weir.ha")

GARP_REPEAT = 5  # gratuitous ARPs per VIP in one burst (keepalived's garp_master_repeat)
GARP_DELAY = 5.0  # seconds until the second burst (keepalived's garp_master_delay)
STATE_WRITE_DELAY = 1.0  # counters reach the state file at most this late
NOTIFY_TIMEOUT = 10.0  # a notify script still running at exit is waited for this long


class Instance:
    """One virtual router (one VRID and version) on one interface."""

    def __init__(
        self,
        config: VrrpConfig,
        interface: Interface,
        netlink: Netlink,
        *,
        on_event: Callable[[Instance], None] = lambda instance: None,
    ) -> None:
        self.config = config
        self.name = config.instance_name()
        self.interface = interface
        self.netlink = netlink
        self.on_event = on_event  # called after every event (the takeover hint follows us)
        self.vips = [IPv4Interface(vip) for vip in config.vips]
        peers = [IPv4Address(peer) for peer in config.unicast_peers]
        self.destinations = peers or [packet.MULTICAST_GROUP]
        self.state_file = Path(config.state_path())
        self.router = VirtualRouter.from_config(config, interface.address)
        self.faults = FaultSet()
        self.drops = RateLimitedCounter(self.name, "dropped a packet")
        self.notices = RateLimitedCounter(self.name, "notice")
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._garp_repeat: asyncio.TimerHandle | None = None
        self._state_write: asyncio.TimerHandle | None = None
        self._vip_work: asyncio.Task[None] | None = None
        self._notifies: set[asyncio.Task[None]] = set()
        self._since = time.time()

    @staticmethod
    def router_of(config: VrrpConfig) -> Router:
        """What the interface's receive path needs to know about ``config``."""
        vips = frozenset(IPv4Interface(vip).ip for vip in config.vips)
        return Router(config.vrid, config.version, vips, config.advert_interval)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def describe(self) -> str:
        config = self.config
        wire = (
            "unicast to " + ", ".join(map(str, self.destinations))
            if config.unicast_peers
            else "multicast"
        )
        return (
            f"{self.name}: interface {config.interface}, address {self.interface.address}, "
            f"VRID {config.vrid}, VRRPv{config.version}, priority {config.priority}, "
            f"advert interval {config.advert_interval:g}s, {wire}"
        )

    # events in ------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        for action in self.router.handle(event):
            self._carry_out(action)
        self.on_event(self)

    def fault(self, source: str, reason: str) -> None:
        if (event := self.faults.raise_(source, reason)) is not None:
            self.handle(event)
        else:
            self.dirty()  # the state file lists every active fault

    def fault_cleared(self, source: str, reason: str) -> None:
        if (event := self.faults.clear(source, reason)) is not None:
            self.handle(event)
        else:
            self.dirty()

    def accept(self, accepted: Accepted) -> None:
        if accepted.notice:
            self.notices.add(NOTICE_INTERVAL, accepted.notice)
            self.dirty()
        adv = accepted.advertisement
        self.handle(AdvertisementReceived(adv.priority, accepted.source, adv.interval))

    def drop(self, kind: str, reason: str) -> None:
        self.drops.add(kind, reason)
        self.dirty()

    def _expire(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        self.handle(TimerExpired(timer))

    # actions out ----------------------------------------------------------------------------

    def _carry_out(self, action: Action) -> None:
        match action:
            case SendAdvertisement(priority=priority):
                self._advertise(priority)
            case AddVips():
                self._vip_job(self._add_vips)
            case RemoveVips():
                self._vip_job(self._remove_vips)
            case SendGratuitousArps():
                self._vip_job(self._send_garps)
            case StartTimer(timer=timer, delay=delay):
                if (old := self._timers.pop(timer, None)) is not None:
                    old.cancel()
                self._timers[timer] = self.loop.call_later(delay, self._expire, timer)
            case StopTimer(timer=timer):
                if (old := self._timers.pop(timer, None)) is not None:
                    old.cancel()
            case Notify(state=state, reason=reason):
                self._notify(state, reason)
            case Discard(kind=kind, reason=reason):
                self.drop(kind, reason)

    def _advertise(self, priority: int) -> None:
        config = self.config
        adv = packet.Advertisement(
            config.version,
            config.vrid,
            priority,
            config.advert_interval,
            tuple(vip.ip for vip in self.vips),
        )
        for dst in self.destinations:
            message = packet.encode(adv, self.interface.address, dst, pseudo_header=True)
            self.interface.send(message, dst)

    def _vip_job(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` after the VIP jobs before it (netlink requests are asynchronous)."""
        previous = self._vip_work

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await job()
            except Exception as exc:
                log.error("%s: %s", self.name, exc)

        self._vip_work = asyncio.ensure_future(run())

    async def _add_vips(self) -> None:
        for vip in self.vips:
            try:
                await self.netlink.add_address(self.interface.index, vip)
            except (OSError, NetlinkError) as exc:
                log.error("%s: cannot add VIP %s: %s", self.name, vip, exc)

    async def _remove_vips(self, *, quiet: bool = False) -> None:
        for vip in self.vips:
            try:
                await self.netlink.remove_address(self.interface.index, vip)
            except (OSError, NetlinkError) as exc:
                if not quiet:
                    log.error("%s: cannot remove VIP %s: %s", self.name, vip, exc)

    def remove_leftover_vips(self) -> None:
        """A daemon killed with -9 left its VIPs behind; start clean, as keepalived does."""

        async def quietly() -> None:
            await self._remove_vips(quiet=True)

        self._vip_job(quietly)

    async def _send_garps(self) -> None:
        self.interface.send_garps([vip.ip for vip in self.vips], GARP_REPEAT)
        if self._garp_repeat is not None:
            self._garp_repeat.cancel()
        self._garp_repeat = self.loop.call_later(GARP_DELAY, self._repeat_garps)

    def _repeat_garps(self) -> None:
        self._garp_repeat = None
        if self.router.state is State.MASTER:
            self.interface.send_garps([vip.ip for vip in self.vips], GARP_REPEAT)

    def _notify(self, state: State, reason: str) -> None:
        self._since = time.time()
        log.info("VRRP_Instance(%s) Entering %s STATE (%s)", self.name, state.value, reason)
        self.write_state()
        if self.config.notify:
            task = asyncio.ensure_future(self._run_notify(state))
            self._notifies.add(task)
            task.add_done_callback(self._notifies.discard)

    async def _run_notify(self, state: State) -> None:
        script = self.config.notify
        argv = [script, "INSTANCE", self.name, state.value, str(self.router.priority)]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
            code = await proc.wait()
        except OSError as exc:
            log.error("%s: notify script %s: %s", self.name, script, exc)
            return
        if code != 0:
            log.warning("%s: notify script %s exited %d", self.name, script, code)

    # the state file ------------------------------------------------------------------------

    def dirty(self) -> None:
        """Counters changed: rewrite the state file soon (not once per packet)."""
        if self._state_write is None:
            self._state_write = self.loop.call_later(STATE_WRITE_DELAY, self.write_state)

    def write_state(self) -> None:
        if self._state_write is not None:
            self._state_write.cancel()
            self._state_write = None
        router = self.router
        state = {
            "instance": self.name,
            "vrid": self.config.vrid,
            "version": self.config.version,
            "interface": self.config.interface,
            "address": str(self.interface.address),
            "state": router.state.value,
            "reason": router.reason,
            "since": self._since,
            "priority": router.priority,
            "master": str(router.last_master) if router.last_master else None,
            "vips": [str(vip) for vip in self.vips],
            "faults": sorted(self.faults.active.values()),
            # packets dropped on this interface that were not for another virtual router,
            # and the part of them that no virtual router here claimed
            "drops": dict(self.drops.counts + self.interface.drops.counts),
            "interface_drops": dict(self.interface.drops.counts),
            "notices": dict(self.notices.counts),
            "pid": os.getpid(),
        }
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.state_file)
        except OSError as exc:
            log.error("%s: state file %s: %s", self.name, self.state_file, exc)

    # the end -------------------------------------------------------------------------------

    async def close(self) -> None:
        """After ``Shutdown``: wait for the VIP work and the notify scripts, stop timers."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._garp_repeat is not None:
            self._garp_repeat.cancel()
        if self._vip_work is not None:
            await asyncio.gather(self._vip_work, return_exceptions=True)
        if self._notifies:
            await asyncio.wait(self._notifies, timeout=NOTIFY_TIMEOUT)
        self.write_state()
