"""Checks for single configuration values: each takes what ``tomllib`` produced and
returns the typed value, or raises ``ValueError`` with a message for the user.

A converter that checks the items of an array raises ``InvalidItems`` so the
problem can point at the item's own line. Ranges and spellings follow
interfaces.md §2 and HAProxy's keywords (``balance``, ``http-check expect
status``, ``cookie``, ``stick on``).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from .locate import KeyPath
from .model import BALANCE_ALGORITHMS, Address
from .units import parse_duration, parse_size

Convert = Callable[[Any], Any]

NAME = re.compile(r"[A-Za-z0-9_.-]+")
# RFC 9110 token: header names, cookie names, methods.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_BALANCE_WITH_ARGUMENT = ("hdr", "url_param")
_STATUS = re.compile(r"(\d{3})(?:-(\d{3}))?")


class InvalidItems(ValueError):
    """Problems with items of an array: ``(index path, message)`` for each bad item."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def did_you_mean(word: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe(value: object) -> str:
    """Name a TOML value's type and show it, for messages: ``string "yes"``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value}"


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    return value


def integer(low: int, high: int | None = None) -> Convert:
    """An integer in ``low..high`` (inclusive; no upper bound when ``high`` is None)."""

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {describe(value)}")
        _check_range(value, low, high)
        return value

    return convert


def size(low: int = 0, high: int | None = None) -> Convert:
    """A size in bytes (``16384`` or ``"16k"``) in ``low..high``."""

    def convert(value: object) -> int:
        result = parse_size(value)  # type: ignore[arg-type]
        _check_range(result, low, high)
        return result

    return convert


def duration(*, positive: bool = False) -> Convert:
    """A duration in seconds; above zero when ``positive``."""

    def convert(value: object) -> float:
        result = parse_duration(value)  # type: ignore[arg-type]
        if positive and result <= 0:
            raise ValueError(f"must be greater than 0s; got {json.dumps(value)}")
        return result

    return convert


def file_mode(value: object) -> int:
    """Permission bits written in octal, as for chmod: ``"0600"``, ``"660"``."""
    if isinstance(value, str) and value and len(value) <= 4 and set(value) <= set("01234567"):
        return int(value, 8)
    raise ValueError(f'expected octal permission bits such as "0600", got {describe(value)}')


def choice(*options: str) -> Convert:
    """One of ``options``, spelled exactly."""

    def convert(value: object) -> str:
        word = string(value)
        if word not in options:
            raise ValueError(
                f"must be one of {', '.join(options)}; got {json.dumps(word)}"
                + did_you_mean(word, list(options))
            )
        return word

    return convert


def matching(pattern: re.Pattern[str], what: str) -> Convert:
    """A string matching ``pattern``; ``what`` says in words what is allowed."""

    def convert(value: object) -> str:
        word = string(value)
        if not pattern.fullmatch(word):
            raise ValueError(f"invalid {json.dumps(word)}: {what}")
        return word

    return convert


def array(item: Convert) -> Convert:
    """An array whose items each pass ``item``; returned as a tuple."""

    def convert(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected an array, got {describe(value)}")
        results = []
        problems: list[tuple[KeyPath, str]] = []
        for index, element in enumerate(value):
            try:
                results.append(item(element))
            except ValueError as error:
                problems.append(((index,), str(error)))
        if problems:
            raise InvalidItems(problems)
        return tuple(results)

    return convert


def address(value: object) -> Address:
    """``"host:port"`` or ``"[ipv6]:port"``."""
    text = string(value)
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f'invalid address {json.dumps(text)}: expected "host:port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {json.dumps(host)}") from None
    elif ":" in host:
        raise ValueError(
            f"invalid address {json.dumps(text)}: write IPv6 addresses in brackets, "
            f'e.g. "[::1]:8080"'
        )
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"invalid host {json.dumps(host)} in {json.dumps(text)}")
    if not port.isdigit():
        raise ValueError(f"invalid port {json.dumps(port)} in {json.dumps(text)}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be between 1 and 65535; got {port}")
    return Address(host, int(port))


def optional_address(value: object) -> Address | None:
    """An address, or ``""`` for none (a listener that is off)."""
    return address(value) if string(value) else None


def bind_address(value: object) -> Address:
    """A ``bind`` entry: an address, without options until TLS exists."""
    text = string(value)
    where, _, options = text.strip().partition(" ")
    if options.strip():
        option = options.split()[0]
        if option == "tls":
            raise ValueError("TLS bind options are not supported yet")
        raise ValueError(f"unknown bind option {json.dumps(option)}")
    return address(where)


def binds(value: object) -> tuple[Address, ...]:
    """``bind``: one address string or an array of them, at least one."""
    if isinstance(value, str):
        return (bind_address(value),)
    result = array(bind_address)(value)
    if not result:
        raise ValueError('at least one address is required, e.g. ["127.0.0.1:8080"]')
    return result


def balance(value: object) -> tuple[str, str]:
    """``balance``: the algorithm and, for ``hdr:NAME``/``url_param:NAME``, its argument."""
    text = string(value)
    name, colon, argument = text.partition(":")
    if name not in BALANCE_ALGORITHMS:
        spelled = [*(a for a in BALANCE_ALGORITHMS if a not in _BALANCE_WITH_ARGUMENT)]
        spelled += [f"{a}:NAME" for a in _BALANCE_WITH_ARGUMENT]
        raise ValueError(
            f"unknown algorithm {json.dumps(text)} (use {', '.join(spelled)})"
            + did_you_mean(name, list(BALANCE_ALGORITHMS))
        )
    if name in _BALANCE_WITH_ARGUMENT:
        if not TOKEN.fullmatch(argument):
            what = "a header name" if name == "hdr" else "a parameter name"
            raise ValueError(f'{name} needs {what}: "{name}:NAME"')
    elif colon:
        raise ValueError(f"{name} takes no argument; got {json.dumps(text)}")
    return name, argument


def expect_status(value: object) -> str:
    """``expect_status``: ``"200"``, ``"200,301"``, ``"200-399"`` (codes 100..599)."""
    text = string(value)
    for part in text.split(","):
        match = _STATUS.fullmatch(part.strip())
        if match is None:
            raise ValueError(
                f"invalid status {json.dumps(part.strip())}: use a code, a list or a range, "
                f'e.g. "200", "200,301", "200-399"'
            )
        low = int(match[1])
        high = int(match[2] or low)
        if not 100 <= low <= high <= 599:
            raise ValueError(f"invalid status range {json.dumps(part.strip())}: codes are 100..599")
    return text


def stick_on(value: object) -> str:
    """``stick.on``: ``"src"`` or ``"cookie:NAME"``."""
    text = string(value)
    kind, _, name = text.partition(":")
    if text == "src" or (kind == "cookie" and TOKEN.fullmatch(name)):
        return text
    raise ValueError(f'must be "src" or "cookie:NAME"; got {json.dumps(text)}')


def log_target(value: object) -> str:
    """``global.log``: ``"stdout"``, ``"none"``, an absolute path, or ``"syslog://host[:port]"``."""
    text = string(value)
    if text in ("stdout", "none") or text.startswith("/"):
        return text
    if text.startswith("syslog://"):
        target = text.removeprefix("syslog://")
        address(target if ":" in target.rpartition("]")[2] else f"{target}:514")
        return text
    raise ValueError(
        'must be "stdout", "none", an absolute file path or "syslog://host:port"; '
        f"got {json.dumps(text)}"
    )


def redirect(value: object) -> str:
    """``redir``: empty, or an http(s) URL prefix."""
    text = string(value)
    if text and not text.startswith(("http://", "https://")):
        raise ValueError(f'must start with "http://" or "https://"; got {json.dumps(text)}')
    return text


def http_path(value: object) -> str:
    text = string(value)
    if not text.startswith("/"):
        raise ValueError(f'must start with "/"; got {json.dumps(text)}')
    return text


def ip(value: object) -> str:
    text = string(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IP address {json.dumps(text)}") from None
    return text


def interface_address(value: object) -> str:
    """A VIP: ``"198.18.0.100/24"`` (no prefix means a single address)."""
    text = string(value)
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(
            f'invalid address {json.dumps(text)}: expected "ADDRESS/PREFIX", e.g. "198.18.0.100/24"'
        ) from None
    return text


def _check_range(value: int, low: int, high: int | None) -> None:
    if high is None and value < low:
        raise ValueError(f"must be at least {low}; got {value}")
    if high is not None and not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}; got {value}")
