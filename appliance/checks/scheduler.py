"""When to check which server: one asyncio task per checked server.

HAProxy's timing rules (``inter``, ``fastinter``, ``downinter``): a server
whose state is settled is checked every ``inter``, one whose state is
changing (some failures while up, some successes while down) every
``fastinter`` so the change is confirmed or dropped quickly, and one that is
down every ``downinter``. The next check is timed from the end of the last.
The first checks of all servers are spread over the interval, so that a farm
of many servers is not checked in one burst at start-up.

Servers with an ``agent_port`` also get an agent check, on a task of its
own every ``inter`` (the backend's check section, or its default when there
is none: a server may have an agent and no regular check).

The scheduler only moves timers and bytes; each result goes to ``report``
(the proxy), which feeds the server's state machine, and each agent answer to
``report_agent``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.checks.agent import AgentAnswer, agent_check
from appliance.checks.http import http_check, parse_statuses
from appliance.checks.state import CheckResult, Health, ServerState
from appliance.checks.tcp import tcp_check
from appliance.config.model import CheckConfig

if TYPE_CHECKING:
    from appliance.proxy.server import Server

Report = Callable[["Server", CheckResult], None]
ReportAgent = Callable[["Server", AgentAnswer], None]


def interval(state: ServerState, config: CheckConfig) -> float:
    """Seconds until the next check of a server in ``state``."""
    if state.health is Health.DOWN:
        return config.downinter
    if state.health is Health.UP:
        return config.inter
    return config.fastinter


def checked(server: Server) -> bool:
    """HAProxy's "no check": a server without checks is always considered up."""
    return server.backend.config.check is not None and server.config.check


class CheckScheduler:
    def __init__(self, servers: list[Server], report: Report, report_agent: ReportAgent) -> None:
        self.servers = [s for s in servers if checked(s)]
        self.agents = [s for s in servers if s.config.agent_port]
        self.report = report
        self.report_agent = report_agent
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        count = len(self.servers)
        for index, server in enumerate(self.servers):
            offset = server.backend.config.check.inter * index / count
            self.tasks.append(asyncio.create_task(self._run(server, offset)))
        count = len(self.agents)
        for index, server in enumerate(self.agents):
            offset = (server.backend.config.check or CheckConfig()).inter * index / count
            self.tasks.append(asyncio.create_task(self._run_agent(server, offset)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    async def _run(self, server: Server, offset: float) -> None:
        config = server.backend.config.check
        timeout = server.backend.config.timeouts.check
        statuses = parse_statuses(config.expect_status)
        host, port = server.address
        await asyncio.sleep(offset)
        while True:
            try:
                if config.type == "tcp":
                    result = await tcp_check(host, port, timeout)
                else:
                    result = await http_check(host, port, config, timeout, statuses)
            except Exception as exc:  # a bug in a check must not stop checking the farm
                result = CheckResult(False, "Socket error", info=repr(exc))
            self.report(server, result)
            await asyncio.sleep(interval(server.state, config))

    async def _run_agent(self, server: Server, offset: float) -> None:
        inter = (server.backend.config.check or CheckConfig()).inter
        timeout = server.backend.config.timeouts.check
        host = server.address[0]
        port = server.config.agent_port
        await asyncio.sleep(offset)
        while True:
            try:
                answer = await agent_check(host, port, timeout)
            except Exception as exc:  # a bug in a check must not stop checking the farm
                answer = AgentAnswer(CheckResult(False, "Socket error", info=repr(exc)))
            self.report_agent(server, answer)
            await asyncio.sleep(inter)
