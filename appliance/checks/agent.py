"""Agent check: the server's own agent says how it is (HAProxy's ``agent-check``).

The article's third level of testing: only the server knows that it is being
upgraded, overloaded or about to be taken away, so a small agent on the
server answers one line on ``agent_port``. The words of that line, separated
by spaces, tabs or commas, in any case and any order (the last of a kind
wins), as in HAProxy:

- ``up``; ``down``, ``fail``, ``stopped``: the server's operational state. A
  ``down`` holds the server down whatever its checks say (``#text`` after it
  is shown in the log), ``up`` lets go of it;
- ``ready``, ``drain``, ``maint``: the admin state;
- ``75%``: the weight as a share of the configured one; ``weight:NN``: an
  absolute weight (Weir's addition); both clamped to 0..256.

Words that are not protocol words are skipped, as HAProxy does; a line with no
protocol word at all (binary data, an HTTP answer, an empty line) is garbage:
the caller ignores and counts it. A reply is read up to its first newline, at
most ``MAX_REPLY`` bytes, within ``timeouts.check``; an agent that cannot be
reached changes nothing (the regular check judges the connection).

``parse_reply`` is sans-io; ``agent_check`` moves the bytes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from appliance.checks.state import Admin, CheckResult
from appliance.checks.tcp import L4_TIMEOUT, connect_error, hang_up

MAX_REPLY = 1024
MAX_WEIGHT = 256
L7_OK = "Layer7 check passed"
L7_TIMEOUT = "Layer7 timeout"
_PRINTABLE = re.compile(r"[\t\x20-\x7e]*")
_WORD_SEPARATORS = re.compile(r"[ \t,]+")
_PERCENT = re.compile(r"(\d{1,6})%")
_WEIGHT = re.compile(r"weight:(\d{1,6})")
_DOWN_WORDS = ("down", "fail", "stopped")
_ADMIN_WORDS = {"ready": Admin.READY, "drain": Admin.DRAIN, "maint": Admin.MAINT}


@dataclass(frozen=True, slots=True)
class AgentReply:
    """What one agent line asks for; ``None`` fields leave that part alone."""

    text: str  # the line as received (printable ASCII), for the log
    health: str | None = None  # "up", or "down", "fail", "stopped": held down
    admin: Admin | None = None
    weight: int | None = None  # absolute, or a percentage when ``relative``
    relative: bool = False
    comment: str = ""  # the text after '#'

    def effective_weight(self, configured: int) -> int | None:
        """The weight to set, given the server's configured weight, or None."""
        if self.weight is None:
            return None
        weight = configured * self.weight // 100 if self.relative else self.weight
        return min(weight, MAX_WEIGHT)


def parse_reply(data: bytes) -> AgentReply | None:
    """Parse the first line of ``data``; None when it holds no protocol word (garbage)."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or len(line) > MAX_REPLY or not _PRINTABLE.fullmatch(line.decode("latin-1")):
        return None
    text = line.decode("ascii")
    words_part, _, comment = text.partition("#")
    health: str | None = None
    admin: Admin | None = None
    weight: int | None = None
    relative = False
    known = False
    for word in _WORD_SEPARATORS.split(words_part.lower()):
        if word == "up" or word in _DOWN_WORDS:
            health = word
        elif word in _ADMIN_WORDS:
            admin = _ADMIN_WORDS[word]
        elif match := _PERCENT.fullmatch(word):
            weight, relative = int(match[1]), True
        elif match := _WEIGHT.fullmatch(word):
            weight, relative = int(match[1]), False
        else:
            continue
        known = True
    if not known:
        return None
    return AgentReply(text.strip(), health, admin, weight, relative, comment.strip())


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """One agent check: the connection's outcome and, when a line came, what it says."""

    result: CheckResult
    reply: AgentReply | None = None  # None with ``result.ok``: garbage
    raw: bytes = b""  # what was read, for the log when it is garbage


async def agent_check(host: str, port: int, timeout: float) -> AgentAnswer:
    """Connect to the agent at ``host:port``, read its line, within ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    data = b""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                return AgentAnswer(connect_error(exc, loop.time() - start))
            while b"\n" not in data and len(data) <= MAX_REPLY:
                chunk = await reader.read(MAX_REPLY + 1 - len(data))
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        reason = L4_TIMEOUT if writer is None else L7_TIMEOUT
        return AgentAnswer(CheckResult(False, reason, duration=loop.time() - start))
    except OSError as exc:
        info = exc.strerror or str(exc) or type(exc).__name__
        result = CheckResult(False, "Layer7 invalid response", info=info)
        return AgentAnswer(result)
    finally:
        if writer is not None:
            hang_up(writer)
    duration = loop.time() - start
    reply = parse_reply(data)
    info = reply.text if reply is not None else ""
    return AgentAnswer(CheckResult(True, L7_OK, info=info, duration=duration), reply, data)
