"""Line numbers for TOML keys, which ``tomllib`` does not report.

``locate(text)`` scans a document that ``tomllib`` has already accepted and maps
every key path to the line it is written on. A key path is a tuple of table
keys and array indexes, the way the loaded data is walked:
``("backends", "app", "servers", 1, "weight")`` is the ``weight`` line of the
second ``[[backends.app.servers]]`` table. Tables created implicitly (by a
``[a.b.c]`` header or a dotted key ``a.b = 1``) get the line where they are
first mentioned unless they also have a header of their own.

``format_key`` spells a key path the way problems are reported:
``backends.app.servers[1].weight``.
"""

from __future__ import annotations

import json
import re
import tomllib

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(path: KeyPath) -> str:
    """Spell ``path`` as ``a.b[1].c``, quoting keys that are not bare TOML keys."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


class Lines:
    """Key path to line number, falling back to the closest enclosing table."""

    def __init__(self, text: str) -> None:
        self._lines = locate(text)

    def of(self, path: KeyPath) -> int:
        """Line of ``path``, or of its nearest written ancestor; 0 if none is written."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 0


def locate(text: str) -> dict[KeyPath, int]:
    """Map every key path written in the TOML ``text`` to its 1-based line number."""
    return _Scanner(text).scan()


class _Scanner:
    """A forgiving walk over valid TOML that only tracks where keys are."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.explicit: set[KeyPath] = set()
        self.array_lengths: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                table = self._array_table(self._key(), line)
                self._skip_past("]]")
            elif self.text[self.pos] == "[":
                self.pos += 1
                table = self._resolve(self._key())
                self._record(table, line, explicit=True)
                self._skip_past("]")
            else:
                self._key_value(table)

    def _record(self, path: KeyPath, line: int, *, explicit: bool) -> None:
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], line)
        if explicit and path not in self.explicit:
            self.explicit.add(path)
            self.lines[path] = line
        else:
            self.lines.setdefault(path, line)

    def _resolve(self, key: list[str]) -> KeyPath:
        """Table path for a header, stepping into the last element of arrays of tables."""
        path: KeyPath = ()
        for part in key:
            path += (part,)
            if path in self.array_lengths:
                path += (self.array_lengths[path] - 1,)
        return path

    def _array_table(self, key: list[str], line: int) -> KeyPath:
        parent = self._resolve(key[:-1])
        array = (*parent, key[-1])
        index = self.array_lengths.get(array, 0)
        self.array_lengths[array] = index + 1
        self._record(array, line, explicit=False)
        self._record((*array, index), line, explicit=True)
        return (*array, index)

    def _key_value(self, table: KeyPath) -> None:
        line = self.line
        path = (*table, *self._key())
        self._record(path, line, explicit=True)
        self._skip_past("=")
        self._skip_blank(newlines=False)
        self._value(path)

    def _value(self, path: KeyPath) -> None:
        text = self.text
        if text.startswith(('"""', "'''"), self.pos):
            self._multiline_string(text[self.pos : self.pos + 3])
        elif text[self.pos] in "\"'":
            self._string()
        elif text[self.pos] == "[":
            self._array(path)
        elif text[self.pos] == "{":
            self._inline_table(path)
        else:
            while self.pos < len(text) and text[self.pos] not in ",]}#\r\n":
                self.pos += 1

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text) or self.text[self.pos] == "]":
                self.pos += 1
                return
            self._record((*path, index), self.line, explicit=True)
            self._value((*path, index))
            index += 1
            self._skip_blank(newlines=True)
            if self.text.startswith(",", self.pos):
                self.pos += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip_blank(newlines=False)
            if self.pos >= len(self.text) or self.text[self.pos] == "}":
                self.pos += 1
                return
            self._key_value(path)
            self._skip_blank(newlines=False)
            if self.text.startswith(",", self.pos):
                self.pos += 1

    def _key(self) -> list[str]:
        parts = []
        while True:
            self._skip_blank(newlines=False)
            start = self.pos
            if self.text[self.pos] in "\"'":
                self._string()
                parts.append(tomllib.loads(f"k = {self.text[start : self.pos]}")["k"])
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                end = match.end() if match else self.pos + 1
                parts.append(self.text[start:end])
                self.pos = end
            self._skip_blank(newlines=False)
            if not self.text.startswith(".", self.pos):
                return parts
            self.pos += 1

    def _string(self) -> None:
        quote = self.text[self.pos]
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 1
            self.pos += 1
        self.pos += 1

    def _multiline_string(self, delimiter: str) -> None:
        self.pos += 3
        while self.pos < len(self.text) and not self.text.startswith(delimiter, self.pos):
            if delimiter == '"""' and self.text[self.pos] == "\\":
                self._advance()
            self._advance()
        self.pos += 3
        # A closing delimiter may be preceded by up to two quotes that belong to the string.
        while self.text.startswith(delimiter[0], self.pos):
            self.pos += 1

    def _advance(self) -> None:
        if self.pos < len(self.text) and self.text[self.pos] == "\n":
            self.line += 1
        self.pos += 1

    def _skip_past(self, token: str) -> None:
        end = self.text.find(token, self.pos)
        self.pos = len(self.text) if end < 0 else end + len(token)

    def _skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces, tabs and comments, and line ends too when ``newlines``."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self._advance()
            elif char == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            else:
                return
