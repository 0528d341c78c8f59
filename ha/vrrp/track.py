"""Tracking: what puts a virtual router in FAULT besides the election (keepalived's track_*).

Two things are tracked, as keepalived's ``track_interface`` and ``track_script``:

- the interface's link (netlink notifications, ``ha.vrrp.netlink``): down means FAULT at
  once, since no advertisement can get through anyway;
- the local proxy (``track_proxy``): ``weir run`` on the same box is asked ``show info``
  through its runtime API, or, when the file configures no runtime socket, a TCP
  connection is opened to the first frontend's address. A proxy that does not answer, or
  answers that it is stopping, fails a probe.

A probe is judged with keepalived's ``fall``/``rise`` rule (``FallRise``): FALL
consecutive failures make the proxy unhealthy, RISE consecutive successes healthy again, so
one slow answer (a busy event loop, a reload) never costs a takeover. Several fault sources
may hold one router at a time; ``FaultSet`` turns their changes into the machine's
``Fault`` (the first) and ``FaultCleared`` (the last).

``FallRise`` and ``FaultSet`` have no I/O; ``probe_runtime_api`` and ``probe_tcp`` are the
two probes, each bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from appliance.config.model import Config
from ha.vrrp.machine import Fault, FaultCleared

# Probe timing, chosen against the election's own timing (docs/failover.md): a probe every
# advertisement interval (at least PROBE_MIN, at most PROBE_MAX apart), each bounded by
# the same interval so probes never overlap; FALL failures in a row mark the proxy down,
# which matches VRRP's own patience of three missed advertisements; RISE successes in a row
# bring it back, so a proxy that crashes right after starting does not flap mastership.
PROBE_MIN = 0.1
PROBE_MAX = 1.0
FALL = 3
RISE = 2


def probe_interval(advert_intervals: list[float]) -> float:
    """One probe per advertisement interval of the fastest tracking router, within bounds."""
    return min(max(min(advert_intervals), PROBE_MIN), PROBE_MAX)


class FallRise:
    """keepalived's fall/rise rule over a stream of probe results; starts healthy."""

    def __init__(self, fall: int = FALL, rise: int = RISE) -> None:
        if fall < 1 or rise < 1:
            raise ValueError("fall and rise must be at least 1")
        self.fall = fall
        self.rise = rise
        self.healthy = True
        self._streak = 0  # consecutive results that disagree with ``healthy``

    def observe(self, ok: bool) -> bool | None:
        """Record one probe; the new health when it changes, else None."""
        if ok == self.healthy:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < (self.rise if ok else self.fall):
            return None
        self.healthy = ok
        self._streak = 0
        return ok


class FaultSet:
    """The fault sources holding one virtual router; the machine sees the first and last."""

    def __init__(self) -> None:
        self.active: dict[str, str] = {}  # source -> reason

    def raise_(self, source: str, reason: str) -> Fault | None:
        """``source`` failed: a ``Fault`` if it is the first active fault."""
        first = not self.active
        self.active[source] = reason
        return Fault(reason) if first else None

    def clear(self, source: str, reason: str) -> FaultCleared | None:
        """``source`` recovered: ``FaultCleared`` if no other fault remains."""
        if self.active.pop(source, None) is None or self.active:
            return None
        return FaultCleared(reason)


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """How to ask the local proxy: its runtime socket, or else a frontend's address."""

    runtime_socket: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.runtime_socket:
            return f"runtime API {self.runtime_socket} (show info)"
        return f"frontend {self.host}:{self.port} (TCP connect)"

    async def probe(self, timeout: float) -> str:
        """ "" if the proxy is healthy, else why not."""
        if self.runtime_socket:
            return await probe_runtime_api(self.runtime_socket, timeout)
        return await probe_tcp(self.host, self.port, timeout)


_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def proxy_target(config: Config) -> ProxyTarget | None:
    """What ``track_proxy`` asks in this file; None when it configures no proxy at all."""
    if not config.frontends:
        return None
    if config.global_.runtime_socket:
        return ProxyTarget(runtime_socket=config.global_.runtime_socket)
    first = next(iter(config.frontends.values())).bind[0]
    return ProxyTarget(host=_LOCAL.get(first.host, first.host), port=first.port)


async def probe_runtime_api(path: str, timeout: float) -> str:
    """Ask ``show info`` on the runtime socket; "" if the proxy is healthy, else why not."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"show info\n")
            await writer.drain()
            answer = await reader.readuntil(b"\n\n")
    except TimeoutError:
        return f"runtime API {path}: no answer to 'show info' within {timeout:g}s"
    except asyncio.IncompleteReadError:
        return f"runtime API {path}: the answer to 'show info' ended early"
    except (OSError, asyncio.LimitOverrunError) as exc:
        return f"runtime API {path}: {_why(exc)}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    fields = dict(
        line.split(": ", 1) for line in answer.decode(errors="replace").splitlines() if ": " in line
    )
    if "Pid" not in fields:
        return f"runtime API {path}: 'show info' answered without the process facts"
    if fields.get("Stopping", "0") != "0":
        return f"runtime API {path}: the proxy is stopping"
    return ""


async def probe_tcp(host: str, port: int, timeout: float) -> str:
    """Open (and close) a TCP connection; "" if it was accepted, else why not."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"frontend {host}:{port}: no connection within {timeout:g}s"
    except OSError as exc:
        return f"frontend {host}:{port}: {_why(exc)}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return ""


def _why(exc: Exception) -> str:
    """The system's words for a socket error (asyncio's own messages add the address)."""
    number = getattr(exc, "errno", None)
    return os.strerror(number) if number else str(exc)
