"""Runtime API commands and the CLI session dialect, without sockets."""

from __future__ import annotations

import asyncio
import csv
import json

import pytest

from appliance.checks.state import Admin, CheckResult
from appliance.config import load_text
from appliance.proxy.proxy import Proxy
from appliance.runtime.commands import (
    STAT_FIELDS,
    STAT_HEADER,
    CommandError,
    RuntimeCommands,
    parse,
)
from appliance.runtime.session import MAX_LINE, PROMPT, CliSession

pytestmark = pytest.mark.unit

CONFIG = """
[global]
log = "none"
runtime_socket = "{tmp}/weir.sock"
[frontends.www]
bind = ["127.0.0.1:1"]
default_backend = "app"
[backends.app]
[backends.app.stick]
on = "src"
[backends.app.check]
type = "tcp"
[[backends.app.servers]]
name = "web1"
address = "127.0.0.1:9001"
[[backends.app.servers]]
name = "web2"
address = "127.0.0.1:9002"
weight = 3
[backends.plain]
[[backends.plain.servers]]
name = "s1"
address = "127.0.0.1:9003"
"""


@pytest.fixture
def proxy(tmp_path):
    loop = asyncio.new_event_loop()
    p = Proxy(load_text(CONFIG.replace("{tmp}", str(tmp_path)), for_run=True), loop)
    yield p
    p.log.close()
    loop.close()


@pytest.fixture
def cmds(proxy):
    return RuntimeCommands(proxy)


def server(proxy, backend, name):
    return next(s for s in proxy.backends[backend].servers if s.name == name)


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("help", ("help", ())),
        ("show info", ("show_info", ())),
        ("show info json", ("show_info", ("json",))),
        ("show stat", ("show_stat", ())),
        ("show stat json", ("show_stat", ("json",))),
        ("show stat -1 4 -1", ("show_stat", ("-1", "4", "-1"))),
        ("show servers state", ("show_servers_state", ())),
        ("show servers state app", ("show_servers_state", ("app",))),
        ("show sess", ("show_sess", ())),
        ("show table", ("show_table", ())),
        ("show table app", ("show_table", ("app",))),
        ("show table app key 1.2.3.4", ("show_table", ("app", "1.2.3.4"))),
        ("clear table app", ("clear_table", ("app",))),
        ("clear table app key k", ("clear_table", ("app", "k"))),
        ("set server app/web1 state drain", ("set_state", ("app/web1", "drain"))),
        ("set server app/web1 health down", ("set_health", ("app/web1", "down"))),
        ("set server app/web1 weight 7", ("set_weight", ("app/web1", "7"))),
        ("set weight app/web1 50%", ("set_weight", ("app/web1", "50%"))),
        ("get weight app/web1", ("get_weight", ("app/web1",))),
        ("enable server app/web1", ("set_state", ("app/web1", "ready"))),
        ("disable server app/web1", ("set_state", ("app/web1", "maint"))),
        ("  reload  ", ("reload", ())),
    ],
)
def test_parse(line, command):
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "Empty command"),
        ("bogus", "Unknown command 'bogus'"),
        ("show", "Unknown command"),
        ("show info xml", "Unknown command"),
        ("set server app/web1 state sleepy", "expects 'ready', 'drain' and 'maint'"),
        ("set server app/web1 health maybe", "expects 'up' or 'down'"),
        ("set server web1 state drain", "Require 'backend/server'"),
        ("set server app/ state drain", "Require 'backend/server'"),
        ("set server app/web1 weight heavy", "Require <weight>"),
        ("set server app/web1", "Malformed command"),
        ("show stat 1 2", "'show stat' expects"),
        ("show stat app x -1", "must be integers"),
    ],
)
def test_parse_errors(line, message):
    with pytest.raises(CommandError, match=message):
        parse(line)


# -- answers -----------------------------------------------------------------------------


def test_show_stat_is_haproxy_csv(cmds):
    text = cmds.answer("show stat")
    lines = text.splitlines()
    assert lines[0] == STAT_HEADER
    assert lines[0].startswith("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,")
    rows = list(csv.reader(lines[1:]))
    assert all(len(row) == len(STAT_FIELDS) + 1 for row in rows)  # trailing comma
    names = [(r[0], r[1]) for r in rows]
    assert names == [
        ("www", "FRONTEND"),
        ("app", "web1"),
        ("app", "web2"),
        ("app", "BACKEND"),
        ("plain", "s1"),
        ("plain", "BACKEND"),
    ]
    by = {(r[0], r[1]): dict(zip(STAT_FIELDS, r, strict=False)) for r in rows}
    assert by["www", "FRONTEND"]["status"] == "OPEN"
    assert by["app", "web1"]["status"] == "UP"
    assert by["app", "web2"]["weight"] == "3"
    assert by["plain", "s1"]["status"] == "no check"
    assert by["app", "BACKEND"]["weight"] == "4"
    assert by["app", "BACKEND"]["algo"] == "roundrobin"
    assert [by[k]["type"] for k in (("www", "FRONTEND"), ("app", "web1"), ("app", "BACKEND"))] == [
        "0",
        "2",
        "1",
    ]


def test_show_stat_filter_and_json(cmds):
    servers_only = cmds.answer("show stat -1 4 -1").splitlines()[1:]
    assert [line.split(",")[1] for line in servers_only] == ["web1", "web2", "s1"]
    one_proxy = cmds.answer("show stat app -1 -1").splitlines()[1:]
    assert {line.split(",")[0] for line in one_proxy} == {"app"}
    rows = json.loads(cmds.answer("show stat json"))
    first = {f["field"]["name"]: f["value"]["value"] for f in rows[0]}
    assert first["pxname"] == "www" and first["svname"] == "FRONTEND"
    assert rows[1][0]["objType"] == "Server"


def test_counters_follow_traffic_and_checks(proxy, cmds):
    web1 = server(proxy, "app", "web1")
    web1.counters.stot = 5
    web1.counters.hrsp[2] = 4
    web1.counters.hrsp[5] = 1
    proxy.check_done(web1, CheckResult(False, "Layer4 connection problem", info="refused"))
    row = next(r for r in csv.reader(cmds.answer("show stat").splitlines()[1:]) if r[1] == "web1")
    fields = dict(zip(STAT_FIELDS, row, strict=False))
    assert fields["stot"] == "5"
    assert fields["hrsp_2xx"] == "4" and fields["hrsp_5xx"] == "1"
    assert fields["chkfail"] == "1"
    assert fields["check_status"] == "L4CON"
    assert fields["status"] == "UP 2/3"


def test_show_info(cmds):
    info = dict(line.split(": ", 1) for line in cmds.answer("show info").splitlines())
    for key in ("Name", "Version", "Release_date", "Pid", "Uptime", "Uptime_sec", "Maxconn"):
        assert key in info
    assert info["Name"] == "Weir"
    assert info["CurrConns"] == "0"
    fields = json.loads(cmds.answer("show info json"))
    assert fields[0] == {
        "field": {"pos": 0, "name": "Name"},
        "processNum": 1,
        "value": {"type": "str", "value": "Weir"},
    }


def test_admin_state_commands(proxy, cmds):
    web1 = server(proxy, "app", "web1")
    assert cmds.answer("set server app/web1 state drain") == ""
    assert web1.state.admin is Admin.DRAIN
    assert cmds.answer("disable server app/web1") == ""
    assert web1.state.admin is Admin.MAINT and not web1.available
    assert "MAINT" in cmds.answer("show stat")
    assert cmds.answer("enable server app/web1") == ""
    assert web1.state.admin is Admin.READY and web1.available
    assert cmds.answer("set server app/web1 health down") == ""
    assert not web1.state.operational
    assert cmds.answer("set server app/web1 health up") == ""
    assert web1.state.operational


def test_servers_state(proxy, cmds):
    cmds.answer("set server app/web2 state drain")
    lines = cmds.answer("show servers state app").splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("# be_id be_name srv_id srv_name srv_addr srv_op_state")
    web2 = lines[3].split()
    assert web2[1:5] == ["app", "2", "web2", "127.0.0.1"]
    assert web2[5:9] == ["2", "8", "3", "3"]  # running, forced drain, weights
    assert len(cmds.answer("show servers state").splitlines()) == 5
    assert cmds.answer("show servers state nope") == "Can't find backend 'nope'.\n"


def test_weights(proxy, cmds):
    web1 = server(proxy, "app", "web1")
    assert cmds.answer("set server app/web1 weight 10") == ""
    assert web1.weight == 10
    assert cmds.answer("get weight app/web1") == "10 (initial 1)\n"
    assert cmds.answer("set weight app/web2 200%") == ""
    assert server(proxy, "app", "web2").weight == 6
    assert cmds.answer("set weight app/web1 257") == (
        "Absolute weight can only be between 0 and 256 inclusive.\n"
    )
    assert web1.weight == 10


def test_errors_change_nothing(proxy, cmds):
    before = cmds.answer("show servers state")
    assert cmds.answer("set server app/nope state maint") == "No such server.\n"
    assert cmds.answer("set server nope/web1 state maint") == "No such backend.\n"
    assert cmds.answer("set server app/web1 state sleepy").startswith("'set server")
    assert cmds.answer("frobnicate everything").startswith("Unknown command")
    assert cmds.answer("show servers state") == before


def test_tables(proxy, cmds):
    table = proxy.backends["app"].persistence.table
    table.learn("192.0.2.1", 1)
    table.learn("192.0.2.2", 2)
    assert cmds.answer("show table") == "# table: app, type: ipv6, size:1000000, used:2\n"
    lines = cmds.answer("show table app").splitlines()
    assert lines[0] == "# table: app, type: ipv6, size:1000000, used:2"
    assert lines[1].startswith("0x") and "key=::ffff:192.0.2.1 use=0 exp=" in lines[1]
    assert lines[1].endswith(" server_id=1")
    assert len(cmds.answer("show table app key 192.0.2.2").splitlines()) == 2
    assert cmds.answer("clear table app key 192.0.2.2") == ""
    assert len(table) == 1
    assert cmds.answer("clear table app") == ""
    assert len(table) == 0
    assert cmds.answer("show table plain") == "No such table.\n"
    assert cmds.answer("clear table app key not-an-ip").startswith("Invalid key")


def test_show_sess_and_reload(cmds):
    assert cmds.answer("show sess") == "# frontend phase connections\ntotal: 0 client connections\n"
    # This proxy was built from a string: there is no file to re-read, so nothing changes.
    assert cmds.answer("reload").startswith("Reload failed, nothing changed:\n")
    assert "set server <b>/<s> state ready|drain|maint" in cmds.answer("help")


# -- the session dialect -----------------------------------------------------------------


def echo(line: str) -> str:
    return f"answer to {line}\n" if line else ""


def test_one_shot():
    s = CliSession(echo)
    data, close = s.feed(b"show info\n")
    assert data == b"answer to show info\n\n"
    assert close


def test_one_shot_without_newline_answers_at_eof():
    s = CliSession(echo)
    assert s.feed(b"show in")[0] == b""
    data, close = s.eof()
    assert data == b"answer to show in\n\n" and close


def test_prompt_mode():
    s = CliSession(echo)
    data, close = s.feed(b"prompt\n")
    assert data == b"\n" + PROMPT and not close
    data, close = s.feed(b"show info\nhelp\n")
    assert data == b"answer to show info\n\n> answer to help\n\n> "
    assert s.feed(b"set timeout cli 60\n")[0] == b"\n> "
    assert s.timeout == 60
    assert s.feed(b"quit\n")[1]


def test_semicolons():
    s = CliSession(echo)
    assert s.feed(b"a; b\n")[0] == b"answer to a\n\nanswer to b\n\n"


def test_long_line_and_binary_close():
    s = CliSession(echo)
    data, close = s.feed(b"x" * (MAX_LINE + 1))
    assert close and b"too long" in data
    s = CliSession(echo)
    data, close = s.feed(b"\x00\xff\x16\x03\x01garbage\n")
    assert close and b"Binary data" in data
    s = CliSession(echo)
    data, close = s.feed(b"show \x1b[A\n")
    assert close and b"Binary data" in data


def test_text_check_looks_at_control_bytes_only():
    s = CliSession(echo)
    s.feed(b"prompt\n")
    # Tab, CR and non-ASCII text are fine: only control characters (and DEL) are binary.
    data, close = s.feed("show\ttable caf\u00e9\r\n".encode())
    assert not close and data == "answer to show\ttable caf\u00e9\n\n> ".encode()
    assert s.feed(b"show \x7f\n")[1]
    s = CliSession(echo)
    assert s.feed(b"show \xc3\n")[1]  # a cut UTF-8 sequence


def test_pipelined_lines_and_a_partial_one():
    s = CliSession(echo)
    s.feed(b"prompt\n")
    data, close = s.feed(b"".join(b"c%d\n" % i for i in range(1000)) + b"par")
    assert data == b"".join(b"answer to c%d\n\n> " % i for i in range(1000))
    assert s.feed(b"tial\n")[0] == b"answer to partial\n\n> "
    data, close = s.feed(b"a\nquit\nnever answered\n")
    assert data == b"answer to a\n\n> " and close


def test_long_line_after_complete_ones_answers_them_first():
    s = CliSession(echo)
    s.feed(b"prompt\n")
    data, close = s.feed(b"a\n" + b"x" * (MAX_LINE + 1))
    assert close
    assert data.startswith(b"answer to a\n\n> ") and b"too long" in data


def test_show_table_key_absent_and_present(proxy):
    cmds = RuntimeCommands(proxy)
    header = cmds.answer("show table app")
    assert cmds.answer("show table app key 192.0.2.9") == header
    assert cmds.answer("set table app key 192.0.2.9 data.server_id 1") == ""
    shown = cmds.answer("show table app key 192.0.2.9")
    assert shown.startswith("# table: app,") and "key=::ffff:192.0.2.9 use=0 " in shown
    assert "server_id=1\n" in shown


def test_a_bug_in_a_command_is_an_answer_and_an_event(proxy, monkeypatch):
    cmds = RuntimeCommands(proxy)
    events = []
    monkeypatch.setattr(proxy, "event", events.append)
    monkeypatch.setattr(cmds, "_show_sess", lambda: 1 / 0)
    assert cmds.answer("show sess") == "Internal error: ZeroDivisionError; nothing was changed.\n"
    assert events == [
        "Runtime API: internal error on 'show sess': ZeroDivisionError('division by zero')"
    ]
    assert cmds.answer("show table").startswith("# table: app,")  # the next command is answered
