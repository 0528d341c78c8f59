"""Durations and sizes as written in the configuration (interfaces.md §2).

Durations are strings made of a whole number and a unit, as in HAProxy's
``timeout`` lines: ``"100us"``, ``"250ms"``, ``"5s"``, ``"30m"``, ``"8h"``,
``"1d"``. A bare number is refused: in HAProxy it would mean milliseconds, and
a reader of the file should not have to remember that.

Sizes are a byte count given as an integer (``16384``) or a string with an
optional binary multiplier (``"16k"`` = 16384, ``"1m"``, ``"2g"``).
"""

from __future__ import annotations

import json
import re

DURATION_UNITS: dict[str, float] = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
SIZE_UNITS: dict[str, int] = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_DURATION = re.compile(r"(\d+)([a-z]*)")
_SIZE = re.compile(r"(\d+)([kmg]?)")
_UNIT_LIST = ", ".join(DURATION_UNITS)


def parse_duration(s: str) -> float:
    """Return the duration ``s`` (e.g. ``"250ms"``) in seconds.

    Raises ValueError with a message fit to show the user.
    """
    if not isinstance(s, str):
        raise ValueError(f'a duration is a string with a unit, such as "5s"; got {s!r}')
    match = _DURATION.fullmatch(s.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {json.dumps(s)}: "
            'expected a whole number and a unit, such as "250ms" or "5s"'
        )
    number, unit = match.groups()
    if not unit:
        raise ValueError(
            f'invalid duration {json.dumps(s)}: missing unit ({_UNIT_LIST}), e.g. "{number}s"'
        )
    if unit not in DURATION_UNITS:
        raise ValueError(
            f"invalid duration {json.dumps(s)}: unknown unit {unit!r} (use {_UNIT_LIST})"
        )
    return int(number) * DURATION_UNITS[unit]


def parse_size(v: int | str) -> int:
    """Return the size ``v`` (``16384``, ``"16k"``, ``"1m"``, ``"2g"``) in bytes.

    Raises ValueError with a message fit to show the user.
    """
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f'a size is an integer or a string such as "16k"; got {v!r}')
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"a size cannot be negative; got {v}")
        return v
    match = _SIZE.fullmatch(v.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid size {json.dumps(v)}: "
            'expected a whole number with an optional k, m or g, e.g. "16k"'
        )
    number, unit = match.groups()
    return int(number) * SIZE_UNITS[unit]
