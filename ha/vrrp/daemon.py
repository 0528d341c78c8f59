"""``weir ha``: the VRRP daemon, wiring the virtual routers to the kernel (RFC 9568 §7).

One daemon runs every virtual router of the file (``[ha.vrrp]`` and its
``[[ha.vrrp.instances]]``); it only moves bytes and timers, the decisions are in
``ha.vrrp.machine``. It owns:

- per interface, the shared raw sockets and receive path (``ha.vrrp.interface``), read on
  the event loop and dispatched to the virtual routers (``ha.vrrp.instance``);
- one netlink socket for interface facts and VIPs, and the kernel's link notifications
  (``ha.vrrp.netlink``): a link that goes down puts its virtual routers in FAULT, one that
  comes back takes them out of it;
- ``track_proxy``: the local proxy probed with keepalived's fall/rise rule
  (``ha.vrrp.track``); an unhealthy proxy puts the tracking routers in FAULT;
- the optional takeover hint (``hint_port``, ``ha.vrrp.hint``).

SIGTERM or SIGINT: every router gets the machine's ``Shutdown`` (a master sends priority 0
and removes its VIPs), then the daemon exits 0. A daemon that cannot start (no such
interface, no address on it, no permission for raw sockets, a hint port in use) exits 2
with one line. See docs/failover.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from ipaddress import IPv4Address, IPv4Interface

from appliance.config.model import Config, VrrpConfig
from ha.vrrp.hint import HintClient, HintServer
from ha.vrrp.instance import Instance
from ha.vrrp.interface import Interface
from ha.vrrp.machine import MasterHintLost, Shutdown, Startup, State
from ha.vrrp.netlink import LinkError, LinkMonitor, Netlink
from ha.vrrp.receive import Accepted, Dropped, RouterKey
from ha.vrrp.track import FallRise, ProxyTarget, probe_interval, proxy_target

log = logging.getLogger("weir.ha")


class DaemonError(Exception):
    """The daemon cannot run here (no such interface, no address, no raw socket)."""


class VrrpDaemon:
    """Every virtual router of one configuration file, on their interfaces."""

    def __init__(self, config: Config) -> None:
        assert config.ha is not None and config.ha.vrrp is not None
        self.config = config
        self.routers: tuple[VrrpConfig, ...] = config.ha.vrrp.all_instances()
        self.netlink = Netlink()
        self.interfaces: dict[str, Interface] = {}
        self.instances: list[Instance] = []
        self._by_key: dict[tuple[str, RouterKey], Instance] = {}
        self.monitor = LinkMonitor(self._on_link, self._resync_links)
        self.hint_servers: list[HintServer] = []
        self.hint_clients: dict[int, HintClient] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # life cycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then leave cleanly (priority 0, VIPs removed)."""
        loop = asyncio.get_running_loop()
        try:
            await self._open()
            for interface in self.interfaces.values():
                loop.add_reader(interface.sock.fileno(), self._readable, interface)
            await self.monitor.start()
            for instance in self.instances:
                log.info("%s", instance.describe())
                instance.remove_leftover_vips()
                if instance.interface.up:
                    instance.handle(Startup())
                else:
                    instance.fault("link", f"{instance.interface.name} link down")
            self._start_tracking()
            await stop.wait()
            await self._stop_watching()  # no fault or hint may arrive after the shutdown
            for instance in self.instances:
                instance.handle(Shutdown())
        finally:
            await self._close()

    async def _open(self) -> None:
        by_interface: dict[str, list[VrrpConfig]] = {}
        for config in self.routers:
            by_interface.setdefault(config.interface, []).append(config)
        for name, configs in by_interface.items():
            try:
                link = await self.netlink.link(name)
                vips = {IPv4Interface(vip).ip for c in configs for vip in c.vips}
                address = link.primary_address(vips)
            except LinkError as exc:
                raise DaemonError(str(exc)) from None
            try:
                interface = Interface(
                    link,
                    address,
                    [Instance.router_of(c) for c in configs],
                    multicast=any(not c.unicast_peers for c in configs),
                )
            except OSError as exc:
                raise DaemonError(f"cannot open the raw sockets on {name}: {exc}") from None
            self.interfaces[name] = interface
            for config in configs:
                instance = Instance(config, interface, self.netlink, on_event=self._follow_master)
                self.instances.append(instance)
                self._by_key[name, Instance.router_of(config).key] = instance
        await self._open_hints()

    async def _open_hints(self) -> None:
        ports = {(c.interface, c.hint_port) for c in self.routers if c.hint_port}
        for name, port in sorted(ports):
            server = HintServer(self.interfaces[name].address, port)
            try:
                await server.start()
            except OSError as exc:
                raise DaemonError(f"takeover hint: cannot listen on port {port}: {exc}") from None
            self.hint_servers.append(server)
            self.hint_clients.setdefault(port, HintClient(port, self._on_hint_lost))

    async def _stop_watching(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.monitor.stop()
        for client in self.hint_clients.values():
            await client.close()

    async def _close(self) -> None:
        loop = asyncio.get_running_loop()
        await self._stop_watching()
        for server in self.hint_servers:
            await server.close()
        for instance in self.instances:
            await instance.close()
        for interface in self.interfaces.values():
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(interface.sock.fileno())
            interface.close()
        self.netlink.close()

    # the wire ------------------------------------------------------------------------------

    def _readable(self, interface: Interface) -> None:
        def deliver(result: Accepted | Dropped) -> None:
            if isinstance(result, Accepted):
                self._instance(interface, result.key).accept(result)
            elif result.key is not None:
                self._instance(interface, result.key).drop(result.kind, result.reason)
            else:
                interface.drops.add(result.kind, result.reason)
                for instance in self.instances:
                    if instance.interface is interface:
                        instance.dirty()

        interface.read(deliver)

    def _instance(self, interface: Interface, key: RouterKey) -> Instance:
        return self._by_key[interface.name, key]  # the receiver knows only our routers' keys

    # link tracking --------------------------------------------------------------------------

    def _on_link(self, index: int, up: bool, removed: bool) -> None:
        for interface in self.interfaces.values():
            if interface.index != index or (interface.up == up and not removed):
                continue
            interface.up = up
            what = "removed" if removed else "up" if up else "down"
            log.info("%s: link %s", interface.name, what)
            for instance in self.instances:
                if instance.interface is not interface:
                    continue
                if up:
                    instance.fault_cleared("link", f"{interface.name} link up")
                else:
                    instance.fault("link", f"{interface.name} link {what}")

    async def _resync_links(self) -> None:
        for interface in self.interfaces.values():
            try:
                link = await self.netlink.link(interface.name)
            except LinkError:
                self._on_link(interface.index, False, True)
                continue
            self._on_link(interface.index, link.up, False)

    # proxy tracking -------------------------------------------------------------------------

    def _start_tracking(self) -> None:
        tracking = [i for i in self.instances if i.config.track_proxy]
        if not tracking:
            return
        target = proxy_target(self.config)
        if target is None:
            log.info(
                "track_proxy: %s configures no frontend, so there is no proxy to track",
                self.config.path,
            )
            return
        interval = probe_interval([i.config.advert_interval for i in tracking])
        self._tasks.append(asyncio.ensure_future(self._track(target, interval, tracking)))

    async def _track(self, target: ProxyTarget, interval: float, tracking: list[Instance]) -> None:
        health = FallRise()
        log.info(
            "track_proxy: %s every %gs (down after %d failures, up after %d successes)",
            target,
            interval,
            health.fall,
            health.rise,
        )
        loop = asyncio.get_running_loop()
        reason = ""
        while True:
            started = loop.time()
            failure = await target.probe(interval)
            reason = failure or reason
            change = health.observe(not failure)
            if change is False:
                log.warning("track_proxy: the proxy is down: %s", reason)
                for instance in tracking:
                    instance.fault("proxy", f"proxy down: {reason}")
            elif change is True:
                log.info("track_proxy: the proxy is up again")
                for instance in tracking:
                    instance.fault_cleared("proxy", "proxy up again")
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    # the takeover hint ----------------------------------------------------------------------

    def _follow_master(self, instance: Instance) -> None:
        """After every event: connect to the masters that our backups follow."""
        port = instance.config.hint_port
        if not port:
            return
        masters: set[IPv4Address] = set()
        for other in self.instances:
            router = other.router
            if (
                other.config.hint_port == port
                and router.state is State.BACKUP
                and router.last_master is not None
                and router.last_master != other.interface.address
            ):
                masters.add(router.last_master)
        self.hint_clients[port].follow(masters)

    def _on_hint_lost(self, address: IPv4Address) -> None:
        for instance in self.instances:
            if instance.config.hint_port:
                instance.handle(MasterHintLost(address))


async def _serve(daemon: VrrpDaemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await daemon.run(stop)


def run_ha(config: Config) -> int:
    """``weir ha``: run every virtual router of ``config`` until SIGTERM/SIGINT; exit code."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s weir-ha[%(process)d]: %(message)s",
        datefmt="%b %d %H:%M:%S",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(VrrpDaemon(config)))
    except DaemonError as exc:
        print(f"weir ha: {exc}", file=sys.stderr)
        return 2
    return 0
