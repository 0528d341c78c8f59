"""TCP health check: the server accepts a connection (HAProxy's plain ``check``).

The article's first level of testing: a server that does not even accept a
connection is dead. Outcomes use HAProxy's reasons: "Layer4 check passed",
"Layer4 connection problem" (refused, unreachable: the system's message as
info) and "Layer4 timeout" (no answer within ``timeouts.check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from appliance.checks.state import CheckResult

L4_OK = "Layer4 check passed"
L4_CON = "Layer4 connection problem"
L4_TIMEOUT = "Layer4 timeout"


def connect_error(exc: OSError, duration: float) -> CheckResult:
    """The result of a connect that failed with ``exc`` (info: the system's message)."""
    info = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    return CheckResult(False, L4_CON, info=info, duration=duration)


def hang_up(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


async def tcp_check(host: str, port: int, timeout: float) -> CheckResult:
    """Connect to ``host:port`` within ``timeout`` seconds, then hang up."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return CheckResult(False, L4_TIMEOUT, duration=loop.time() - start)
    except OSError as exc:
        return connect_error(exc, loop.time() - start)
    hang_up(writer)
    return CheckResult(True, L4_OK, duration=loop.time() - start)
