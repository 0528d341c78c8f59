"""``weir run``: the appliance process in the foreground."""

from __future__ import annotations

import asyncio
import gc
import resource
import signal
import sys

import uvloop

from appliance.config.model import Config
from appliance.proxy.proxy import Proxy
from appliance.runtime.metrics import MetricsBindError
from appliance.runtime.server import RuntimeSocketBusy


def raise_file_limit() -> None:
    """Use the hard limit on open files: every client and server connection is one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(config: Config) -> int:
    """Run the proxy described by ``config`` until SIGTERM/SIGINT; return the exit code."""
    raise_file_limit()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        proxy = Proxy(config, loop)
        try:
            proxy.bind()
        except (RuntimeSocketBusy, MetricsBindError) as exc:
            proxy.log.close()
            proxy.events.close()
            print(f"weir: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            proxy.log.close()
            proxy.events.close()
            print(f"weir: cannot bind: {exc.strerror or exc}", file=sys.stderr)
            return 2

        def stop() -> None:
            loop.create_task(proxy.stop())

        def reload() -> None:
            proxy.event("SIGHUP received: reloading the configuration.")
            proxy.reload()

        # Handlers first: a signal sent as soon as the ports answer must not find
        # the default action (SIGHUP's would kill the process).
        loop.add_signal_handler(signal.SIGTERM, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        loop.add_signal_handler(signal.SIGHUP, reload)
        loop.run_until_complete(proxy.start())
        # Connections free themselves by reference counting; the cyclic GC only
        # has stragglers to find, so run it less often, and never over the
        # long-lived objects made at start-up.
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        loop.run_until_complete(proxy.stopped)
        return 0
    finally:
        loop.close()
