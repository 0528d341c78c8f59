"""A small reader of Prometheus' text exposition format (0.0.4), for assertions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: dict[frozenset[tuple[str, str]], float] = field(default_factory=dict)


def unescape(value: str) -> str:
    return re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], value)


def parse_labels(text: str) -> frozenset[tuple[str, str]]:
    pairs = []
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad labels at {text[pos:]!r}"
        pairs.append((m.group(1), unescape(m.group(2))))
        pos = m.end()
    return frozenset(pairs)


def parse(text: str) -> dict[str, Family]:
    """Families by name; asserts the layout (HELP and TYPE before the samples, once each)."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"{name} described twice"
            current = families[name] = Family(name, help=unescape(help_text))
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert current is not None and current.name == name and not current.type
            assert kind in ("counter", "gauge"), line
            current.type = kind
        else:
            m = _SAMPLE.fullmatch(line)
            assert m, f"not a sample line: {line!r}"
            assert current is not None and m.group(1) == current.name, line
            labels = parse_labels(m.group(2) or "")
            assert labels not in current.samples, f"duplicate sample {line!r}"
            current.samples[labels] = float(m.group(3))
    return families


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    return families[name].samples[frozenset(labels.items())]
