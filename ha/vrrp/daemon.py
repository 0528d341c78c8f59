"""``weir ha``: the VRRP daemon around the sans-io election (RFC 9568 §6.4, §7; keepalived).

Everything that decides lives in ``ha.vrrp.machine``; this module only moves bytes and
timers and carries out the machine's actions:

- a raw IPv4 socket for protocol 112, bound to the configured interface, joined to
  224.0.0.18 (TTL 255, no loopback of our own packets) or sending unicast to
  ``unicast_peers``;
- the receive path of RFC 9568 §7.1: IP header (protocol 112, TTL 255), then the VRRP
  message in the configured version and checksum dialect, then the checks that need our
  configuration (our own packet, VRID, address list); every drop is counted per reason
  and logged at a limited rate;
- timers with ``loop.call_later``;
- the VIPs added and removed with ``ip addr`` (iproute2), gratuitous ARPs sent from an
  ``AF_PACKET`` socket (a burst, repeated after a delay, as keepalived's
  ``garp_master_repeat`` and ``garp_master_delay``);
- on every transition a keepalived-style log line, a JSON state file and the optional
  notify script (``SCRIPT INSTANCE VI_<vrid> STATE PRIORITY``).

SIGTERM or SIGINT: the machine's ``Shutdown`` (a master sends priority 0 and removes its
VIPs), then exit 0. One virtual router per daemon for now (docs/failover.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from appliance.config.model import VrrpConfig
from ha.vrrp import packet
from ha.vrrp.machine import (
    Action,
    AddVips,
    AdvertisementReceived,
    Discard,
    Notify,
    RemoveVips,
    SendAdvertisement,
    SendGratuitousArps,
    Shutdown,
    StartTimer,
    Startup,
    State,
    StopTimer,
    Timer,
    TimerExpired,
    VirtualRouter,
)

log = logging.getLogger("weir.ha")

STATE_DIR = Path("/run/weir")
GARP_REPEAT = 5  # gratuitous ARPs per VIP in one burst (keepalived's garp_master_repeat)
GARP_DELAY = 5.0  # seconds until the second burst (keepalived's garp_master_delay)
DROP_LOG_INTERVAL = 10.0  # at most one log line per drop reason in this many seconds
NOTIFY_TIMEOUT = 10.0  # a notify script still running at exit is waited for this long

_IP_MREQN = struct.Struct("4s4si")  # group, local address, interface index
_ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6


class DaemonError(Exception):
    """The daemon cannot run here (no such interface, no address, no raw socket)."""


def primary_address(interface: str, vips: list[IPv4Interface]) -> IPv4Address:
    """The interface's first IPv4 address that is not a VIP: the source of our packets."""
    proc = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", interface],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if proc.returncode != 0:
        raise DaemonError(f"interface {interface}: {proc.stderr.strip() or 'not found'}")
    virtual = {vip.ip for vip in vips}
    for link in json.loads(proc.stdout or "[]"):
        for addr in link.get("addr_info", []):
            address = IPv4Address(addr["local"])
            if address not in virtual:
                return address
    raise DaemonError(f"interface {interface} has no IPv4 address of its own")


def open_vrrp_socket(interface: str, address: IPv4Address, *, multicast: bool) -> socket.socket:
    """The raw protocol-112 socket on ``interface``; ``OSError`` if the kernel refuses it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, packet.PROTOCOL)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        index = socket.if_nametoindex(interface)
        if multicast:
            mreqn = _IP_MREQN.pack(packet.MULTICAST_GROUP.packed, address.packed, index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, packet.TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, packet.TTL)
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


class VrrpDaemon:
    """One virtual router on one interface: the socket, the timers and the actions."""

    def __init__(self, config: VrrpConfig, *, state_file: Path | None = None) -> None:
        self.config = config
        self.name = f"VI_{config.vrid}"
        self.vips = [IPv4Interface(vip) for vip in config.vips]
        self.peers = [IPv4Address(peer) for peer in config.unicast_peers]
        self.destinations = self.peers or [packet.MULTICAST_GROUP]
        self.state_file = state_file or (
            Path(config.state_file) if config.state_file else STATE_DIR / f"vrrp-{config.vrid}.json"
        )
        self.address = primary_address(config.interface, self.vips)
        self.router = VirtualRouter.from_config(config, self.address)
        try:
            self.sock = open_vrrp_socket(config.interface, self.address, multicast=not self.peers)
        except OSError as exc:
            raise DaemonError(
                f"cannot open the raw VRRP socket on {config.interface}: {exc}"
            ) from None
        self.drops: Counter[str] = Counter()
        self._drop_logged: dict[str, float] = {}
        self._drop_suppressed: Counter[str] = Counter()
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._garp_repeat: asyncio.TimerHandle | None = None
        self._notifies: set[asyncio.Task[None]] = set()
        self._since = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None

    # life cycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then leave cleanly (priority 0, VIPs removed)."""
        self._loop = asyncio.get_running_loop()
        # A daemon killed with -9 left its VIPs behind; start from a clean slate, as keepalived.
        self._remove_vips(quiet=True)
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        log.info(
            "%s: interface %s, address %s, VRRPv%d, priority %d, advert interval %gs, %s",
            self.name,
            self.config.interface,
            self.address,
            self.config.version,
            self.config.priority,
            self.config.advert_interval,
            "unicast to " + ", ".join(map(str, self.peers)) if self.peers else "multicast",
        )
        try:
            self._handle(Startup())
            await stop.wait()
            self._handle(Shutdown())
        finally:
            self._loop.remove_reader(self.sock.fileno())
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            if self._garp_repeat is not None:
                self._garp_repeat.cancel()
            self.sock.close()
            if self._notifies:
                await asyncio.wait(self._notifies, timeout=NOTIFY_TIMEOUT)
            self._write_state()

    # events in ------------------------------------------------------------------------------

    def _handle(self, event: Any) -> None:
        for action in self.router.handle(event):
            self._carry_out(action)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: receive failed: %s", self.name, exc)
                return
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            header, payload = packet.parse_ipv4(data)
            packet.check_ip_header(ttl=header.ttl, protocol=header.protocol)
            if header.src == self.address:
                self._drop("own packet", f"our own packet from {header.src}")
                return
            adv = packet.decode(
                payload,
                header.src,
                header.dst,
                pseudo_header=True,
                expect_version=self.config.version,
            )
        except packet.BadPacket as exc:
            self._drop(type(exc).__name__, exc.reason)
            return
        if adv.vrid != self.config.vrid:
            self._drop(
                "wrong VRID", f"VRID {adv.vrid} from {header.src}, ours is {self.config.vrid}"
            )
            return
        if set(adv.addresses) != {vip.ip for vip in self.vips}:
            theirs = ", ".join(map(str, adv.addresses)) or "none"
            self._drop("address list mismatch", f"addresses [{theirs}] from {header.src}")
            return
        self._handle(AdvertisementReceived(adv.priority, header.src, adv.interval))

    def _drop(self, kind: str, reason: str) -> None:
        """Count a dropped packet; log it unless this kind was logged a moment ago."""
        self.drops[kind] += 1
        now = time.monotonic()
        last = self._drop_logged.get(kind)
        if last is not None and now - last < DROP_LOG_INTERVAL:
            self._drop_suppressed[kind] += 1
            return
        self._drop_logged[kind] = now
        suppressed = self._drop_suppressed.pop(kind, 0)
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        log.warning("%s: dropped a packet: %s%s", self.name, reason, more)

    def _expire(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        self._handle(TimerExpired(timer))

    # actions out ----------------------------------------------------------------------------

    def _carry_out(self, action: Action) -> None:
        match action:
            case SendAdvertisement(priority=priority):
                self._advertise(priority)
            case AddVips():
                self._add_vips()
            case RemoveVips():
                self._remove_vips()
            case SendGratuitousArps():
                self._send_garps()
                if self._garp_repeat is not None:
                    self._garp_repeat.cancel()
                assert self._loop is not None
                self._garp_repeat = self._loop.call_later(GARP_DELAY, self._repeat_garps)
            case StartTimer(timer=timer, delay=delay):
                if (old := self._timers.pop(timer, None)) is not None:
                    old.cancel()
                assert self._loop is not None
                self._timers[timer] = self._loop.call_later(delay, self._expire, timer)
            case StopTimer(timer=timer):
                if (old := self._timers.pop(timer, None)) is not None:
                    old.cancel()
            case Notify(state=state, reason=reason):
                self._notify(state, reason)
            case Discard(reason=reason):
                self._drop("discarded by the election", reason)

    def _advertise(self, priority: int) -> None:
        adv = packet.Advertisement(
            self.config.version,
            self.config.vrid,
            priority,
            self.config.advert_interval,
            tuple(vip.ip for vip in self.vips),
        )
        for dst in self.destinations:
            data = packet.encode(adv, self.address, dst, pseudo_header=True)
            try:
                self.sock.sendto(data, (str(dst), 0))
            except OSError as exc:
                log.warning("%s: advertisement to %s not sent: %s", self.name, dst, exc)

    def _ip_addr(self, verb: str, vip: IPv4Interface) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "addr", verb, str(vip), "dev", self.config.interface]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)

    def _add_vips(self) -> None:
        for vip in self.vips:
            proc = self._ip_addr("add", vip)
            if proc.returncode != 0 and "File exists" not in proc.stderr:
                log.error("%s: cannot add VIP %s: %s", self.name, vip, proc.stderr.strip())

    def _remove_vips(self, *, quiet: bool = False) -> None:
        for vip in self.vips:
            proc = self._ip_addr("del", vip)
            if proc.returncode != 0 and not quiet:
                log.error("%s: cannot remove VIP %s: %s", self.name, vip, proc.stderr.strip())

    def _send_garps(self) -> None:
        try:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
                raw.bind((self.config.interface, _ETH_P_ARP))
                mac = raw.getsockname()[4]
                frames = [gratuitous_arp(mac, vip.ip) for vip in self.vips]
                for _ in range(GARP_REPEAT):
                    for frame in frames:
                        raw.send(frame)
        except OSError as exc:
            log.warning("%s: gratuitous ARPs not sent: %s", self.name, exc)

    def _repeat_garps(self) -> None:
        self._garp_repeat = None
        if self.router.state is State.MASTER:
            self._send_garps()

    def _notify(self, state: State, reason: str) -> None:
        self._since = time.time()
        log.info("VRRP_Instance(%s) Entering %s STATE (%s)", self.name, state.value, reason)
        self._write_state()
        if self.config.notify:
            task = asyncio.ensure_future(self._run_notify(state))
            self._notifies.add(task)
            task.add_done_callback(self._notifies.discard)

    async def _run_notify(self, state: State) -> None:
        argv = [self.config.notify, "INSTANCE", self.name, state.value, str(self.router.priority)]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
            code = await proc.wait()
        except OSError as exc:
            log.error("%s: notify script %s: %s", self.name, self.config.notify, exc)
            return
        if code != 0:
            log.warning("%s: notify script %s exited %d", self.name, self.config.notify, code)

    def _write_state(self) -> None:
        state = {
            "instance": self.name,
            "vrid": self.config.vrid,
            "interface": self.config.interface,
            "address": str(self.address),
            "state": self.router.state.value,
            "reason": self.router.reason,
            "since": self._since,
            "priority": self.router.priority,
            "master": str(self.router.last_master) if self.router.last_master else None,
            "vips": [str(vip) for vip in self.vips],
            "drops": dict(self.drops),
            "pid": os.getpid(),
        }
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.state_file)
        except OSError as exc:
            log.error("%s: state file %s: %s", self.name, self.state_file, exc)


async def _serve(daemon: VrrpDaemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await daemon.run(stop)


def run_ha(config: VrrpConfig) -> int:
    """``weir ha``: run one virtual router until SIGTERM/SIGINT; the exit code."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s weir-ha[%(process)d]: %(message)s",
        datefmt="%b %d %H:%M:%S",
    )
    try:
        daemon = VrrpDaemon(config)
    except DaemonError as exc:
        print(f"weir ha: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(daemon))
    return 0
