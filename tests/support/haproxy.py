"""A real HAProxy (Debian package ``haproxy``) run in the foreground, for side-by-side tests.

``HAProxy(tmp, config)`` writes ``config`` (``{port}`` replaced by a free port) and runs
``haproxy -db -f CFG``; its stdout is the log (access lines and server state changes, with
``log stdout`` in the config's global section). The ``haproxy`` fixture of
tests/interop/conftest.py starts them and stops them at teardown.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

from tests.support.proxy import free_port

HAPROXY = Path("/usr/sbin/haproxy")
MISSING = "haproxy not found at /usr/sbin/haproxy: install the Debian package 'haproxy'"

# The common part of the side-by-side configs: one ``listen www`` section on
# ``{port}``, round robin, log lines on stdout; each test appends its servers.
HAPROXY_HEAD = """\
global
    maxconn 200
    log stdout format rfc3164 local0
defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 1
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 500ms
listen www
    bind 127.0.0.1:{port}
    balance roundrobin
"""


class HAProxy:
    """``haproxy -db -f CFG`` in the foreground; stdout is its access log."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.port = free_port()
        self.config_path = tmp / "haproxy.cfg"
        self.config_path.write_text(config.replace("{port}", str(self.port)))
        self.log_path = tmp / "haproxy.log"
        self.stderr_path = tmp / "haproxy.stderr"
        self.proc = subprocess.Popen(
            [str(HAPROXY), "-db", "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited {self.proc.returncode}: {self.text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen on {self.port}: {self.text()}")

    def text(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in (self.log_path, self.stderr_path) if p.exists()
        )

    def log_lines(self, wait_for: int = 0, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_text(errors="replace")
            lines = [ln for ln in text.splitlines() if ln.endswith(' HTTP/1.1"')]
            if len(lines) >= wait_for or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
