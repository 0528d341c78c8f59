"""The agent check's reply parser (appliance/checks/agent.py), without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.checks.agent import MAX_REPLY, AgentReply, parse_reply
from appliance.checks.state import Admin

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("word", ["up", "down", "fail", "stopped"])
def test_health_words(word):
    assert parse_reply(f"{word}\n".encode()).health == word


@pytest.mark.parametrize(
    ("word", "admin"), [("ready", Admin.READY), ("drain", Admin.DRAIN), ("maint", Admin.MAINT)]
)
def test_admin_words(word, admin):
    reply = parse_reply(f"{word}\n".encode())
    assert (reply.admin, reply.health, reply.weight) == (admin, None, None)


def test_a_percentage_is_a_share_of_the_configured_weight():
    reply = parse_reply(b"75%\n")
    assert (reply.weight, reply.relative) == (75, True)
    assert reply.effective_weight(4) == 3
    assert reply.effective_weight(100) == 75
    assert parse_reply(b"25%").effective_weight(4) == 1
    assert parse_reply(b"0%").effective_weight(4) == 0
    assert parse_reply(b"1000%").effective_weight(100) == 256  # clamped as HAProxy does


def test_weight_is_absolute_and_clamped():
    reply = parse_reply(b"weight:12\n")
    assert (reply.weight, reply.relative) == (12, False)
    assert reply.effective_weight(1) == 12
    assert parse_reply(b"weight:999").effective_weight(1) == 256
    assert parse_reply(b"weight:0").effective_weight(5) == 0


def test_combinations_in_any_order_and_separator():
    reply = parse_reply(b"up 75%\n")
    assert (reply.health, reply.weight, reply.admin) == ("up", 75, None)
    reply = parse_reply(b"50%,\tDRAIN , Up\r\n")
    assert (reply.health, reply.weight, reply.admin) == ("up", 50, Admin.DRAIN)
    assert reply.text == "50%,\tDRAIN , Up"


def test_the_last_word_of_a_kind_wins():
    reply = parse_reply(b"down up maint ready 10% weight:7\n")
    assert (reply.health, reply.admin, reply.weight, reply.relative) == (
        "up",
        Admin.READY,
        7,
        False,
    )


def test_a_comment_follows_the_hash():
    reply = parse_reply(b"down # disk full\n")
    assert (reply.health, reply.comment) == ("down", "disk full")
    assert parse_reply(b"stopped#upgrade").comment == "upgrade"


def test_only_the_first_line_counts():
    assert parse_reply(b"drain\nmaint\n").admin is Admin.DRAIN


def test_unknown_words_are_skipped():
    reply = parse_reply(b"up hello maxconn:10\n")
    assert reply == AgentReply("up hello maxconn:10", health="up")


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\n",
        b"   \n",
        b"hello world\n",
        b"# only a comment\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup",
        b"\x00\x01up\n",
        "up é\n".encode(),
        b"75 %\n",
        b"-5%\n",
        b"weight:-1\n",
        b"weight:\n",
        b"up" + b" " * MAX_REPLY + b"\n",
    ],
)
def test_garbage_is_none(garbage):
    assert parse_reply(garbage) is None


@given(st.binary(max_size=2 * MAX_REPLY))
def test_never_raises_on_arbitrary_bytes(data):
    reply = parse_reply(data)
    if reply is not None:
        assert reply.health in (None, "up", "down", "fail", "stopped")
        weight = reply.effective_weight(256)
        assert weight is None or 0 <= weight <= 256


@given(
    st.lists(
        st.sampled_from(
            ["up", "down", "fail", "stopped", "ready", "drain", "maint", "50%", "weight:3", "x"]
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([" ", ",", "\t", " , "]),
)
def test_any_sequence_of_words_parses_to_the_last_of_each_kind(words, sep):
    reply = parse_reply((sep.join(words) + "\n").encode())
    if words == ["x"] * len(words):
        assert reply is None
        return
    health = [w for w in words if w in ("up", "down", "fail", "stopped")]
    assert reply.health == (health[-1] if health else None)
    admin = [w for w in words if w in ("ready", "drain", "maint")]
    assert reply.admin == (Admin(admin[-1].upper()) if admin else None)
