"""The running proxy: frontends, backends, health checks, the logs and the stop sequence."""

from __future__ import annotations

import asyncio
import os
import socket

from appliance.checks.scheduler import CheckScheduler
from appliance.checks.state import CheckResult, Event, ramp_weight
from appliance.config.model import Config
from appliance.log.httplog import HttpLogFormatter, escape_request_line
from appliance.log.sink import LogSink, StderrSink, open_sink
from appliance.proxy.backend import Backend
from appliance.proxy.client import ClientConnection
from appliance.proxy.frontend import Frontend
from appliance.proxy.server import Server

POOL_PURGE_DELAY = 5.0  # idle server connections older than this are closed (HAProxy's default)


class Proxy:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.max_header_bytes = config.global_.max_header_bytes
        self.maxconn = config.global_.maxconn
        self.backends = {name: Backend(bc) for name, bc in config.backends.items()}
        self.frontends = {
            name: Frontend(fc, self, self.backends[fc.default_backend])
            for name, fc in config.frontends.items()
        }
        self.cur_conns = 0
        self.total_requests = 0
        self.paused = False
        self.stopping = False
        self.stopped = loop.create_future()
        self.formatter = HttpLogFormatter(
            hostname=socket.gethostname().split(".")[0], pid=os.getpid()
        )
        self.log: LogSink = open_sink(config.global_.log)
        # Event lines stay out of the access log, so halog reads it without errors.
        self.events: LogSink = StderrSink()
        self._purge_handle: asyncio.TimerHandle | None = None
        self.checks = CheckScheduler(
            [s for backend in self.backends.values() for s in backend.servers], self.check_done
        )

    # -- life cycle -------------------------------------------------------------

    def bind(self) -> None:
        """Open every listening socket; on any failure none stays open."""
        try:
            for frontend in self.frontends.values():
                frontend.bind()
        except OSError:
            for frontend in self.frontends.values():
                frontend.close()
            raise

    async def start(self) -> None:
        for frontend in self.frontends.values():
            await frontend.start()
            self.event(f"Proxy {frontend.name} started.")
        self.checks.start()
        self._purge_handle = self.loop.call_later(1.0, self._purge)

    def _purge(self) -> None:
        limit = self.loop.time() - POOL_PURGE_DELAY
        for backend in self.backends.values():
            for server in backend.servers:
                if server.idle:
                    server.purge_idle(limit)
        self._purge_handle = self.loop.call_later(1.0, self._purge)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``), close."""
        if self.stopping:
            await self.stopped
            return
        self.stopping = True
        await self.checks.stop()
        grace = self.config.global_.grace if grace is None else grace
        for frontend in self.frontends.values():
            frontend.close()
        self.event("Stopping proxy: waiting for in-flight requests.")
        deadline = self.loop.time() + grace
        while self.loop.time() < deadline:
            busy = self._close_idle_clients()
            if not busy:
                break
            await asyncio.sleep(0.05)
        for frontend in self.frontends.values():
            for conn in list(frontend.connections):
                conn.kill()
        await asyncio.sleep(0)  # let the killed connections' transports close
        for backend in self.backends.values():
            backend.close_idle()
        if self._purge_handle is not None:
            self._purge_handle.cancel()
        for backend in self.backends.values():
            for server in backend.servers:
                if server.warmup is not None:
                    server.warmup.cancel()
        self.event("Proxy stopped.")
        self.log.close()
        self.events.close()
        if not self.stopped.done():
            self.stopped.set_result(None)

    def _close_idle_clients(self) -> int:
        """Close keep-alive connections between requests; return how many are busy."""
        busy = 0
        for frontend in self.frontends.values():
            for conn in list(frontend.connections):
                if conn.phase == 0 and not conn.busy and conn.transport is not None:
                    conn.transport.close()
                else:
                    busy += 1
        return busy

    # -- server states ----------------------------------------------------------

    def check_done(self, server: Server, result: CheckResult) -> None:
        self.server_event(server, Event.CHECK_PASSED if result.ok else Event.CHECK_FAILED, result)

    def server_event(self, server: Server, event: Event, result: CheckResult | None = None) -> None:
        """Change ``server``'s state (a check result, an operator's command) and log it."""
        was_usable = server.state.usable
        for line in server.backend.apply(server, event, result):
            self.event(line)
        usable = server.state.usable
        if usable == was_usable:
            return
        check = server.backend.config.check
        if usable and check is not None and check.slowstart > 0:
            self._warm_up(server, self.loop.time(), check.slowstart)
        elif not usable and server.warmup is not None:
            server.warmup.cancel()
            server.warmup = None
            server.weight = server.config.weight

    def _warm_up(self, server: Server, since: float, slowstart: float) -> None:
        """One step of slow start: the weight grows linearly back to the configured one."""
        elapsed = self.loop.time() - since
        weight = ramp_weight(server.config.weight, elapsed, slowstart)
        if weight != server.weight:
            server.weight = weight
            server.backend.balancer.update()
        if elapsed >= slowstart:
            server.warmup = None
            return
        step = max(0.01, slowstart / 20)
        server.warmup = self.loop.call_later(step, self._warm_up, server, since, slowstart)

    # -- passive observation of live traffic ------------------------------------

    def observe_response(self, server: Server, status: int) -> None:
        """A server answered ``status`` >= 500 to live traffic."""

    def observe_failure(self, server: Server, reason: str) -> None:
        """Live traffic could not connect to ``server`` or got an invalid answer."""

    # -- accounting -------------------------------------------------------------

    def connection_opened(self) -> None:
        self.cur_conns += 1
        if self.cur_conns >= self.maxconn and not self.paused:
            self.paused = True
            for frontend in self.frontends.values():
                frontend.pause()

    def connection_closed(self) -> None:
        self.cur_conns -= 1
        if self.paused and self.cur_conns < self.maxconn and not self.stopping:
            self.paused = False
            for frontend in self.frontends.values():
                frontend.resume()

    # -- logs -------------------------------------------------------------------

    def event(self, message: str) -> None:
        self.events.write(self.formatter.event(message))

    def log_request(self, cc: ClientConnection, termination: str) -> None:
        self.total_requests += 1
        m_start = cc.m_start
        now = self.loop.time()
        m_head = cc.m_head
        tr = int((m_head - m_start) * 1000) if m_head else -1
        if cc.m_queued:
            tw = int(((cc.m_dequeued or now) - cc.m_queued) * 1000) if cc.m_dequeued else -1
        else:
            tw = 0 if cc.m_connect else -1
        tc = int((cc.m_connected - cc.m_connect) * 1000) if cc.m_connected else -1
        tr_resp = int((cc.m_resp - cc.m_connected) * 1000) if cc.m_resp else -1
        ta = int((now - m_start) * 1000)
        backend = cc.backend
        srv = cc.srv
        if cc.m_head:
            version = b"HTTP/1.0" if cc.http10 else b"HTTP/1.1"
            request_line = b"%b %b %b" % (cc.req_method, cc.path, version)
        else:
            request_line = b""
        term = termination + cc.cookie_log
        self.log.write(
            self.formatter.format(
                cc.client_ip,
                cc.client_port,
                cc.t_start,
                cc.fe.name,
                backend.name if backend is not None else cc.fe.name,
                srv.name if srv is not None else "",
                tr,
                tw,
                tc,
                tr_resp,
                ta,
                cc.status,
                cc.bytes_out,
                term,
                self.cur_conns,
                cc.fe.cur_conns,
                backend.cur_conns if backend is not None else 0,
                srv.cur_conns if srv is not None else 0,
                cc.retries_done,
                cc.redispatched,
                0,
                len(backend.queue) if backend is not None else 0,
                escape_request_line(request_line),
            )
        )
