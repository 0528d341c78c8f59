"""One runtime-API client connection in HAProxy's CLI dialect, without I/O.

The dialect (HAProxy management guide, "Unix Socket commands"): a client sends
a line, gets the answer followed by an empty line, and the connection closes
(one-shot mode, what ``echo "show stat" | socat ...`` does). ``prompt``
switches to interactive mode, where the connection stays open and every
answer is followed by the prompt ``"> "`` (what hatop uses); ``quit`` closes
it. Several commands may share a line, separated by ``;``.

Bad input never costs the process anything: a line over ``MAX_LINE`` bytes or
binary data gets one error line and the connection is closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_LINE = 65536
PROMPT = b"> "
IDLE_TIMEOUT = 10.0  # seconds a client may stay silent (``set timeout cli`` changes it)
MAX_TIMEOUT = 86400.0


# What the socket layer must do after ``feed``: send the bytes, then close if the flag is set.
# A plain tuple, as commands.py's ``Command`` is: pollers ask a process that is otherwise idle.
Output = tuple[bytes, bool]


class CliSession:
    """Splits a client's bytes into commands and frames the answers.

    ``answer`` is the command executor (``RuntimeCommands.answer``): a line in,
    the answer's text out.
    """

    __slots__ = ("answer", "buf", "closed", "interactive", "timeout")

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.buf = b""
        self.interactive = False
        self.closed = False
        self.timeout = IDLE_TIMEOUT

    def feed(self, data: bytes) -> Output:
        """Bytes from the client -> what to send back and whether to close."""
        if self.closed:
            return b"", True
        # Walk the lines by index: re-slicing the buffer per line would copy the rest
        # of a pipelined batch once per command.
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        start = 0
        while not self.closed:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line, start = buf[start:end], end + 1
            if len(line) > MAX_LINE:
                return self._refuse(out, "Command line too long (over 64 kB); closing.")
            text = _text(line)
            if text is None:
                return self._refuse(out, "Binary data is not a command; closing.")
            self._line(text.strip(), out)
        self.buf = buf[start:] if start else buf
        if len(self.buf) > MAX_LINE and not self.closed:
            return self._refuse(out, "Command line too long (over 64 kB); closing.")
        return b"".join(out), self.closed

    def eof(self) -> Output:
        """The client finished sending: a last line without newline still counts."""
        if self.closed or not self.buf.strip():
            self.closed = True
            return b"", True
        return self.feed(b"\n")

    def _refuse(self, out: list[bytes], message: str) -> Output:
        self.closed = True
        self.buf = b""
        out.append(message.encode() + b"\n\n")
        return b"".join(out), True

    def _line(self, line: str, out: list[bytes]) -> None:
        if not line and self.interactive:
            out.append(b"\n" + PROMPT)  # an empty line in prompt mode: a fresh prompt
            return
        for command in line.split(";"):
            command = command.strip()
            if command == "quit":
                self.closed = True
                return
            if not command:
                text = ""
            elif command == "prompt":
                self.interactive = not self.interactive
                text = ""
            elif command.startswith("set timeout cli"):
                text = self._set_timeout(command)
            else:
                text = self.answer(command)
            out.append(text.encode() + b"\n")
        if self.interactive:
            out.append(PROMPT)
        else:
            self.closed = True

    def _set_timeout(self, command: str) -> str:
        words = command.split()
        if len(words) != 4:
            return "'set timeout cli' expects a number of seconds.\n"
        try:
            seconds = float(words[3])
        except ValueError:
            return "'set timeout cli' expects a number of seconds.\n"
        if not 0 < seconds <= MAX_TIMEOUT:
            return "'set timeout cli' expects a number of seconds, 1 to 86400.\n"
        self.timeout = seconds
        return ""


# Control bytes other than tab and CR. UTF-8 never uses bytes below 0x80 inside a
# multi-byte character, so looking at the bytes is the same as looking at the characters,
# and one regex search is several times cheaper than a Python loop over the line.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f]")


def _text(line: bytes) -> str | None:
    """The line as text, or None if it is binary (invalid UTF-8 or control bytes)."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return None
    # A printable line has no control character; the regex is for the rest (tab, CR, and
    # characters such as U+00AD that are not printable but not control characters either).
    if text.isprintable() or _CONTROL.search(line) is None:
        return text
    return None
