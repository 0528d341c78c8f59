"""``set table NAME key K data.server_id N`` (HAProxy's command) and ``show table NAME key K``."""

from __future__ import annotations

import pytest

from appliance.runtime.commands import CommandError, RuntimeCommands, parse
from tests.unit.test_runtime_commands import proxy  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit


@pytest.fixture
def cmds(proxy):  # noqa: F811
    return RuntimeCommands(proxy)


def test_set_table_parses_haproxys_syntax():
    assert parse("set table app key 192.0.2.7 data.server_id 2") == (
        "set_table",
        ("app", "192.0.2.7", "2"),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("set table app key k", "expects 'data.server_id <id>'"),
        ("set table app key k server_id 1", "expects 'data.server_id <id>'"),
        ("set table app key k data.server_id 1 data.gpc0 2", "expects 'data.server_id <id>'"),
        ("set table app key k data.gpc0 1", "Data type 'gpc0' is not stored"),
        ("set table app key k data.server_id web1", "numeric id"),
        ("set table app key k data.server_id -1", "numeric id"),
        ("set table app key k data.server_id ²", "numeric id"),
        ("set table app", "Require 'set table <name> key <key> data.server_id <id>'"),
    ],
)
def test_set_table_refuses_what_it_cannot_store(line, message):
    with pytest.raises(CommandError, match=message):
        parse(line)


def test_set_table_stores_a_local_change_that_is_pushed(proxy, cmds):  # noqa: F811
    table = proxy.backends["app"].persistence.table
    pushed = []
    table.on_local_change = lambda update_id, key, server_id: pushed.append(update_id)
    assert cmds.answer("set table app key 192.0.2.7 data.server_id 2") == ""
    assert table.lookup("192.0.2.7", touch=False) == 2
    assert pushed == [1]
    assert [c.key for c in table.changes_since(0)] == [table.entry("192.0.2.7").key]
    lines = cmds.answer("show table app key 192.0.2.7").splitlines()
    assert lines[1].startswith("0x000000000001: key=::ffff:192.0.2.7 use=0 exp=")
    assert lines[1].endswith(" server_id=2")
    assert cmds.answer("set table app key 192.0.2.7 data.server_id 1") == ""  # a new server
    assert table.lookup("192.0.2.7", touch=False) == 1 and pushed == [1, 2]


def test_set_table_errors_change_nothing(proxy, cmds):  # noqa: F811
    table = proxy.backends["app"].persistence.table
    assert cmds.answer("set table app key 192.0.2.7 data.server_id 9") == (
        "No server with id 9 in backend 'app'.\n"
    )
    assert cmds.answer("set table plain key 192.0.2.7 data.server_id 1") == "No such table.\n"
    assert cmds.answer("set table app key nope data.server_id 1").startswith("Invalid key")
    assert len(table) == 0 and table.update_id == 0


def test_show_table_key_finds_one_entry_without_using_it(proxy, cmds):  # noqa: F811
    table = proxy.backends["app"].persistence.table
    for n in range(1, 200):
        table.learn(f"192.0.2.{n}", 1 + n % 2)
    lru_before = [e.key for e in table]
    answer = cmds.answer("show table app key 192.0.2.100").splitlines()
    assert len(answer) == 2 and "key=::ffff:192.0.2.100 " in answer[1]
    assert answer[1].endswith("server_id=1")
    assert cmds.answer("show table app key 198.51.100.1").splitlines() == [answer[0]]
    assert [e.key for e in table] == lru_before  # looking is not using
