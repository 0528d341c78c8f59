"""Run the real ``weir run -c FILE`` as a subprocess, and talk to it over sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WEIR = [sys.executable, "-m", "appliance.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers_toml(backend: str, servers: list[tuple[str, str]], **extra: object) -> str:
    out = []
    for name, address in servers:
        out.append(f'[[backends.{backend}.servers]]\nname = "{name}"\naddress = "{address}"\n')
        for key, value in extra.get(name, {}).items():  # type: ignore[union-attr]
            out.append(f"{key} = {toml_value(value)}\n")
    return "".join(out)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return f'"{value}"'


class WeirProcess:
    """A ``weir run`` process with its config, log file and listening port."""

    def __init__(self, tmp: Path, body: str, port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.log_path = tmp / "weir.log"
        self.config_path = tmp / "weir.toml"
        self.stderr_path = tmp / "weir.stderr"
        self.config_path.write_text(
            body.replace("{port}", str(self.port)).replace("{tmp}", str(tmp))
        )
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> WeirProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*WEIR, "run", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("wb"),
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weir exited {self.proc.returncode}: {self.stderr()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"weir did not listen on {self.port}: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_lines(self, wait_for: int = 0, timeout: float = 5.0) -> list[str]:
        """Access-log lines (event lines excluded); wait until at least ``wait_for`` exist."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_text() if self.log_path.exists() else ""
            lines = [ln for ln in text.splitlines() if ' "' in ln and "]: " in ln]
            if len(lines) >= wait_for or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, raw_head: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class Reader:
    """Reads HTTP/1.1 responses from a socket, for exact wire-level assertions."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def response(self, head_request: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a full head: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:]]
        resp = Response(status, headers, b"", head)  # type: ignore[arg-type]
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        if (resp.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill():
                        raise ConnectionError("closed in chunk size")
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill():
                        raise ConnectionError("closed in chunk")
                body += self.buf[:size]
                self.buf = self.buf[size + 2 :]
                if size == 0:
                    break
            resp.body = body
        elif resp.header("content-length") is not None:
            n = int(resp.header("content-length"))
            while len(self.buf) < n:
                if not self._fill():
                    raise ConnectionError("closed in body")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            resp.body = self.read_until_close()
        return resp

    def closed(self) -> bool:
        """True when the peer has closed (after the buffered data)."""
        try:
            return not self._fill()
        except ConnectionResetError:
            return True


def get(port: int, path: str = "/", headers: str = "Host: t\r\n") -> Response:
    with connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode())
        return Reader(s).response()
