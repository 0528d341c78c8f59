"""Live reload: apply a new configuration to the running proxy, in place.

``reload`` (runtime API) and SIGHUP re-read the configuration file. An invalid
file changes nothing and every problem is reported. A valid one is applied
without a restart: new and removed frontends, backends and servers; changed
settings; listening addresses opened and closed as the ``bind`` lists say
(unchanged ones keep their sockets, so no connection attempt is refused).
Servers that keep their name keep their state (UP/DOWN, DRAIN/MAINT),
counters, pooled connections and in-flight requests; stick tables keep their
entries; connections and requests in flight finish on the settings they
started with.

New listening sockets are opened before anything else changes, so a port in
use fails the reload with nothing changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.config import ConfigError, load
from appliance.config.model import Address, Config
from appliance.log.sink import open_sink
from appliance.proxy.backend import Backend
from appliance.proxy.frontend import Frontend

if TYPE_CHECKING:
    from appliance.proxy.proxy import Proxy


class ReloadFailed(Exception):
    """The new configuration cannot be applied; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def reload(proxy: Proxy, path: str | None = None) -> list[str]:
    """Apply the configuration file (the running one's path by default).

    Returns what changed, one line each; raises ``ReloadFailed`` with every
    problem when nothing was changed.
    """
    path = path or proxy.config.path
    try:
        config = load(path, for_run=True)
    except ConfigError as exc:
        raise ReloadFailed([str(p) for p in exc.problems]) from None
    opened = _open_new_listeners(proxy, config)  # may raise: nothing changed yet
    changes = [f"{name} {address}: listening" for name, address in opened]
    changes += _apply_global(proxy, config)
    changes += _apply_backends(proxy, config)
    changes += _apply_frontends(proxy, config)
    proxy.config = config
    proxy.loop.create_task(proxy.restart_checks())
    return changes


def _open_new_listeners(proxy: Proxy, config: Config) -> list[tuple[str, Address]]:
    """Open the sockets of addresses not listened on yet; all or none."""
    opened: list[tuple[Frontend, Address]] = []
    staged: dict[str, Frontend] = {}
    try:
        for name, fc in config.frontends.items():
            frontend = proxy.frontends.get(name)
            if frontend is None:
                frontend = staged[name] = _new_frontend(proxy, config, fc.name)
            for address in frontend.bind(fc.bind):
                opened.append((frontend, address))
    except OSError as exc:
        for frontend, address in opened:
            frontend.unbind(address)
        raise ReloadFailed([f"cannot bind: {exc.strerror or exc}; nothing changed"]) from None
    proxy.staged_frontends = staged
    return [(f"frontend {frontend.name}", address) for frontend, address in opened]


def _new_frontend(proxy: Proxy, config: Config, name: str) -> Frontend:
    fc = config.frontends[name]
    backend = proxy.backends.get(fc.default_backend)
    if backend is None:  # a backend added by the same reload: a stand-in until applied
        backend = Backend(config.backends[fc.default_backend])
    return Frontend(fc, proxy, backend)


def _apply_global(proxy: Proxy, config: Config) -> list[str]:
    old, new = proxy.config.global_, config.global_
    changes = []
    if new.maxconn != old.maxconn:
        proxy.maxconn = new.maxconn
        changes.append(f"global.maxconn: {old.maxconn} -> {new.maxconn}")
    if new.max_header_bytes != old.max_header_bytes:
        proxy.max_header_bytes = new.max_header_bytes
        changes.append(f"global.max_header_bytes: {old.max_header_bytes} -> {new.max_header_bytes}")
    if new.log != old.log:
        previous = proxy.log
        proxy.log = open_sink(new.log)
        previous.close()
        changes.append(f"global.log: now {new.log}")
    else:
        proxy.log.reopen()  # logrotate's postrotate runs a reload
    if new.runtime_socket != old.runtime_socket:
        changes.append("global.runtime_socket: changed; takes effect at the next restart")
    if new.metrics_bind != old.metrics_bind:
        changes.append("global.metrics_bind: changed; takes effect at the next restart")
    if new.grace != old.grace:
        changes.append(f"global.grace: {old.grace:g}s -> {new.grace:g}s")
    return changes


def _apply_backends(proxy: Proxy, config: Config) -> list[str]:
    changes = []
    backends = {}
    for name, bc in config.backends.items():
        backend = proxy.backends.get(name)
        if backend is None:
            backend = Backend(bc)
            backend.counters.last_change = proxy.loop.time()
            changes.append(f"backend {name}: added")
        else:
            changes += backend.reconfigure(bc)
        backends[name] = backend
    for name, gone in proxy.backends.items():
        if name not in backends:
            for server in gone.servers:
                server.close_idle()
            changes.append(f"backend {name}: removed")
    proxy.backends = backends
    return changes


def _apply_frontends(proxy: Proxy, config: Config) -> list[str]:
    changes = []
    frontends = {}
    staged = proxy.staged_frontends
    proxy.staged_frontends = {}
    for name, fc in config.frontends.items():
        backend = proxy.backends[fc.default_backend]
        frontend = proxy.frontends.get(name)
        if frontend is None:
            frontend = staged[name]
            frontend.configure(fc, backend)
            changes.append(f"frontend {name}: added")
        else:
            if frontend.config != fc:
                changes.append(f"frontend {name}: updated")
            for address in list(frontend.sockets):
                if address not in fc.bind:
                    frontend.unbind(address)
                    changes.append(f"frontend {name} {address}: no longer listening")
            frontend.configure(fc, backend)
        frontends[name] = frontend
        if not proxy.paused:
            proxy.loop.create_task(frontend.start())
    for name, gone in proxy.frontends.items():
        if name not in frontends:
            gone.close()  # its connections live on until they end
            changes.append(f"frontend {name}: removed")
    proxy.frontends = frontends
    return changes
