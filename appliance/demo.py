"""``weir demo``: three small backends and the proxy in front of them, on loopback.

The embedded default farm shows round robin at work: each backend answers
with its own name, so repeated requests show the rotation.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import threading

from appliance.config import load_text
from appliance.run import serve

DEMO_BACKENDS = ("web1", "web2", "web3")  # on free loopback ports, printed at start

DEMO_CONFIG = """
[global]
log = "stdout"
runtime_socket = "{socket}"

[frontends.www]
bind = ["127.0.0.1:{port}"]
default_backend = "app"
forwardfor = true

[backends.app]
balance = "roundrobin"
{servers}
"""


class DemoBackend(asyncio.Protocol):
    """A tiny HTTP/1.1 server answering every request with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            body = f"Hello from {self.name}: {request_line}\n".encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"X-Served-By: %b\r\nContent-Length: %d\r\n\r\n%b"
                % (self.name.encode(), len(body), body)
            )


async def _serve_backends(started: threading.Event, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for name in DEMO_BACKENDS:
        server = await loop.create_server(lambda name=name: DemoBackend(name), "127.0.0.1", 0)
        ports.append(server.sockets[0].getsockname()[1])
    started.set()
    await asyncio.Event().wait()


def run_demo(port: int = 8080) -> int:
    started = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve_backends(started, ports)),
        name="demo-backends",
        daemon=True,
    )
    thread.start()
    if not started.wait(5):
        print("weir demo: the demo backends did not start", file=sys.stderr)
        return 2
    farm = list(zip(DEMO_BACKENDS, ports, strict=True))
    servers = "\n".join(
        f'[[backends.app.servers]]\nname = "{name}"\naddress = "127.0.0.1:{bport}"\n'
        for name, bport in farm
    )
    workdir = tempfile.mkdtemp(prefix="weir-demo-")
    socket_path = os.path.join(workdir, "weir.sock")
    text = DEMO_CONFIG.format(port=port, servers=servers, socket=socket_path)
    config = load_text(text, path="<demo>")
    print(
        f"Weir demo: proxy on http://127.0.0.1:{port}/ in front of "
        + ", ".join(f"{n} (127.0.0.1:{p})" for n, p in farm)
        + "\nTry:\n"
        f"  curl -s http://127.0.0.1:{port}/            # answered by web1, web2, web3 in turn\n"
        f"  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:{port}/; done\n"
        f"  weir ctl -s {socket_path} show stat     # the runtime API\n"
        "Each request is logged below in HAProxy's httplog format. Ctrl-C stops.\n",
        flush=True,
    )
    try:
        return serve(config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
