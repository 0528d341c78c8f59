"""Plumbing shared by the benchmarks: tools, free ports, child processes, nginx backends and
the two proxies (HAProxy and Weir) configured with the same features.

Both proxies get: one thread / one process, HTTP mode, access logging on (to a file),
round-robin over the same two nginx servers, ``http-reuse safe``, no X-Forwarded-For, the
same timeouts and the same maxconn. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

# HAProxy 2.6 refuses to start unless it can have 2 * maxconn + ~14 descriptors, and a process
# may hold at most 20,000 here, so maxconn 20000 is impossible; 9000 is well above what any
# benchmark opens. Weir gets the same value.
MAXCONN = 9000
CONNECT_TIMEOUT = "5s"
CLIENT_TIMEOUT = "120s"
SERVER_TIMEOUT = "30s"
HTTP_REQUEST_TIMEOUT = "10s"
KEEP_ALIVE_TIMEOUT = "60s"  # long: the memory benchmark holds idle keep-alive connections
SERVER_NAMES = ("web1", "web2")
START_TIMEOUT = 15.0  # seconds for a child to start listening
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL

PACKAGES = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk"}
_TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class BenchError(Exception):
    """The benchmark cannot run, or what it would measure would be meaningless."""


def find_tool(name: str) -> str:
    """Path of a Debian-packaged program the benchmarks need (nginx, haproxy, wrk)."""
    path = shutil.which(name, path=_TOOL_PATH)
    if path is None:
        package = PACKAGES[name]
        raise BenchError(
            f"{name} not found: install the Debian package {package!r} (apt-get install {package})"
        )
    return path


def find_weir(override: str | None = None) -> str:
    """Path of the ``weir`` command: ``override``, else the one next to this Python, else PATH."""
    if override:
        path = shutil.which(override)
        if path is None:
            raise BenchError(f"weir command {override!r} not found or not executable")
        return path
    candidate = Path(sys.executable).parent / "weir"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    path = shutil.which("weir")
    if path is None:
        raise BenchError(
            f"weir not found next to {sys.executable} nor on PATH: install it into "
            "the venv (make run, or .venv/bin/pip install -e .)"
        )
    return path


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same one twice per run)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass(frozen=True)
class CpuSplit:
    """taskset CPU lists: one CPU for the proxy under test, the others for load and backends."""

    proxy: str | None
    load: str | None

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned"
        return f"proxy pinned to CPU {self.proxy}, wrk and nginx to CPU {self.load}"


def cpu_split(pin: bool) -> CpuSplit:
    """Split the CPUs we may use; no pinning if asked not to, or with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return CpuSplit(None, None)
    return CpuSplit(str(cpus[0]), ",".join(str(cpu) for cpu in cpus[1:]))


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for configs, logs and sockets, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as path:
        yield Path(path)


class Processes:
    """Child processes that are stopped (SIGTERM, then SIGKILL) when the block exits, however.

    Children run in their own session so that a Ctrl-C reaches only us; we stop them in order.
    Each child's stderr goes to ``<workdir>/<name>.stderr``, quoted when it fails.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for _, proc in reversed(self._children):
            self.stop(proc)

    def start_listening(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        cpus: str | None = None,
        stdout: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``cpus``) and wait until it accepts on 127.0.0.1:port."""
        command = ["taskset", "-c", cpus, *argv] if cpus else list(argv)
        with (
            open(self.directory / f"{name}.stderr", "wb") as err,
            open(stdout or os.devnull, "wb") as out,
        ):
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.directory,
                start_new_session=True,
            )
        self._children.append((name, proc))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.ensure_running(proc)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                return proc
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{name} does not accept on 127.0.0.1:{port} after {START_TIMEOUT:.0f}s:"
                        f"\n{self.stderr_tail(name)}"
                    ) from None
                time.sleep(0.05)

    def ensure_running(self, proc: subprocess.Popen[bytes]) -> None:
        """Raise BenchError (quoting its stderr) if the child has exited."""
        if proc.poll() is not None:
            name = next(name for name, child in self._children if child is proc)
            raise BenchError(
                f"{name} exited with status {proc.returncode}:\n{self.stderr_tail(name)}"
            )

    def stderr_tail(self, name: str, limit: int = 3000) -> str:
        try:
            text = (self.directory / f"{name}.stderr").read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        return text[-limit:].strip() or "(stderr empty)"

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, wait, SIGKILL if needed; a no-op for a child that has already exited."""
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Backend = tuple[str, int]  # (server name, port on 127.0.0.1)

_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{
    worker_connections 10000;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;{extra}
            return 200 "hello {name}\\n";
        }}
    }}
}}
"""


def start_backends(
    procs: Processes, cpus: str | None = None, *, new_session: bool = False
) -> list[Backend]:
    """Start one single-process nginx per server name; each answers ``hello <name>``.

    With ``new_session`` every answer also sets a new application session,
    ``Set-Cookie: JSESSIONID=<32 hex digits>`` (nginx's ``$request_id``), for stick tables.
    """
    nginx = find_tool("nginx")
    extra = '\n            add_header Set-Cookie "JSESSIONID=$request_id";' if new_session else ""
    backends = []
    for name in SERVER_NAMES:
        port = free_port()
        directory = procs.directory / f"nginx-{name}"
        directory.mkdir()
        conf = directory / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(dir=directory, port=port, name=name, extra=extra))
        procs.start_listening(
            f"nginx-{name}", [nginx, "-p", str(directory), "-c", str(conf)], port, cpus=cpus
        )
        backends.append((name, port))
    return backends


@dataclass(frozen=True)
class Proxy:
    """A running proxy under test."""

    name: str  # "haproxy" or "weir"
    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # its access log


def haproxy_config(port: int, backends: Sequence[Backend]) -> str:
    """HAProxy config; it logs to stdout, which the caller points at a file."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{srv}" for name, srv in backends)
    return f"""\
global
    nbthread 1
    maxconn {MAXCONN}
    log stdout format rfc3164 local0

defaults
    mode http
    log global
    option httplog
    timeout connect {CONNECT_TIMEOUT}
    timeout client {CLIENT_TIMEOUT}
    timeout server {SERVER_TIMEOUT}
    timeout http-request {HTTP_REQUEST_TIMEOUT}
    timeout http-keep-alive {KEEP_ALIVE_TIMEOUT}

frontend www
    bind 127.0.0.1:{port}
    default_backend app

backend app
    balance roundrobin
    http-reuse safe
{servers}
"""


def weir_config(port: int, backends: Sequence[Backend], directory: Path) -> str:
    """Weir config (docs/interfaces.md section 2), the same features as haproxy_config."""
    servers = "\n".join(
        f'[[backends.app.servers]]\nname = "{name}"\naddress = "127.0.0.1:{srv}"\ncheck = false\n'
        for name, srv in backends
    )
    log = json.dumps(str(directory / "weir.log"))
    sock = json.dumps(str(directory / "weir.sock"))
    return f"""\
[global]
maxconn = {MAXCONN}
log = {log}
runtime_socket = {sock}
grace = "1s"

[defaults.timeouts]
connect = "{CONNECT_TIMEOUT}"
client = "{CLIENT_TIMEOUT}"
server = "{SERVER_TIMEOUT}"
http_request = "{HTTP_REQUEST_TIMEOUT}"
http_keep_alive = "{KEEP_ALIVE_TIMEOUT}"

[frontends.www]
bind = ["127.0.0.1:{port}"]
default_backend = "app"
forwardfor = false

[backends.app]
balance = "roundrobin"
http_reuse = "safe"

{servers}"""


def start_haproxy(procs: Processes, backends: Sequence[Backend], cpus: str | None = None) -> Proxy:
    haproxy = find_tool("haproxy")
    port = free_port()
    cfg = procs.directory / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, backends))
    log = procs.directory / "haproxy.log"
    proc = procs.start_listening(
        "haproxy", [haproxy, "-db", "-f", str(cfg)], port, cpus=cpus, stdout=log
    )
    return Proxy("haproxy", port, proc, log)


def start_weir(
    procs: Processes, weir: str, backends: Sequence[Backend], cpus: str | None = None
) -> Proxy:
    port = free_port()
    cfg = procs.directory / "weir.toml"
    cfg.write_text(weir_config(port, backends, procs.directory))
    proc = procs.start_listening("weir", [weir, "run", "-c", str(cfg)], port, cpus=cpus)
    return Proxy("weir", port, proc, procs.directory / "weir.log")


def start_proxy(
    name: str, procs: Processes, weir: str, backends: Sequence[Backend], cpus: str | None = None
) -> Proxy:
    """Start the proxy called ``name`` ("haproxy" or "weir") in front of ``backends``."""
    if name == "haproxy":
        return start_haproxy(procs, backends, cpus)
    return start_weir(procs, weir, backends, cpus)


def verify(proxy: Proxy) -> int:
    """A few GETs over one keep-alive connection: each must be nginx's 200, and both servers
    must answer. Returns the number of requests made."""
    seen = set()
    requests = 2 * len(SERVER_NAMES)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        for _ in range(requests):
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not body.startswith(b"hello "):
                raise BenchError(
                    f"{proxy.name}: GET / answered {response.status} {body[:100]!r}; "
                    "expected 200 'hello <server>' from nginx"
                )
            seen.add(body[6:].strip().decode(errors="replace"))
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{proxy.name}: GET / via 127.0.0.1:{proxy.port} failed: {exc!r}") from exc
    finally:
        conn.close()
    if seen != set(SERVER_NAMES):
        raise BenchError(
            f"{proxy.name}: round robin reached only {sorted(seen)} of {list(SERVER_NAMES)}"
        )
    return requests


def check_log(proxy: Proxy, requests: int = 1) -> None:
    """Logging must really have been on: the proxy's access log has at least one line per
    request it answered (``requests``, as counted by the client)."""
    lines = 0
    if proxy.log.exists():
        with open(proxy.log, "rb") as log:
            while chunk := log.read(1 << 20):
                lines += chunk.count(b"\n")
    if lines < requests:
        raise BenchError(
            f"{proxy.name}'s access log {proxy.log} has {lines} lines for {requests} requests: "
            "logging must be on, one line per request, for a fair comparison"
        )


def _family(pid: int) -> list[int]:
    """``pid`` and all its descendants (a proxy might run worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    family, todo = [], [pid]
    while todo:
        current = todo.pop()
        family.append(current)
        todo.extend(children.get(current, []))
    return family


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` plus all its descendants, in bytes."""
    total = 0
    for member in _family(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` (all threads) plus its descendants."""
    ticks = 0
    for member in _family(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / os.sysconf("SC_CLK_TCK")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM behave like Ctrl-C, so that finally blocks stop our children."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def run_main(body: Callable[[], None]) -> int:
    """Run a benchmark body; returns the exit status: 0 done, 2 could not run (message on
    stderr), 130 interrupted (Ctrl-C or SIGTERM, after cleaning up)."""
    sigterm_as_interrupt()
    try:
        body()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0
