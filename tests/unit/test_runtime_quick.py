"""``RuntimeCommands.quick_answer``: the pollers' ``show table NAME key K``, which a prompt-mode
runtime client answers without the session's general path, must be answered exactly as the
general path answers it, and anything else left to the general path."""

from __future__ import annotations

import asyncio
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import load_text
from appliance.proxy.proxy import Proxy
from appliance.runtime.commands import RuntimeCommands
from appliance.runtime.server import RuntimeClient

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
on = "cookie:JSESSIONID"
[[backends.app.servers]]
name = "web1"
address = "127.0.0.1:9001"
[[backends.app.servers]]
name = "web2"
address = "127.0.0.1:9002"
[backends.ips]
[backends.ips.stick]
on = "src"
[[backends.ips.servers]]
name = "s1"
address = "127.0.0.1:9003"
[backends.plain]
[[backends.plain.servers]]
name = "s2"
address = "127.0.0.1:9004"
"""

PRESENT = ["k1", "0123456789abcdef0123456789abcdef", "a-b_c.d", "x" * 32]


@pytest.fixture(scope="module")
def cmds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    loop = asyncio.new_event_loop()
    proxy = Proxy(load_text(CONFIG.replace("{tmp}", str(tmp)), for_run=True), loop)
    for name in ("app", "ips"):
        table = proxy.backends[name].persistence.table
        table._clock = lambda: 1000.0  # exp= must not move between the two answers
    app = proxy.backends["app"].persistence.table
    for n, key in enumerate(PRESENT):
        app.learn(key.encode(), 1 + n % 2)
    proxy.backends["ips"].persistence.table.learn("192.0.2.7", 1)
    yield RuntimeCommands(proxy)
    proxy.log.close()
    loop.close()


def test_the_poll_is_answered_quickly_and_as_the_general_path_does(cmds):
    for key in [*PRESENT, "absent"]:
        quick = cmds.quick_answer(f"show table app key {key}\n".encode())
        assert quick is not None
        assert quick == cmds.answer(f"show table app key {key}")
    assert "key=k1 use=0 exp=" in cmds.quick_answer(b"show table app key k1\n")


@pytest.mark.parametrize(
    "data",
    [
        b"show table ips key 192.0.2.7\n",  # not a string table
        b"show table plain key k1\n",  # no table
        b"show table nosuch key k1\n",
        b"show table app key k1",  # no newline yet
        b"show table app key k1\r\n",
        b"show table app key  k1\n",
        b"show table app\tkey k1\n",
        b"show table app\x0bkey k1\n",  # whitespace to split(), a control byte to the session
        b"show table app key k1\nshow table app key k1\n",  # two commands
        b"show table app key k1;help\n",
        b"show table app key k1 ",  # the line is not complete
        b"show table app key k1\r",
        b"show table app key k\x01\n",
        b"show table app key caf\xc3\xa9\n",
        b"show table app key caf\xc3\n",  # not UTF-8
        b"show table app key " + b"x" * 33 + b"\n",  # longer than the table's keys
        b"show table app key k1 extra\n",
        b"show table app kex k1\n",
        b"show table app\n",
    ],
)
def test_anything_else_goes_to_the_general_path(cmds, data):
    assert cmds.quick_answer(data) is None


ODD = st.sampled_from([" ", ";", "\t", "\r", "\x01", "\x0b", "\x0c", "\x7f", "\u00e9", "x", "\n"])


@st.composite
def lines(draw):
    """The poll itself (mostly of the string table; a present key, an absent one, or one the quick
    path must not take), then now and then one character put in (mostly into the name or the
    key) or taken out, or another command after it."""
    name = draw(st.sampled_from(["app"] * 6 + ["ips", "plain", "nosuch", "a;pp"]))
    odd_keys = ["192.0.2.7", "x" * 33, "k;1", "k1;help", "k\t1", "caf\u00e9", "k\x01", "k\x7f"]
    key = draw(st.sampled_from([*PRESENT, "absent", *odd_keys]))
    text = f"show table {name} key {key}"
    if draw(st.integers(0, 3)):
        where = draw(st.sampled_from(["key", "key", "name and key", "anywhere"]))
        first = {"key": len(text) - len(key), "name and key": len("show table ")}.get(where, 0)
        at = draw(st.integers(first, len(text)))
        if draw(st.integers(0, 4)):
            text = text[:at] + draw(ODD) + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    text += draw(st.sampled_from(["\n", "\n", "\n", "\r\n", "", "\nhelp\n"]))
    return text.encode()


class Transport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def client(cmds, quick: bool = True) -> tuple[RuntimeClient, Transport]:
    server = types.SimpleNamespace(proxy=cmds.proxy, commands=cmds, clients=set())
    conn = RuntimeClient(server)  # type: ignore[arg-type]
    if not quick:
        conn.quick_answer = lambda data: None
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_a_prompt_mode_client_answers_the_poll_without_the_session(cmds):
    conn, transport = client(cmds)
    conn.data_received(b"prompt\n")

    def general(line: str) -> str:
        raise AssertionError(f"the general path answered {line!r}")

    conn.session.answer = general
    conn.data_received(b"show table app key k1\n")
    assert transport.out == b"\n> " + cmds.answer("show table app key k1").encode() + b"\n> "


@settings(max_examples=1000, deadline=None)
@given(
    data=lines(),
    prompt=st.sampled_from([True, True, True, False]),  # the quick lane is for prompt mode
    before=st.sampled_from([b""] * 6 + [b"show ", b"help"]),  # the start of a line, read before
    cut=st.one_of(st.just(0), st.integers(0, 60)),  # the data in two reads (not at 0)
)
def test_clients_with_and_without_the_quick_path_answer_alike(cmds, data, prompt, before, cut):
    sent = []
    for quick in (True, False):
        conn, transport = client(cmds, quick)
        if prompt:
            conn.data_received(b"prompt\n")
        for read in (before, data[:cut], data[cut:]):
            if read:
                conn.data_received(read)
        conn.eof_received()
        sent.append((bytes(transport.out), transport.closed))
    assert sent[0] == sent[1]
