"""Micro-benchmark of the proxy's per-request Python path, without sockets.

Real ``ClientConnection`` and ``ServerConnection`` objects are wired to
in-memory transports. Each round stands for two event-loop iterations: every
client connection delivers one keep-alive request (the proxy picks a server
and reuses a pooled connection), then what the proxy queued is sent, as at the
end of an iteration (appliance/proxy/outbox.py); then every server connection
delivers nginx's response, the proxy answers and logs (to a real file), and
sends. What remains is the Python work the proxy does per request, so two
versions of the code can be compared far more precisely than with wrk on a
shared machine. It leaves out the event loop and the kernel, which
``bench.throughput`` measures.

The figure is the process's CPU time (all threads, so the log writer thread
is included, as it is when the proxy is pinned to one core), which other
programs competing for the CPUs do not inflate the way they inflate
wall-clock time.

    python -m bench.hotpath            # CPU microseconds per request, best of 7
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
from appliance.proxy.outbox import SendQueue, send_queue
from appliance.proxy.proxy import Proxy
from appliance.proxy.server import ServerConnection

CLIENTS = 10  # keep-alive connections whose requests arrive in one loop iteration
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


def build(log_path: str, clients: int) -> tuple[list[ClientConnection], SendQueue]:
    """A proxy with ``clients`` client connections and enough pooled server connections."""
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
    queue = send_queue(loop)
    for server in proxy.backends["app"].servers:
        for _ in range(clients):  # even if every request of a round picks this server
            conn = ServerConnection(server, queue)
            conn.connection_made(MemoryTransport())
            conn.release(loop.time())
    connections = []
    for _ in range(clients):
        client = ClientConnection(proxy.frontends["www"])
        client.connection_made(MemoryTransport())
        connections.append(client)
    return connections, queue


def measure(cycles: int, repeats: int, clients: int = CLIENTS) -> float:
    """CPU microseconds per request: the best of ``repeats`` runs of ``cycles`` rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        connections, queue = build(str(Path(tmp) / "access.log"), clients)
        proxy = connections[0].proxy
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(cycles):
                # One loop iteration: every client's request arrives, then what the
                # proxy queued is sent; the next: every server's response, and send.
                for client in connections:
                    client.data_received(REQUEST)
                queue.send_all()
                for conn in [client.srv_conn for client in connections]:
                    conn.data_received(RESPONSE)
                queue.send_all()
            proxy.log.flush()  # the writer thread's share of the work
            best = min(best, (time.process_time() - start) / (cycles * clients))
            proxy.loop.call_soon(proxy.loop.stop)  # run the (now empty) sends it scheduled
            proxy.loop.run_forever()
        proxy.log.close()
        proxy.events.close()
        answered = sum(client.transport.transport.written for client in connections)
        if answered < repeats * cycles * clients * len(b"HTTP/1.1 200 OK\r\n\r\nhello\n"):
            raise SystemExit("the proxy did not answer the requests")
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000, help="rounds per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs; the best is kept")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="requests per round")
    args = parser.parse_args()
    us = measure(args.cycles, args.repeats, args.clients)
    print(
        f"hot path: {us:.2f} us of CPU per request "
        f"(best of {args.repeats} x {args.cycles} rounds of {args.clients})"
    )


if __name__ == "__main__":
    main()
