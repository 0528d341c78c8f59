"""The running proxy: frontends, backends, health checks, the logs and the stop sequence."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from appliance.checks.agent import L7_OK, AgentAnswer
from appliance.checks.observe import failure_error, status_error
from appliance.checks.scheduler import CheckScheduler, checked
from appliance.checks.state import Admin, CheckResult, Event, ramp
from appliance.config.model import Config
from appliance.log.httplog import HttpLogFormatter, escape_request_line
from appliance.log.sink import LogSink, StderrSink, open_sink
from appliance.proxy.backend import Backend
from appliance.proxy.client import ClientConnection
from appliance.proxy.frontend import Frontend
from appliance.proxy.reload import ReloadFailed
from appliance.proxy.reload import reload as reload_config
from appliance.proxy.server import Server
from appliance.runtime.metrics import MetricsBindError, MetricsListener
from appliance.runtime.server import RuntimeServer
from ha.sync.service import SyncService, replicated_tables

POOL_PURGE_DELAY = 5.0  # idle server connections older than this are closed (HAProxy's default)
GARBAGE_LOG_EVERY = 100  # log the first agent reply that is garbage, then one in this many
_AGENT_ADMIN = {
    Admin.READY: Event.SET_READY,
    Admin.DRAIN: Event.SET_DRAIN,
    Admin.MAINT: Event.SET_MAINT,
}


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
        self.started = time.time()  # for show info's Uptime
        now = loop.time()
        for backend in self.backends.values():
            backend.counters.last_change = now
            for server in backend.servers:
                server.counters.last_change = now
        self.runtime = RuntimeServer(self)
        self.metrics = MetricsListener(self, config.global_.metrics_bind)
        self.sync = self._sync_service(config)
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
        self.staged_frontends: dict[str, Frontend] = {}  # opened by a reload in progress
        self._checks_lock = asyncio.Lock()
        self.checks = CheckScheduler(
            [s for backend in self.backends.values() for s in backend.servers],
            self.check_done,
            self.agent_done,
        )

    # -- life cycle -------------------------------------------------------------

    def bind(self) -> None:
        """Open every listening socket; on any failure none stays open.

        The runtime socket comes first: a second Weir on the same socket is refused
        with that reason (RuntimeSocketBusy) before its ports are tried. The metrics
        listener's failure is MetricsBindError, naming global.metrics_bind.
        """
        self.runtime.bind()
        try:
            self.metrics.bind()
            for frontend in self.frontends.values():
                frontend.bind()
            if self.sync is not None:
                self.sync.bind()
        except (OSError, MetricsBindError):
            for frontend in self.frontends.values():
                frontend.close()
            if self.sync is not None:
                self.sync.close()
            self.metrics.close()
            self.runtime.close()
            raise

    async def start(self) -> None:
        for frontend in self.frontends.values():
            await frontend.start()
            self.event(f"Proxy {frontend.name} started.")
        await self.runtime.start()
        await self.metrics.start()
        if self.sync is not None:
            await self.sync.start()
        self.checks.start()
        self._purge_handle = self.loop.call_later(1.0, self._purge)

    def reload(self) -> tuple[bool, list[str]]:
        """Re-read the configuration and apply it in place (runtime ``reload``, SIGHUP).

        Returns whether it was applied and the lines describing what changed, or
        every problem found (then nothing changed). Both are logged as events.
        """
        try:
            changes = reload_config(self)
        except ReloadFailed as exc:
            self.event(f"Reload of {self.config.path} failed, nothing changed:")
            for line in exc.problems:
                self.event(f"  {line}")
            return False, exc.problems
        changes += self._reload_sync()
        self.event(f"Reloaded {self.config.path}: {len(changes) or 'no'} change(s).")
        for line in changes:
            self.event(f"  {line}")
        return True, changes

    def _sync_service(self, config: Config) -> SyncService | None:
        """The stick-table sync of ``[ha.sync]`` (ha/sync), or None without one."""
        sync = config.ha.sync if config.ha is not None else None
        if sync is None:
            return None
        return SyncService(sync, self.loop, lambda: replicated_tables(self.backends), self.event)

    def _reload_sync(self) -> list[str]:
        """Start, stop or reconfigure the sync service; its tables survive (they are ours)."""
        config = self.config.ha.sync if self.config.ha is not None else None
        if self.sync is not None and config is not None:
            return self.sync.reconfigure(config)
        if self.sync is not None:
            self.loop.create_task(self.sync.stop())
            self.sync = None
            return ["ha.sync: removed; sync stopped"]
        if config is None:
            return []
        sync = self._sync_service(self.config)
        try:
            sync.bind()
        except OSError as exc:
            return [f"ha.sync: not started: {exc}"]
        self.sync = sync
        self.loop.create_task(sync.start())
        return ["ha.sync: added; sync started"]

    async def restart_checks(self) -> None:
        """Check the servers of the (reloaded) configuration; states are kept."""
        async with self._checks_lock:
            await self.checks.stop()
            if self.stopping:
                return
            self.checks = CheckScheduler(
                [s for backend in self.backends.values() for s in backend.servers],
                self.check_done,
                self.agent_done,
            )
            self.checks.start()

    def _purge(self) -> None:
        self._count_rates()
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
        self.runtime.close()
        self.metrics.close()
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
        if self.sync is not None:
            await self.sync.stop()
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
        counters = server.counters
        counters.last_check = result
        if not result.ok:
            counters.chkfail += 1
        self.server_event(server, Event.CHECK_PASSED if result.ok else Event.CHECK_FAILED, result)

    def server_event(self, server: Server, event: Event, result: CheckResult | None = None) -> None:
        """Change ``server``'s state (a check result, an operator's command) and log it."""
        was_usable = server.state.usable
        was_operational = server.state.operational
        backend = server.backend
        backend_was_up = backend.has_available()
        for line in backend.apply(server, event, result):
            self.event(line)
        if server.state.operational != was_operational:
            server.counters.state_changed(not was_operational, self.loop.time())
        if backend.has_available() != backend_was_up:
            backend.counters.state_changed(not backend_was_up, self.loop.time())
        usable = server.state.usable
        if usable == was_usable:
            return
        check = server.backend.config.check
        if usable and check is not None and check.slowstart > 0:
            self._warm_up(server, self.loop.time(), check.slowstart)
        elif not usable and server.warmup is not None:
            server.warmup.cancel()
            server.warmup = None
            server.weight = server.user_weight
            server.maxconn = server.config.maxconn

    def _warm_up(self, server: Server, since: float, slowstart: float) -> None:
        """One step of slow start: weight and maxconn grow linearly back to their full values."""
        elapsed = self.loop.time() - since
        weight = ramp(server.user_weight, elapsed, slowstart)
        maxconn = ramp(server.config.maxconn, elapsed, slowstart)
        if weight != server.weight or maxconn != server.maxconn:
            server.weight = weight
            server.maxconn = maxconn
            server.backend.refresh()
        if elapsed >= slowstart:
            server.warmup = None
            return
        step = max(0.01, slowstart / 20)
        server.warmup = self.loop.call_later(step, self._warm_up, server, since, slowstart)

    def set_weight(self, server: Server, weight: int) -> None:
        """Give ``server`` a new weight (its agent's); a slow-start ramp heads for it."""
        server.user_weight = weight
        if server.warmup is None and weight != server.weight:
            server.weight = weight
            server.backend.refresh()

    # -- agent checks -----------------------------------------------------------

    def agent_done(self, server: Server, answer: AgentAnswer) -> None:
        """Carry out what the server's agent said (docs/health.md, "Agent check")."""
        result = answer.result
        reply = answer.reply
        who = f"{server.backend.name}/{server.name}"
        if not result.ok:
            # An agent out of reach changes nothing: the regular check judges the server.
            if server.agent_said != result.reason:
                server.agent_said = result.reason
                self.event(f"Agent check for server {who} failed, {result.describe()}.")
            return
        if reply is None:
            server.agent_garbage += 1
            if server.agent_garbage % GARBAGE_LOG_EVERY == 1:
                self.event(
                    f"Agent check for server {who} ignored a reply that is not an agent line "
                    f"({server.agent_garbage} so far): {answer.raw[:60]!r}"
                )
            return
        if server.agent_said != reply.text:
            server.agent_said = reply.text
            self.event(
                f"Agent check for server {who} succeeded, reason: {L7_OK}, "
                f'info: "{reply.text}", check duration: {int(result.duration * 1000)}ms.'
            )
        weight = reply.effective_weight(server.config.weight)
        if weight is not None:
            self.set_weight(server, weight)
        if reply.admin is not None:
            self.server_event(server, _AGENT_ADMIN[reply.admin])
        if reply.health is not None:
            up = reply.health == "up"
            info = f"via agent : {reply.health}" + (f" ({reply.comment})" if reply.comment else "")
            said = CheckResult(up, L7_OK if up else "Layer7 wrong status", info=info)
            self.server_event(server, Event.AGENT_UP if up else Event.AGENT_DOWN, said)

    # -- passive observation of live traffic ------------------------------------

    def observe_response(self, server: Server, status: int) -> None:
        """A server answered ``status`` >= 500 to live traffic."""
        if checked(server):
            error = status_error(server.backend.config.check.observe, status)
            if error is not None:
                self.server_event(server, Event.OBSERVED_ERROR, error)

    def observe_failure(self, server: Server, reason: str) -> None:
        """Live traffic could not connect to ``server`` or got an invalid answer."""
        # Only checked servers: the checks are what brings a server back up.
        if checked(server):
            error = failure_error(server.backend.config.check.observe, reason)
            if error is not None:
                self.server_event(server, Event.OBSERVED_ERROR, error)

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

    def _count_rates(self) -> None:
        """Once a second: the per-second rates of every counter set (show stat's rate...)."""
        for frontend in self.frontends.values():
            frontend.counters.tick(frontend.total_conns)
        for backend in self.backends.values():
            backend.counters.tick()
            for server in backend.servers:
                server.counters.tick()

    @staticmethod
    def _count_retries(cc: ClientConnection) -> None:
        for counters in (cc.backend.counters, cc.srv.counters if cc.srv is not None else None):
            if counters is not None:
                counters.wretr += cc.retries_done
                counters.wredis += cc.redispatched

    def _count_errors(self, cc: ClientConnection, termination: str) -> None:
        """Error counters from the termination state (rare: only requests that failed)."""
        who, phase = termination[0], termination[1]
        backend = cc.backend
        srv = cc.srv
        counters = [backend.counters] if backend is not None else []
        if srv is not None:
            counters.append(srv.counters)
        if who in "cC":
            if phase == "R":
                cc.fe.counters.ereq += 1
            else:
                for c in counters:
                    c.cli_abrt += 1
        elif who == "P" and phase == "R":
            cc.fe.counters.ereq += 1
        elif who in "sS":
            for c in counters:
                if phase == "C":
                    c.econ += 1
                else:
                    c.eresp += 1
                    if who == "S" and phase == "D":
                        c.srv_abrt += 1

    # -- logs -------------------------------------------------------------------

    def event(self, message: str) -> None:
        self.events.write(self.formatter.event(message))

    def log_request(self, cc: ClientConnection, termination: str, now: float | None = None) -> None:
        """Count the finished request in the statistics and write its access-log line.

        ``now`` is the loop time if the caller has just read it. Runs once per
        request: locals instead of repeated attribute lookups, the counters are a
        few increments (no allocation), and the wall clock is read once, for the
        line's time; the accept date is that minus the request's age.
        """
        self.total_requests += 1
        if now is None:
            now = self.loop.time()
        wall = time.time()
        m_start = cc.m_start
        m_head = cc.m_head
        m_connect = cc.m_connect
        m_connected = cc.m_connected
        m_resp = cc.m_resp
        tr = int((m_head - m_start) * 1000) if m_head else -1
        if cc.m_queued:
            tw = int((cc.m_dequeued - cc.m_queued) * 1000) if cc.m_dequeued else -1
        else:
            tw = 0 if m_connect else -1
        tc = int((m_connected - m_connect) * 1000) if m_connected else -1
        tr_resp = int((m_resp - m_connected) * 1000) if m_resp else -1
        fe = cc.fe
        backend = cc.backend
        srv = cc.srv
        status = cc.status
        bytes_in = cc.head_bytes
        bytes_out = cc.bytes_out
        status_class = status // 100 if 99 < status < 600 else 0
        counters = fe.counters
        counters.req_tot += 1
        counters.bin += bytes_in
        counters.bout += bytes_out
        counters.hrsp[status_class] += 1
        if backend is not None:
            backend_name = backend.name
            backend_conns = backend.cur_conns
            counters = backend.counters
            counters.stot += 1
            counters.req_tot += 1
            counters.bin += bytes_in
            counters.bout += bytes_out
            counters.hrsp[status_class] += 1
            counters.last_sess = now
            if backend_conns > counters.smax:
                counters.smax = backend_conns
            queue = backend.queue
            if srv is not None:
                srv_name = srv.name
                srv_conns = srv.cur_conns
                counters = srv.counters
                counters.stot += 1
                counters.bin += bytes_in
                counters.bout += bytes_out
                counters.hrsp[status_class] += 1
                counters.last_sess = now
                if srv_conns > counters.smax:
                    counters.smax = srv_conns
                srv_queue = backend.queued_for(srv) if queue else 0
            else:
                srv_name = ""
                srv_conns = srv_queue = 0
            if cc.retries_done or cc.redispatched:
                self._count_retries(cc)
            backend_queue = len(queue)
        else:
            backend_name = fe.name
            srv_name = ""
            backend_conns = srv_conns = srv_queue = backend_queue = 0
        if termination[0] != "-":
            self._count_errors(cc, termination)
        if m_head:
            version = b"HTTP/1.0" if cc.http10 else b"HTTP/1.1"
            request_line = escape_request_line(b"%b %b %b" % (cc.req_method, cc.path, version))
        else:
            request_line = ""
        self.log.write(
            self.formatter.format(
                cc.client_ip,
                cc.client_port,
                wall - (now - m_start),
                fe.name,
                backend_name,
                srv_name,
                tr,
                tw,
                tc,
                tr_resp,
                int((now - m_start) * 1000),
                status,
                bytes_out,
                termination + cc.cookie_log,
                self.cur_conns,
                fe.cur_conns,
                backend_conns,
                srv_conns,
                cc.retries_done,
                cc.redispatched,
                srv_queue,
                backend_queue,
                request_line,
                cc.captured_req,
                cc.captured_res,
                wall,
            )
        )
