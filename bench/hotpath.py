"""Micro-benchmark of the proxy's per-request Python path, without sockets.

A real ``ClientConnection`` and ``ServerConnection`` are wired to in-memory
transports; each cycle feeds one keep-alive request from the client, lets the
proxy pick a server and reuse a pooled connection, feeds nginx's response, and
lets the proxy answer and log (to a real file). What remains is exactly the
Python work the proxy does per request, so two versions of the code can be
compared far more precisely than with wrk on a shared machine. It leaves out
the event loop and the kernel, which ``bench.throughput`` measures.

    python -m bench.hotpath            # microseconds per request, best of 7
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import uvloop

from appliance.config import load_text
from appliance.proxy.client import ClientConnection
from appliance.proxy.proxy import Proxy
from appliance.proxy.server import ServerConnection

REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 08:20:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n"
)


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.write(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default


def build(log_path: str) -> tuple[ClientConnection, list[ServerConnection]]:
    config = load_text(
        f'[global]\nlog = "{log_path}"\n'
        '[frontends.www]\nbind = ["127.0.0.1:1"]\ndefault_backend = "app"\n'
        '[backends.app]\nhttp_reuse = "always"\n'
        '[[backends.app.servers]]\nname = "n1"\naddress = "127.0.0.1:2"\n'
        '[[backends.app.servers]]\nname = "n2"\naddress = "127.0.0.1:3"\n',
        for_run=True,
    )
    loop = uvloop.new_event_loop()
    proxy = Proxy(config, loop)
    conns = []
    for server in proxy.backends["app"].servers:
        conn = ServerConnection(server)
        conn.connection_made(MemoryTransport())
        conn.release()
        conns.append(conn)
    client = ClientConnection(proxy.frontends["www"])
    client.connection_made(MemoryTransport())
    return client, conns


def measure(cycles: int, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        client, conns = build(str(Path(tmp) / "access.log"))
        by_server = {conn.server: conn for conn in conns}
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(cycles):
                client.data_received(REQUEST)
                by_server[client.srv].data_received(RESPONSE)
            best = min(best, (time.perf_counter() - start) / cycles)
        client.proxy.log.close()
        client.proxy.events.close()
        if client.transport.written < cycles * len(b"HTTP/1.1 200 OK"):
            raise SystemExit("the proxy did not answer the requests")
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    us = measure(args.cycles, args.repeats)
    print(f"hot path: {us:.2f} us per request (best of {args.repeats} x {args.cycles})")


if __name__ == "__main__":
    main()
