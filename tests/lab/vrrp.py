"""Helpers shared by the VRRP lab tests: bounded waits on VRRP nodes, who is master."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import pytest


class VrrpNode(Protocol):
    """A VRRP speaker in a lab namespace (``weir ha`` or keepalived)."""

    host: str
    log: Path

    def state(self) -> str: ...

    def holds_vip(self) -> bool: ...


def wait_for(
    condition: Callable[[], bool], what: str, nodes: Sequence[VrrpNode], bound: float
) -> None:
    """Poll ``condition`` for at most ``bound`` seconds; on failure show every node's log."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {n.host} ({type(n).__name__})\n{n.log.read_text()}" for n in nodes
            )
            pytest.fail(f"not within {bound:g}s: {what}\n{logs}")
        time.sleep(0.05)


def master_is(master: VrrpNode, backup: VrrpNode) -> Callable[[], bool]:
    """``master`` is MASTER with the VIP and ``backup`` BACKUP without it."""
    return lambda: (
        master.state() == "MASTER"
        and master.holds_vip()
        and backup.state() == "BACKUP"
        and not backup.holds_vip()
    )
