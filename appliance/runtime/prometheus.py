"""The counters in Prometheus' text exposition format, version 0.0.4 (no I/O).

The format is Prometheus' "Exposition formats" document: per metric family a
``# HELP`` and a ``# TYPE`` line, then one ``name{labels} value`` line per
sample; label values escape backslash, double quote and newline, help texts
backslash and newline. Names follow the HAProxy exporter's
(``haproxy_backend_up`` becomes ``weir_backend_up``); counters end in
``_total``, gauges do not.

The values are the ones ``show stat`` reports (``commands.py``), read from the
same live objects and counters (``appliance/proxy/counters.py``); nothing here
is kept between scrapes. ``render`` is one pass over the farm, a few
microseconds per server, so a scrape does not hold up traffic
(docs/metrics.md gives the measurement).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from appliance.checks.state import Admin

if TYPE_CHECKING:
    from appliance.proxy.backend import Backend
    from appliance.proxy.proxy import Proxy
    from appliance.proxy.server import Server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTER, GAUGE = "counter", "gauge"
# Counters.hrsp's slots, as the ``code`` label: hrsp[1] is 1xx ... hrsp[0] is "other".
STATUS_CLASSES = (("1xx", 1), ("2xx", 2), ("3xx", 3), ("4xx", 4), ("5xx", 5), ("other", 0))


class Scrape(NamedTuple):
    """What every value of one scrape may need besides its own object."""

    now: float  # loop time
    queued: Counter[Server]  # requests waiting in a backend queue for one server


class Metric(NamedTuple):
    """One metric family: ``value(obj, scrape)`` gives a sample, or None for no sample."""

    name: str
    type: str
    help: str
    value: Callable[[Any, Scrape], float | None]


PROCESS = (
    Metric(
        "weir_process_start_time_seconds",
        GAUGE,
        "Start time of the process since the Unix epoch.",
        lambda p, _: p.started,
    ),
    Metric(
        "weir_process_max_connections",
        GAUGE,
        "Client connections at which accepting pauses (global.maxconn).",
        lambda p, _: p.maxconn,
    ),
    Metric(
        "weir_process_current_connections",
        GAUGE,
        "Client connections open now, all frontends.",
        lambda p, _: p.cur_conns,
    ),
    Metric(
        "weir_process_connections_total",
        COUNTER,
        "Client connections accepted, all frontends.",
        lambda p, _: sum(fe.total_conns for fe in p.frontends.values()),
    ),
    Metric(
        "weir_process_requests_total",
        COUNTER,
        "HTTP requests handled, all frontends.",
        lambda p, _: p.total_requests,
    ),
    Metric(
        "weir_process_stopping",
        GAUGE,
        "1 while the process is stopping (no longer accepting).",
        lambda p, _: int(p.stopping),
    ),
)

FRONTEND = (
    Metric(
        "weir_frontend_current_sessions",
        GAUGE,
        "Client connections open now.",
        lambda fe, _: fe.cur_conns,
    ),
    Metric(
        "weir_frontend_max_sessions",
        GAUGE,
        "Most client connections open at once.",
        lambda fe, _: fe.counters.smax,
    ),
    Metric(
        "weir_frontend_limit_sessions",
        GAUGE,
        "Client connections at which accepting pauses (global.maxconn).",
        lambda fe, _: fe.proxy.maxconn,
    ),
    Metric(
        "weir_frontend_sessions_total",
        COUNTER,
        "Client connections accepted.",
        lambda fe, _: fe.counters.stot,
    ),
    Metric(
        "weir_frontend_http_requests_total",
        COUNTER,
        "HTTP requests received.",
        lambda fe, _: fe.counters.req_tot,
    ),
    Metric(
        "weir_frontend_request_errors_total",
        COUNTER,
        "Requests rejected as invalid or timed out before their head was complete.",
        lambda fe, _: fe.counters.ereq,
    ),
    Metric(
        "weir_frontend_bytes_in_total",
        COUNTER,
        "Request head bytes received from clients.",
        lambda fe, _: fe.counters.bin,
    ),
    Metric(
        "weir_frontend_bytes_out_total",
        COUNTER,
        "Response bytes sent to clients.",
        lambda fe, _: fe.counters.bout,
    ),
)

BACKEND = (
    Metric(
        "weir_backend_up",
        GAUGE,
        "1 if the backend has a server that can take traffic, else 0.",
        lambda b, _: int(b.has_available()),
    ),
    Metric(
        "weir_backend_current_sessions",
        GAUGE,
        "Requests in progress on the backend's servers.",
        lambda b, _: b.cur_conns,
    ),
    Metric(
        "weir_backend_max_sessions",
        GAUGE,
        "Most requests in progress at once.",
        lambda b, _: b.counters.smax,
    ),
    Metric(
        "weir_backend_sessions_total",
        COUNTER,
        "Requests sent to the backend.",
        lambda b, _: b.counters.stot,
    ),
    Metric(
        "weir_backend_current_queue",
        GAUGE,
        "Requests waiting in the backend's queue now.",
        lambda b, _: len(b.queue),
    ),
    Metric(
        "weir_backend_max_queue",
        GAUGE,
        "Longest the backend's queue has been.",
        lambda b, _: b.counters.qmax,
    ),
    Metric(
        "weir_backend_weight",
        GAUGE,
        "Total effective weight of the servers taking traffic.",
        lambda b, _: _backend_weight(b),
    ),
    Metric(
        "weir_backend_active_servers",
        GAUGE,
        "Normal servers taking traffic.",
        lambda b, _: sum(1 for s in b.servers if s.available and not s.config.backup),
    ),
    Metric(
        "weir_backend_backup_servers",
        GAUGE,
        "Backup servers taking traffic.",
        lambda b, _: sum(1 for s in b.servers if s.available and s.config.backup),
    ),
    Metric(
        "weir_backend_bytes_in_total",
        COUNTER,
        "Request head bytes received for the backend.",
        lambda b, _: b.counters.bin,
    ),
    Metric(
        "weir_backend_bytes_out_total",
        COUNTER,
        "Response bytes sent to clients from the backend.",
        lambda b, _: b.counters.bout,
    ),
    Metric(
        "weir_backend_connection_errors_total",
        COUNTER,
        "Requests that failed to connect to a server.",
        lambda b, _: b.counters.econ,
    ),
    Metric(
        "weir_backend_response_errors_total",
        COUNTER,
        "Invalid or aborted server responses.",
        lambda b, _: b.counters.eresp,
    ),
    Metric(
        "weir_backend_client_aborts_total",
        COUNTER,
        "Exchanges the client cut.",
        lambda b, _: b.counters.cli_abrt,
    ),
    Metric(
        "weir_backend_server_aborts_total",
        COUNTER,
        "Exchanges the server cut.",
        lambda b, _: b.counters.srv_abrt,
    ),
    Metric(
        "weir_backend_retry_warnings_total",
        COUNTER,
        "Connection retries.",
        lambda b, _: b.counters.wretr,
    ),
    Metric(
        "weir_backend_redispatch_warnings_total",
        COUNTER,
        "Requests redispatched to another server.",
        lambda b, _: b.counters.wredis,
    ),
    Metric(
        "weir_backend_check_up_down_total",
        COUNTER,
        "Times the backend lost its last server.",
        lambda b, _: b.counters.chkdown,
    ),
    Metric(
        "weir_backend_downtime_seconds_total",
        COUNTER,
        "Seconds the backend spent without a server.",
        lambda b, at: b.counters.total_downtime(at.now),
    ),
)

SERVER = (
    Metric(
        "weir_server_up",
        GAUGE,
        "1 if the server is up (UP, going down, DRAIN or unchecked), 0 if DOWN or MAINT.",
        lambda s, _: _server_up(s),
    ),
    Metric(
        "weir_server_current_sessions",
        GAUGE,
        "Requests in progress on the server.",
        lambda s, _: s.cur_conns,
    ),
    Metric(
        "weir_server_max_sessions",
        GAUGE,
        "Most requests in progress at once.",
        lambda s, _: s.counters.smax,
    ),
    Metric(
        "weir_server_limit_sessions",
        GAUGE,
        "The server's effective maxconn (a slow start lowers it); absent if unlimited.",
        lambda s, _: s.maxconn or None,
    ),
    Metric(
        "weir_server_sessions_total",
        COUNTER,
        "Requests sent to the server.",
        lambda s, _: s.counters.stot,
    ),
    Metric(
        "weir_server_current_queue",
        GAUGE,
        "Requests waiting in the backend's queue for this server.",
        lambda s, at: at.queued[s],
    ),
    Metric(
        "weir_server_max_queue",
        GAUGE,
        "Most requests that waited in the queue for this server at once.",
        lambda s, _: s.counters.qmax,
    ),
    Metric(
        "weir_server_weight",
        GAUGE,
        "The server's effective weight (a slow start lowers it).",
        lambda s, _: s.weight,
    ),
    Metric(
        "weir_server_bytes_in_total",
        COUNTER,
        "Request head bytes received for the server.",
        lambda s, _: s.counters.bin,
    ),
    Metric(
        "weir_server_bytes_out_total",
        COUNTER,
        "Response bytes sent to clients from the server.",
        lambda s, _: s.counters.bout,
    ),
    Metric(
        "weir_server_connection_errors_total",
        COUNTER,
        "Requests that failed to connect to the server.",
        lambda s, _: s.counters.econ,
    ),
    Metric(
        "weir_server_response_errors_total",
        COUNTER,
        "Invalid or aborted responses from the server.",
        lambda s, _: s.counters.eresp,
    ),
    Metric(
        "weir_server_client_aborts_total",
        COUNTER,
        "Exchanges the client cut.",
        lambda s, _: s.counters.cli_abrt,
    ),
    Metric(
        "weir_server_server_aborts_total",
        COUNTER,
        "Exchanges the server cut.",
        lambda s, _: s.counters.srv_abrt,
    ),
    Metric(
        "weir_server_retry_warnings_total",
        COUNTER,
        "Connection retries.",
        lambda s, _: s.counters.wretr,
    ),
    Metric(
        "weir_server_redispatch_warnings_total",
        COUNTER,
        "Requests redispatched away from the server.",
        lambda s, _: s.counters.wredis,
    ),
    Metric(
        "weir_server_check_failures_total",
        COUNTER,
        "Failed health checks.",
        lambda s, _: s.counters.chkfail,
    ),
    Metric(
        "weir_server_check_up_down_total",
        COUNTER,
        "Transitions from operational to not.",
        lambda s, _: s.counters.chkdown,
    ),
    Metric(
        "weir_server_check_duration_seconds",
        GAUGE,
        "Duration of the last health check; absent before the first one.",
        lambda s, _: _check_duration(s),
    ),
    Metric(
        "weir_server_downtime_seconds_total",
        COUNTER,
        "Seconds the server spent not operational.",
        lambda s, at: s.counters.total_downtime(at.now),
    ),
)

RESPONSES_HELP = "HTTP responses by status class (other: none or invalid)."


def escape_label(value: str) -> str:
    """A label value as the format wants it between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def labels(**pairs: str) -> str:
    """``{k="v",...}`` with the values escaped, in the order given."""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs.items()) + "}"


def render(proxy: Proxy) -> str:
    """The whole exposition: process, frontends, backends, servers."""
    out: list[str] = []
    queued: Counter[Server] = Counter()
    for backend in proxy.backends.values():
        for cc in backend.queue:
            if cc.queue_target is not None:
                queued[cc.queue_target] += 1
    scrape = Scrape(proxy.loop.time(), queued)
    frontends = [(fe, labels(frontend=fe.name)) for fe in proxy.frontends.values()]
    backends = [(b, labels(backend=b.name)) for b in proxy.backends.values()]
    servers = [
        (s, labels(backend=b.name, server=s.name))
        for b in proxy.backends.values()
        for s in b.servers
    ]
    write_families(out, PROCESS, [(proxy, "")], scrape)
    write_families(out, FRONTEND, frontends, scrape)
    write_responses(out, "weir_frontend_http_responses_total", frontends)
    write_families(out, BACKEND, backends, scrape)
    write_responses(out, "weir_backend_http_responses_total", backends)
    write_families(out, SERVER, servers, scrape)
    write_responses(out, "weir_server_http_responses_total", servers)
    return "".join(out)


def write_families(
    out: list[str], metrics: Iterable[Metric], objects: list[tuple[Any, str]], scrape: Scrape
) -> None:
    """Each metric of ``metrics`` for each ``(object, label text)``."""
    for metric in metrics:
        name, value = metric.name, metric.value
        out.append(f"# HELP {name} {escape_help(metric.help)}\n# TYPE {name} {metric.type}\n")
        for obj, label_text in objects:
            sample = value(obj, scrape)
            if sample is None:
                continue
            if type(sample) is not int:
                sample = repr(float(sample))
            out.append(f"{name}{label_text} {sample}\n")


def write_responses(out: list[str], name: str, objects: list[tuple[Any, str]]) -> None:
    """The responses-by-class counter: one sample per object and ``code``."""
    out.append(f"# HELP {name} {RESPONSES_HELP}\n# TYPE {name} {COUNTER}\n")
    for obj, label_text in objects:
        hrsp = obj.counters.hrsp
        head = f"{name}{label_text[:-1]},code="
        for code, slot in STATUS_CLASSES:
            out.append(f'{head}"{code}"}} {hrsp[slot]}\n')


def _server_up(s: Server) -> int:
    # The HAProxy exporter's reading of ``status``: UP, "UP 1/3", DRAIN and "no check" are up.
    return int(s.state.operational and s.state.admin is not Admin.MAINT)


def _check_duration(s: Server) -> float | None:
    last = s.counters.last_check
    return None if last is None or last.duration is None else last.duration


def _backend_weight(b: Backend) -> int:
    active = [s for s in b.servers if s.available and not s.config.backup]
    backup = [s for s in b.servers if s.available and s.config.backup]
    return sum(s.weight for s in active or backup)
