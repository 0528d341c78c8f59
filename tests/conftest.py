"""Shared fixtures: test backends on loopback and the real ``weir run`` process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.backend import BackendPool
from tests.support.proxy import WeirProcess


@pytest.fixture
def pool() -> Iterator[BackendPool]:
    p = BackendPool()
    yield p
    p.close()


@pytest.fixture
def weir(tmp_path):
    """Factory: ``weir(config_text)`` starts a proxy; all are stopped at teardown."""
    started: list[WeirProcess] = []

    def start(body: str, wait: bool = True) -> WeirProcess:
        sub = tmp_path / f"weir{len(started)}"
        sub.mkdir()
        proc = WeirProcess(sub, body)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()
