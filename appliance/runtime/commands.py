"""Runtime API commands: parsing and answers, without I/O (interfaces.md §3).

HAProxy's management guide ("Unix Socket commands") is the model: the same
command words, the same answers where tools read them (``show stat`` CSV with
HAProxy 2.6's columns, ``show info`` key: value lines, ``show servers state``
version 1, ``show table`` dumps), the same error lines for unknown servers and
bad weights. ``parse`` turns a line into a ``Command`` (verb, operands) or raises
``CommandError``; ``RuntimeCommands.answer`` carries it out against the
running proxy and returns the text. A command that fails changes nothing.

The session around it (prompt mode, ``quit``, line limits) is ``session.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import resource
import socket
import time
from typing import TYPE_CHECKING

from appliance import __version__
from appliance.checks.state import Admin, Event, Health
from appliance.proxy.client import CLOSED, CONNECT, DATA, IDLE, QUEUE, REQ_HEAD, TUNNEL, WAIT

if TYPE_CHECKING:
    from appliance.checks.state import CheckResult
    from appliance.persist.table import Entry, StickTable
    from appliance.proxy.backend import Backend
    from appliance.proxy.frontend import Frontend
    from appliance.proxy.proxy import Proxy
    from appliance.proxy.server import Server

MAX_WEIGHT = 256

# HAProxy 2.6's ``show stat`` columns, in order (from its own output).
STAT_FIELDS = (
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
)
_FIELD_POS = {name: pos for pos, name in enumerate(STAT_FIELDS)}
STAT_HEADER = "# " + ",".join(STAT_FIELDS) + ","

# Row types in ``show stat`` (its ``type`` column) and the filter bits of
# ``show stat <proxy> <type> <sid>``.
TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = 0, 1, 2
_TYPE_BIT = {TYPE_FRONTEND: 1, TYPE_BACKEND: 2, TYPE_SERVER: 4}

# HAProxy's short check status codes, from the reason Weir's checks give.
CHECK_CODES = {
    "Layer4 check passed": "L4OK",
    "Layer4 connection problem": "L4CON",
    "Layer4 timeout": "L4TOUT",
    "Layer7 check passed": "L7OK",
    "Layer7 wrong status": "L7STS",
    "Layer7 invalid response": "L7RSP",
    "Layer7 timeout": "L7TOUT",
    "changed from CLI": "",
}
# HAProxy's ``enum healthcheck_status`` values (show servers state's srv_check_status).
_CHECK_STATUS_NUMBER = {
    "": 1,  # INI: no check finished yet
    "L4OK": 6,
    "L4TOUT": 7,
    "L4CON": 8,
    "L7TOUT": 12,
    "L7RSP": 13,
    "L7OK": 14,
    "L7STS": 16,
}
SERVERS_STATE_FIELDS = (
    "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port"
)
# show servers state's numeric states, as HAProxy writes them.
OP_STATES = {0: "STOPPED", 1: "STARTING", 2: "RUNNING", 3: "STOPPING"}
ADMIN_FMAINT, ADMIN_FDRAIN = 0x01, 0x08

_PHASE_NAMES = {
    IDLE: "idle",
    REQ_HEAD: "request",
    QUEUE: "queue",
    CONNECT: "connect",
    WAIT: "waiting",
    DATA: "data",
    TUNNEL: "tunnel",
    CLOSED: "closing",
}

HELP = (
    ("help", "list the commands"),
    ("prompt", "toggle interactive mode with a prompt"),
    ("quit", "disconnect"),
    ("set timeout cli <seconds>", "idle timeout of this connection"),
    ("show info [json]", "report information about the running process"),
    ("show stat [json]", "report counters for each proxy and server (HAProxy's CSV)"),
    ("show servers state [<backend>]", "dump the state of the servers"),
    ("show sess", "summarize the current client connections"),
    ("set server <b>/<s> state ready|drain|maint", "change a server's admin state"),
    ("set server <b>/<s> health up|down", "force a server's health state"),
    ("set server <b>/<s> weight <w>[%]", "change a server's weight"),
    ("set weight <b>/<s> <w>[%]", "change a server's weight (older form)"),
    ("get weight <b>/<s>", "report a server's current and initial weight"),
    ("enable server <b>/<s>", "same as 'set server <b>/<s> state ready'"),
    ("disable server <b>/<s>", "same as 'set server <b>/<s> state maint'"),
    ("show table [<name> [key <k>]]", "list the stick tables, or one table's entries"),
    ("clear table <name> [key <k>]", "drop a table's entries (all, or one key)"),
    ("set table <name> key <k> data.server_id <id>", "store an entry (pushed to the peers)"),
    ("show peers [json]", "stick-table sync: peer sessions, update ids, lag, errors"),
    ("reload", "re-read the configuration file and apply it in place"),
)


class CommandError(Exception):
    """A command that cannot be carried out; the message is the answer's line."""


# A parsed command: (verb, operands). The verb names the ``RuntimeCommands`` method that answers
# it (``show_table``: ``_show_table``). A plain tuple: the runtime socket answers a poller's
# every ask from a cold cache, where building an object costs several microseconds.
Command = tuple[str, tuple[str, ...]]


# What quick_answer takes: the poll with single spaces, its name and key printable ASCII other
# than space and ';' (one regex: cheaper from cold than the checks it replaces).
_POLL = re.compile(rb"show table ([!-:<-~]+) key ([!-:<-~]+)\n")

_ADMIN_WORDS = {"ready": Event.SET_READY, "drain": Event.SET_DRAIN, "maint": Event.SET_MAINT}
_HEALTH_WORDS = {"up": Event.FORCE_UP, "down": Event.FORCE_DOWN}


def parse(line: str) -> Command:
    """One command line -> ``Command``; ``CommandError`` for anything it does not know."""
    words = line.split()
    if not words:
        raise CommandError("Empty command; 'help' lists the commands.")
    n = len(words)
    match words:
        # First: the command a sync-lag poller sends in a tight loop (cases are tried in order).
        case ["show", "table", name, "key", key]:
            return "show_table", (name, key)
        case ["show" | "clear", "table", name] | ["clear", "table", name, "key", _]:
            return words[0] + "_table", (name, *words[4:])
        case ["help", *_]:
            return "help", ()
        case ["show", "info"] | ["show", "info", "json"]:
            return "show_info", tuple(words[2:])
        case ["show", "stat", *rest]:
            return _parse_show_stat(rest)
        case ["show", "servers", "state"] | ["show", "servers", "state", _]:
            return "show_servers_state", tuple(words[3:])
        case ["show", "sess"]:
            return "show_sess", ()
        case ["show", "table"]:
            return "show_table", ()
        case ["show", "peers"] | ["show", "peers", "json"]:
            return "show_peers", tuple(words[2:])
        case ["set", "table", name, "key", key, *data]:
            return "set_table", (name, key, _server_id_data(data))
        case ["set", "table", *_]:
            raise CommandError("Require 'set table <name> key <key> data.server_id <id>'.")
        case ["set", "server", target, "state", word]:
            if word not in _ADMIN_WORDS:
                raise CommandError("'set server <srv> state' expects 'ready', 'drain' and 'maint'.")
            return "set_state", (_server_ref(target), word)
        case ["set", "server", target, "health", word]:
            if word not in _HEALTH_WORDS:
                raise CommandError("'set server <srv> health' expects 'up' or 'down'.")
            return "set_health", (_server_ref(target), word)
        case ["set", "server", target, "weight", weight] | ["set", "weight", target, weight]:
            return "set_weight", (_server_ref(target), _weight_word(weight))
        case ["get", "weight", target]:
            return "get_weight", (_server_ref(target),)
        case ["enable" | "disable", "server", target]:
            word = "ready" if words[0] == "enable" else "maint"
            return "set_state", (_server_ref(target), word)
        case ["reload"]:
            return "reload", ()
        case ["set", "server", *_] | ["enable" | "disable", "server", *_]:
            raise CommandError(f"Malformed command {' '.join(words[:3])!r}; see 'help'.")
    shown = " ".join(words[:4]) + (" ..." if n > 4 else "")
    raise CommandError(f"Unknown command {shown[:80]!r}; 'help' lists the commands.")


def _parse_show_stat(rest: list[str]) -> Command:
    """``show stat [{<iid>|<proxy>} <type> <sid>] [json]`` (the filter hatop may send)."""
    fmt = []
    if rest and rest[-1] in ("json", "typed"):
        fmt = [rest.pop()]
    if rest and len(rest) != 3:
        raise CommandError("'show stat' expects nothing or '<proxy> <type> <sid>', and 'json'.")
    if rest:
        for word in rest[1:]:
            if not word.lstrip("-").isdigit():
                raise CommandError("'show stat': <type> and <sid> must be integers.")
    return "show_stat", (*rest, *fmt)


def _server_id_data(data: list[str]) -> str:
    """The id of ``set table``'s ``data.server_id <id>`` (HAProxy's syntax; the only data type
    Weir's entries hold)."""
    if len(data) != 2 or not data[0].startswith("data."):
        raise CommandError("'set table' expects 'data.server_id <id>' after the key.")
    if data[0] != "data.server_id":
        raise CommandError(f"Data type '{data[0][5:]}' is not stored; Weir stores server_id.")
    if not (data[1].isascii() and data[1].isdigit()):
        raise CommandError("'data.server_id' expects a server's numeric id.")
    return data[1]


def _server_ref(target: str) -> str:
    backend, sep, server = target.partition("/")
    if not sep or not backend or not server:
        raise CommandError("Require 'backend/server'.")
    return target


def _weight_word(word: str) -> str:
    digits = word[:-1] if word.endswith("%") else word
    if not digits.isdigit():
        raise CommandError("Require <weight> or <weight%>.")
    return word


# -- answers -----------------------------------------------------------------------------


class RuntimeCommands:
    """Answers commands about ``proxy`` (its frontends, backends, servers and tables)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        # Proxy ids (``iid``): frontends first, then backends, in config order.
        self.iids: dict[tuple[int, str], int] = {}
        for name in proxy.frontends:
            self.iids[TYPE_FRONTEND, name] = len(self.iids) + 1
        for name in proxy.backends:
            self.iids[TYPE_BACKEND, name] = len(self.iids) + 1

    def answer(self, line: str) -> str:
        """The answer to one command line (each line ending in a newline; may be empty)."""
        try:
            verb, args = parse(line)
            return getattr(self, "_" + verb)(*args)
        except CommandError as exc:
            return f"{exc}\n"
        except Exception as exc:  # a bug in one command must not take the proxy down
            self.proxy.event(f"Runtime API: internal error on {line[:80]!r}: {exc!r}")
            return f"Internal error: {type(exc).__name__}; nothing was changed.\n"

    def quick_answer(self, data: bytes) -> str | None:
        """The answer to ``data`` if it is exactly ``show table NAME key K`` and a newline, for a
        string table, as ``answer`` would give it; None for anything else.

        A poller (a sync-lag probe, a script checking stickiness) asks this again and again of
        a process that sleeps between asks, and on waking each Python instruction costs many
        times what it costs in a loop: through ``parse`` and the session's line handling, the
        ask cost the peer 67 us of CPU in the sync benchmark, against HAProxy's 33. Anything
        unusual (other spacing, tabs, control or non-ASCII bytes, ``;``, an unknown table,
        another key type) is left to the general path, which says what is wrong.
        """
        poll = _POLL.fullmatch(data)
        if poll is None:
            return None
        name, key = poll.groups()
        backend = self.proxy.backends.get(name.decode())
        if backend is None or backend.persistence is None:
            return None
        table = backend.persistence.table
        if table is None or table.key_type != "string" or len(key) > table.key_len:
            return None
        # The general path's header and entry line (_table_header, _entry_line), written out:
        # each function called costs microseconds here (tests/unit/test_runtime_quick.py
        # holds the two paths to the same bytes).
        found = table.find(key)
        header = f"# table: {table.name}, type: string, size:{table.size}, used:{len(table)}\n"
        if found is None:
            return header
        server_id, expires_in = found
        return (
            f"{header}0x000000000001: key={key.decode()} use=0 exp={int(expires_in * 1000)}"
            f" server_id={server_id}\n"
        )

    # -- lookups --

    def _server(self, target: str) -> Server:
        backend_name, _, server_name = target.partition("/")
        backend = self.proxy.backends.get(backend_name)
        if backend is None:
            raise CommandError("No such backend.")
        for server in backend.servers:
            if server.name == server_name:
                return server
        raise CommandError("No such server.")

    def _table_of(self, name: str) -> Backend:
        backend = self.proxy.backends.get(name)
        if backend is None or backend.persistence is None or backend.persistence.table is None:
            raise CommandError("No such table.")
        return backend

    # -- commands --

    def _help(self) -> str:
        width = max(len(usage) for usage, _ in HELP)
        return "".join(f"  {usage:<{width}} : {what}\n" for usage, what in HELP)

    def _reload(self) -> str:
        ok, lines = self.proxy.reload()
        if not ok:
            return "Reload failed, nothing changed:\n" + "".join(f"  {ln}\n" for ln in lines)
        if not lines:
            return "Reloaded: no change.\n"
        return "Reloaded:\n" + "".join(f"  {ln}\n" for ln in lines)

    def _show_info(self, *fmt: str) -> str:
        fields = self.info()
        if fmt:
            return json.dumps(info_json(fields)) + "\n"
        return "".join(f"{name}: {value}\n" for name, value in fields)

    def _show_stat(self, *args: str) -> str:
        as_json = bool(args) and args[-1] in ("json", "typed")
        if as_json:
            args = args[:-1]
        rows = self.stat_rows()
        if args:
            rows = self._filter_rows(rows, *args)
        if as_json:
            return json.dumps(stat_json(rows)) + "\n"
        return stat_csv(rows)

    def _filter_rows(self, rows: list[list[str]], proxy: str, kind: str, sid: str) -> list[list]:
        iid_pos, type_pos, sid_pos = _FIELD_POS["iid"], _FIELD_POS["type"], _FIELD_POS["sid"]
        mask, want_sid = int(kind), int(sid)
        kept = []
        for row in rows:
            if proxy not in ("-1", row[iid_pos], row[0]):
                continue
            if mask != -1 and not mask & _TYPE_BIT[int(row[type_pos])]:
                continue
            if want_sid != -1 and int(row[sid_pos]) != want_sid:
                continue
            kept.append(row)
        return kept

    def _show_servers_state(self, *backend: str) -> str:
        backends = list(self.proxy.backends.values())
        if backend:
            if backend[0] not in self.proxy.backends:
                raise CommandError(f"Can't find backend '{backend[0]}'.")
            backends = [self.proxy.backends[backend[0]]]
        now = self.proxy.loop.time()
        lines = ["1\n", f"# {SERVERS_STATE_FIELDS}\n"]
        for b in backends:
            iid = self.iids[TYPE_BACKEND, b.name]
            for s in b.servers:
                lines.append(" ".join(str(v) for v in self._server_state(iid, s, now)) + "\n")
        return "".join(lines)

    def _server_state(self, iid: int, s: Server, now: float) -> tuple:
        state = s.state
        if not state.operational:
            op = 0
        elif s.warmup is not None:
            op = 1
        else:
            op = 2
        admin = {Admin.READY: 0, Admin.DRAIN: ADMIN_FDRAIN, Admin.MAINT: ADMIN_FMAINT}[state.admin]
        checked = _checked(s)
        last = s.counters.last_check
        code = _check_code(last) if checked else ""
        result = 0 if last is None or not checked else (3 if last.ok else 2)
        if state.health in (Health.UP, Health.GOING_DOWN):
            health = state.rise + state.fall - 1 - state.failures
        else:
            health = state.successes
        return (
            iid,
            s.backend.name,
            s.id,
            s.name,
            s.address[0],
            op,
            admin,
            s.user_weight,
            s.config.weight,
            int(now - s.counters.last_change),
            _CHECK_STATUS_NUMBER.get(code, 0) if checked else 1,
            result,
            health if checked else 0,
            6 if checked else 0,  # CHK_ST_CONFIGURED | CHK_ST_ENABLED
            0,
            0,
            0,
            "-",
            s.address[1],
            "-",
            0,
            0,
            "-",
            "-",
            s.config.agent_port,
        )

    def _show_sess(self) -> str:
        lines = ["# frontend phase connections\n"]
        total = 0
        for fe in self.proxy.frontends.values():
            counts: dict[str, int] = {}
            for conn in fe.connections:
                name = _PHASE_NAMES.get(conn.phase, "connect")
                counts[name] = counts.get(name, 0) + 1
            for name in _PHASE_NAMES.values():
                if counts.get(name):
                    lines.append(f"{fe.name} {name} {counts[name]}\n")
            total += len(fe.connections)
        lines.append(f"total: {total} client connections\n")
        return "".join(lines)

    def _show_table(self, *args: str) -> str:
        if not args:
            return "".join(
                _table_header(b.persistence.table)
                for b in self.proxy.backends.values()
                if b.persistence is not None and b.persistence.table is not None
            )
        table = self._table_of(args[0]).persistence.table
        header = _table_header(table)
        if len(args) > 1:  # what a poller waiting for a key asks again and again
            entry = table.entry(_table_key(table, args[1]))
            return header if entry is None else header + _entry_line(1, entry)
        return header + "".join(_entry_line(index, entry) for index, entry in enumerate(table, 1))

    def _show_peers(self, *fmt: str) -> str:
        sync = self.proxy.sync
        if sync is None:
            if fmt:
                return "null\n"
            return "No stick-table sync configured (no [ha.sync] section).\n"
        return sync.show_peers(as_json=bool(fmt))

    def _set_table(self, name: str, key: str, server_id: str) -> str:
        """Store ``key`` -> server as if the server had just been learned for it: a local change,
        pushed to the peers (HAProxy's ``set table`` touches the entry locally too)."""
        backend = self._table_of(name)
        table = backend.persistence.table
        if int(server_id) not in {s.id for s in backend.servers}:
            raise CommandError(f"No server with id {server_id} in backend '{name}'.")
        table.learn(_table_key(table, key), int(server_id))
        return ""

    def _clear_table(self, *args: str) -> str:
        backend = self._table_of(args[0])
        table = backend.persistence.table
        if len(args) > 1:
            table.remove(_table_key(table, args[1]))
            what = f"entry {args[1]!r}"
        else:
            table.clear()
            what = "all entries"
        self.proxy.event(f"Stick table {table.name}: {what} cleared from the CLI.")
        return ""

    def _set_state(self, target: str, word: str) -> str:
        server = self._server(target)
        self.proxy.server_event(server, _ADMIN_WORDS[word])
        return ""

    def _set_health(self, target: str, word: str) -> str:
        server = self._server(target)
        self.proxy.server_event(server, _HEALTH_WORDS[word])
        return ""

    def _set_weight(self, target: str, word: str) -> str:
        server = self._server(target)
        percent = word.endswith("%")
        weight = server.config.weight * int(word[:-1]) // 100 if percent else int(word)
        if not 0 <= weight <= MAX_WEIGHT:
            raise CommandError(f"Absolute weight can only be between 0 and {MAX_WEIGHT} inclusive.")
        old = server.user_weight
        self.proxy.set_weight(server, weight)
        if weight != old:
            self.proxy.event(
                f"Server {server.backend.name}/{server.name} weight changed "
                f"from {old} to {weight} (CLI)."
            )
        return ""

    def _get_weight(self, target: str) -> str:
        server = self._server(target)
        return f"{server.weight} (initial {server.config.weight})\n"

    # -- show info / show stat data --

    def info(self) -> list[tuple[str, object]]:
        """``show info``'s fields, in HAProxy's order (those hatop needs included)."""
        proxy = self.proxy
        uptime = int(time.time() - proxy.started)
        days, rest = divmod(uptime, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        frontends = proxy.frontends.values()
        conn_rate = sum(fe.counters.conn_rate for fe in frontends)
        conn_rate_max = sum(fe.counters.conn_rate_max for fe in frontends)
        listeners = sum(len(fe.config.bind) for fe in frontends)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return [
            ("Name", "Weir"),
            ("Version", __version__),
            ("Release_date", "-"),
            ("Nbthread", 1),
            ("Nbproc", 1),
            ("Process_num", 1),
            ("Pid", os.getpid()),
            ("Uptime", f"{days}d {hours}h{minutes:02d}m{seconds:02d}s"),
            ("Uptime_sec", uptime),
            ("Memmax_MB", 0),
            ("Ulimit-n", nofile),
            ("Maxsock", nofile),
            ("Maxconn", proxy.maxconn),
            ("Hard_maxconn", proxy.maxconn),
            ("CurrConns", proxy.cur_conns),
            ("CumConns", sum(fe.total_conns for fe in frontends)),
            ("CumReq", proxy.total_requests),
            ("Maxpipes", 0),
            ("PipesUsed", 0),
            ("PipesFree", 0),
            ("ConnRate", conn_rate),
            ("ConnRateLimit", 0),
            ("MaxConnRate", conn_rate_max),
            ("SessRate", conn_rate),
            ("SessRateLimit", 0),
            ("MaxSessRate", conn_rate_max),
            ("Tasks", len(asyncio.all_tasks(proxy.loop))),
            ("Run_queue", 0),
            ("node", socket.gethostname().split(".")[0]),
            ("Stopping", int(proxy.stopping)),
            ("Jobs", proxy.cur_conns + listeners),
            ("Listeners", listeners),
            ("TotalBytesOut", sum(fe.counters.bout for fe in frontends)),
            ("Start_time_sec", int(proxy.started)),
        ]

    def stat_rows(self) -> list[list[str]]:
        """``show stat``'s rows: per frontend, then per backend its servers and BACKEND."""
        proxy = self.proxy
        now = proxy.loop.time()
        rows = []
        for fe in proxy.frontends.values():
            rows.append(self._frontend_row(fe))
        for backend in proxy.backends.values():
            iid = self.iids[TYPE_BACKEND, backend.name]
            for server in backend.servers:
                rows.append(_server_row(iid, server, now))
            rows.append(_backend_row(iid, backend, now))
        return rows

    def _frontend_row(self, fe: Frontend) -> list[str]:
        c = fe.counters
        row = _row(fe.name, "FRONTEND")
        _fill(
            row,
            scur=fe.cur_conns,
            smax=c.smax,
            slim=self.proxy.maxconn,
            stot=c.stot,
            bin=c.bin,
            bout=c.bout,
            dreq=0,
            dresp=0,
            ereq=c.ereq,
            status="STOP" if self.proxy.stopping else "OPEN",
            pid=os.getpid(),
            iid=self.iids[TYPE_FRONTEND, fe.name],
            sid=0,
            type=TYPE_FRONTEND,
            rate=c.conn_rate,
            rate_lim=0,
            rate_max=c.conn_rate_max,
            req_rate=c.req_rate,
            req_rate_max=c.req_rate_max,
            req_tot=c.req_tot,
            mode="http",
            conn_rate=c.conn_rate,
            conn_rate_max=c.conn_rate_max,
            conn_tot=fe.total_conns,
        )
        _fill_hrsp(row, c.hrsp)
        return row


def _row(pxname: str, svname: str) -> list[str]:
    row = [""] * len(STAT_FIELDS)
    row[0] = pxname
    row[1] = svname
    return row


def _fill(row: list[str], **values: object) -> None:
    for name, value in values.items():
        row[_FIELD_POS[name]] = str(value)


def _fill_hrsp(row: list[str], hrsp: list[int]) -> None:
    _fill(
        row,
        hrsp_1xx=hrsp[1],
        hrsp_2xx=hrsp[2],
        hrsp_3xx=hrsp[3],
        hrsp_4xx=hrsp[4],
        hrsp_5xx=hrsp[5],
        hrsp_other=hrsp[0],
    )


def _checked(server: Server) -> bool:
    return server.backend.config.check is not None and server.config.check


def _check_code(result: CheckResult | None) -> str:
    if result is None:
        return ""
    return CHECK_CODES.get(result.reason, "")


def server_status(server: Server) -> str:
    """``show stat``'s status: UP, DOWN, "UP 1/3", DRAIN, MAINT, or "no check"."""
    status = server.state.status
    if not _checked(server) and status in ("UP", "DOWN"):
        return "no check" if status == "UP" else "DOWN"
    return status


def _server_row(iid: int, s: Server, now: float) -> list[str]:
    c = s.counters
    state = s.state
    checked = _checked(s)
    row = _row(s.backend.name, s.name)
    queued = s.backend.queued_for(s)
    _fill(
        row,
        qcur=queued,
        qmax=c.qmax,
        scur=s.cur_conns,
        smax=c.smax,
        slim=s.maxconn or "",
        stot=c.stot,
        bin=c.bin,
        bout=c.bout,
        dresp=0,
        econ=c.econ,
        eresp=c.eresp,
        wretr=c.wretr,
        wredis=c.wredis,
        status=server_status(s),
        weight=s.weight,
        act=int(not s.config.backup),
        bck=int(s.config.backup),
        lastchg=int(now - c.last_change),
        qlimit=s.config.maxqueue or "",
        pid=os.getpid(),
        iid=iid,
        sid=s.id,
        throttle="" if s.warmup is None else _throttle(s),
        lbtot=c.stot,
        type=TYPE_SERVER,
        rate=c.rate,
        rate_max=c.rate_max,
        cli_abrt=c.cli_abrt,
        srv_abrt=c.srv_abrt,
        lastsess=int(now - c.last_sess) if c.last_sess >= 0 else -1,
        addr=f"{s.address[0]}:{s.address[1]}",
        cookie=s.config.cookie if s.backend.config.cookie is not None else "",
        mode="http",
        uweight=s.user_weight,
        idle_conn_cur=len(s.idle),
    )
    if checked:
        check = s.backend.config.check
        last = c.last_check
        _fill(
            row,
            chkfail=c.chkfail,
            chkdown=c.chkdown,
            downtime=int(c.total_downtime(now)),
            check_rise=check.rise,
            check_fall=check.fall,
            check_health=state.successes
            if state.health in (Health.DOWN, Health.GOING_UP)
            else state.rise + state.fall - 1 - state.failures,
        )
        if last is not None:
            _fill(
                row,
                check_status=_check_code(last),
                check_desc=last.reason,
                last_chk=last.info,
            )
            if last.code is not None:
                _fill(row, check_code=last.code)
            if last.duration is not None:
                _fill(row, check_duration=int(last.duration * 1000))
    _fill_hrsp(row, c.hrsp)
    return row


def _throttle(s: Server) -> int:
    return 100 * s.weight // s.user_weight if s.user_weight else 100


def _backend_row(iid: int, b: Backend, now: float) -> list[str]:
    c = b.counters
    active = [s for s in b.servers if s.available and not s.config.backup]
    backup = [s for s in b.servers if s.available and s.config.backup]
    row = _row(b.name, "BACKEND")
    _fill(
        row,
        qcur=len(b.queue),
        qmax=c.qmax,
        scur=b.cur_conns,
        smax=c.smax,
        slim="",
        stot=c.stot,
        bin=c.bin,
        bout=c.bout,
        dreq=0,
        dresp=0,
        econ=c.econ,
        eresp=c.eresp,
        wretr=c.wretr,
        wredis=c.wredis,
        status="UP" if b.has_available() else "DOWN",
        weight=sum(s.weight for s in active or backup),
        act=len(active),
        bck=len(backup),
        chkdown=c.chkdown,
        lastchg=int(now - c.last_change),
        downtime=int(c.total_downtime(now)),
        pid=os.getpid(),
        iid=iid,
        sid=0,
        lbtot=c.stot,
        type=TYPE_BACKEND,
        rate=c.rate,
        rate_max=c.rate_max,
        req_tot=c.req_tot,
        cli_abrt=c.cli_abrt,
        srv_abrt=c.srv_abrt,
        lastsess=int(now - c.last_sess) if c.last_sess >= 0 else -1,
        mode="http",
        algo=b.config.balance,
    )
    _fill_hrsp(row, c.hrsp)
    return row


def stat_csv(rows: list[list[str]]) -> str:
    """HAProxy's CSV: the header, one line per row, each with a trailing comma."""
    return STAT_HEADER + "\n" + "".join(",".join(row) + ",\n" for row in rows)


def _typed(value: str | int) -> dict[str, object]:
    if isinstance(value, int):
        return {"type": "u64", "value": value}
    if value.lstrip("-").isdigit():
        number = int(value)
        return {"type": "s64" if number < 0 else "u64", "value": number}
    return {"type": "str", "value": value}


def stat_json(rows: list[list[str]]) -> list[list[dict[str, object]]]:
    """HAProxy's ``show stat json`` layout: per row, the non-empty fields, typed."""
    kinds = {"0": "Frontend", "1": "Backend", "2": "Server"}
    type_pos, iid_pos, sid_pos = _FIELD_POS["type"], _FIELD_POS["iid"], _FIELD_POS["sid"]
    out = []
    for row in rows:
        obj_type = kinds[row[type_pos]]
        out.append(
            [
                {
                    "objType": obj_type,
                    "proxyId": int(row[iid_pos]),
                    "id": int(row[sid_pos]),
                    "field": {"pos": pos, "name": STAT_FIELDS[pos]},
                    "processNum": 1,
                    "value": _typed(value),
                }
                for pos, value in enumerate(row)
                if value != ""
            ]
        )
    return out


def info_json(fields: list[tuple[str, object]]) -> list[dict[str, object]]:
    """HAProxy's ``show info json`` layout."""
    return [
        {
            "field": {"pos": pos, "name": name},
            "processNum": 1,
            "value": _typed(value if isinstance(value, int) else str(value)),
        }
        for pos, (name, value) in enumerate(fields)
    ]


# -- stick tables --

_TABLE_TYPES = {"ipv4": "ip", "ipv6": "ipv6", "string": "string", "integer": "integer"}


def _table_header(table: StickTable) -> str:
    kind = _TABLE_TYPES.get(table.key_type, table.key_type)
    return f"# table: {table.name}, type: {kind}, size:{table.size}, used:{len(table)}\n"


def _table_key(table: StickTable, text: str) -> object:
    """A key as typed on the command line, as the table's entries hold it."""
    try:
        if table.key_type in ("ipv4", "ipv6"):
            address = ipaddress.ip_address(text)
            if table.key_type == "ipv6" and address.version == 4:
                return ipaddress.IPv6Address(f"::ffff:{address}")
            if table.key_type == "ipv4" and address.version == 6:
                if address.ipv4_mapped is None:
                    raise ValueError(text)
                return address.ipv4_mapped
            return address
        if table.key_type == "integer":
            return int(text)
    except ValueError:
        raise CommandError(f"Invalid key {text!r} for a table of type {table.key_type}.") from None
    return text.encode()


def _entry_line(index: int, entry: Entry) -> str:
    return (
        f"0x{index:012x}: key={_show_key(entry.key)} use=0 exp={int(entry.expires_in * 1000)}"
        f" server_id={entry.server_id}\n"
    )


def _show_key(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("latin-1")
    if isinstance(key, ipaddress.IPv6Address) and key.ipv4_mapped is not None:
        return f"::ffff:{key.ipv4_mapped}"
    return str(key)
