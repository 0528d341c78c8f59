"""``track_proxy``'s probes (ha/vrrp/track.py) against a real ``weir run`` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from ha.vrrp.track import ProxyTarget, probe_runtime_api, probe_tcp
from tests.integration.test_forwarding import farm
from tests.support.proxy import free_port

pytestmark = pytest.mark.integration


def test_a_running_proxy_answers_both_probes(pool, weir) -> None:
    _, body = farm(pool, n=1)
    proxy = weir(body)
    runtime = ProxyTarget(runtime_socket=str(proxy.tmp / "weir.sock"))
    assert asyncio.run(runtime.probe(2.0)) == ""
    assert asyncio.run(ProxyTarget(host="127.0.0.1", port=proxy.port).probe(2.0)) == ""


def test_a_proxy_that_is_stopping_fails_the_runtime_probe(pool, weir) -> None:
    # SIGTERM: the proxy finishes in-flight requests for up to grace; show info says Stopping.
    _, body = farm(pool, n=1)
    proxy = weir(body.replace("[global]\n", '[global]\ngrace = "5s"\n'))
    path = str(proxy.tmp / "weir.sock")
    with socket.create_connection(("127.0.0.1", proxy.port)) as held:  # keeps it draining
        held.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        proxy.signal(signal.SIGTERM)

        async def until_stopping() -> str:
            for _ in range(100):
                answer = await probe_runtime_api(path, 1.0)
                if answer:
                    return answer
                await asyncio.sleep(0.05)
            return ""

        assert "stopping" in asyncio.run(until_stopping())


def test_absent_proxies_fail_with_the_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.sock")
    assert "No such file" in asyncio.run(probe_runtime_api(missing, 1.0))
    assert "refused" in asyncio.run(probe_tcp("127.0.0.1", free_port(), 1.0))


def test_a_proxy_that_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(path))
        mute.listen(1)  # accepts (in the kernel), never answers
        answer = asyncio.run(probe_runtime_api(str(path), 0.2))
    assert answer.endswith("no answer to 'show info' within 0.2s")
