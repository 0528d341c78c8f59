"""Fixtures for the interop tier: a real HAProxy next to the real ``weir run``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.haproxy import HAProxy


@pytest.fixture
def haproxy(tmp_path) -> Iterator:
    """Factory: ``haproxy(config_text)`` starts a HAProxy; all are stopped at teardown."""
    started: list[HAProxy] = []

    def start(config: str) -> HAProxy:
        sub = tmp_path / f"haproxy{len(started)}"
        sub.mkdir()
        started.append(HAProxy(sub, config))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()
