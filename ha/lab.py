"""The two-node network-namespace lab (``weir lab``, docs/testing.md "Lab").

Five hosts, each in its own network namespace, hang off one bridge that lives in a sixth
namespace, so the host's own network stays untouched::

    <name>-client  198.18.0.2/24   eth0 ──┐
    <name>-lb1     198.18.0.11/24  eth0 ──┤
    <name>-lb2     198.18.0.12/24  eth0 ──┼── br0 in <name>-net (ports v-client, v-lb1, ...)
    <name>-web1    198.18.0.21/24  eth0 ──┤
    <name>-web2    198.18.0.22/24  eth0 ──┘

198.18.0.100-198.18.0.199 is reserved for VRRP virtual addresses (not configured here).
The addresses are in the RFC 2544 benchmarking range; no namespace gets a default route.

Plain ``ip`` commands through :mod:`subprocess`, no pytest: the tests' fixtures and the
``weir lab`` command both use this module. A JSON state file (``/run/weir-lab/<name>.json``
by default) records what ``up()`` created, so ``weir lab down`` in another process can
remove it. Root is required.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SUBNET = ipaddress.ip_network("198.18.0.0/24")
PREFIXLEN = SUBNET.prefixlen
HOSTS: dict[str, str] = {
    "client": "198.18.0.2",
    "lb1": "198.18.0.11",
    "lb2": "198.18.0.12",
    "web1": "198.18.0.21",
    "web2": "198.18.0.22",
}
VIP_RANGE = ("198.18.0.100", "198.18.0.199")  # reserved for VRRP, never configured here
HOST_IF = "eth0"  # the host's end of its veth, inside the host's namespace
BRIDGE = "br0"  # inside <name>-net
STATE_DIR = Path("/run/weir-lab")
DEFAULT_PREFIX = "weir"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class LabError(Exception):
    """The lab cannot be built or used (not root, no ``ip``, a command failed)."""


def bridge_port(host: str) -> str:
    """Name of the bridge-side veth of ``host`` (in the net namespace), at most 15 chars."""
    return f"v-{host}"


def check_environment() -> None:
    """Raise :class:`LabError` with a one-line reason if the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabError("needs root (it creates network namespaces); run it as root")
    if shutil.which("ip") is None:
        raise LabError("the `ip` command is missing (Debian package iproute2)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise LabError(f"`ip netns` is unavailable: {probe.stderr.strip()}")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def existing_namespaces() -> set[str]:
    proc = _ip("-j", "netns", "list", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return set()
    return {entry["name"] for entry in json.loads(proc.stdout)}


def _ns_json(ns: str, *args: str) -> list[dict[str, Any]]:
    proc = _ip("-j", "-n", ns, *args, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


class Lab:
    """One lab instance; see the module docstring for the topology.

    ``Lab()`` picks a unique name (``weir-<random>``), ``Lab("vrrp")`` gives
    ``vrrp-<random>``: parallel runs never collide. ``Lab("P", unique=False)`` uses ``P``
    as is, as ``weir lab --prefix P`` does, so another process can find it again.
    """

    def __init__(
        self,
        prefix: str | None = None,
        *,
        unique: bool = True,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        base = prefix or DEFAULT_PREFIX
        name = f"{base}-{secrets.token_hex(3)}" if unique else base
        if not _NAME_RE.match(name):
            raise LabError(f"bad lab name {name!r}: letters, digits, '_.-', at most 40 chars")
        self.name = name
        self.state_path = Path(state_path) if state_path else STATE_DIR / f"{name}.json"
        self._procs: list[subprocess.Popen[Any]] = []

    # names -------------------------------------------------------------------------------

    @property
    def net_ns(self) -> str:
        return f"{self.name}-net"

    def ns(self, host: str) -> str:
        """The namespace of ``host`` (``client``, ``lb1``, ``lb2``, ``web1``, ``web2``)."""
        if host not in HOSTS:
            raise LabError(f"unknown lab host {host!r} (one of {', '.join(HOSTS)})")
        return f"{self.name}-{host}"

    def ip_of(self, host: str) -> str:
        self.ns(host)
        return HOSTS[host]

    @property
    def namespaces(self) -> list[str]:
        return [self.net_ns, *(self.ns(h) for h in HOSTS)]

    # life cycle ---------------------------------------------------------------------------

    def up(self) -> Lab:
        """Create the namespaces, bridge, veths and addresses (after removing leftovers)."""
        check_environment()
        self._remove_namespaces()  # a crashed earlier run with the same name
        self._write_state()  # first, so that a crash half-way is still cleaned up
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        net = self.net_ns
        _ip("netns", "add", net)
        _ip("-n", net, "link", "set", "lo", "up")
        _ip("-n", net, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0")
        _ip("-n", net, "link", "set", BRIDGE, "up")
        for host, addr in HOSTS.items():
            ns = self.ns(host)
            port = bridge_port(host)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            peer = ("peer", "name", HOST_IF, "netns", ns)
            _ip("-n", net, "link", "add", port, "type", "veth", *peer)
            _ip("-n", net, "link", "set", port, "master", BRIDGE)
            _ip("-n", net, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/{PREFIXLEN}", "dev", HOST_IF)
            _ip("-n", ns, "link", "set", HOST_IF, "up")

    def down(self) -> None:
        """Remove everything this lab (or a crashed run with the same name) created.

        Idempotent. Stops the processes started with :meth:`popen` and any other process
        still inside the lab's namespaces, deletes the namespaces (which deletes the veths
        and the bridge with them) and the state file.
        """
        for proc in self._procs:
            _stop(proc)
        self._procs.clear()
        self._remove_namespaces()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def _remove_namespaces(self) -> None:
        present = existing_namespaces()
        mine = [ns for ns in self.namespaces if ns in present]
        for ns in mine:
            _kill_pids(ns)
        for ns in mine:
            _ip("netns", "delete", ns, check=False)

    def _write_state(self) -> None:
        state = {
            "name": self.name,
            "net_namespace": self.net_ns,
            "bridge": BRIDGE,
            "hosts": {
                h: {"namespace": self.ns(h), "interface": HOST_IF, "address": f"{a}/{PREFIXLEN}"}
                for h, a in HOSTS.items()
            },
            "vip_range": list(VIP_RANGE),
            "created": time.time(),
            "pid": os.getpid(),
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)

    @classmethod
    def from_state(cls, path: str | os.PathLike[str]) -> Lab:
        """The lab described by a state file written by :meth:`up` (in any process)."""
        data = json.loads(Path(path).read_text())
        return cls(data["name"], unique=False, state_path=path)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # inspection ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What exists now: per namespace its interfaces (state, addresses) and routes."""
        present = existing_namespaces()
        out: dict[str, Any] = {
            "name": self.name,
            "state_file": str(self.state_path) if self.state_path.exists() else None,
            "up": all(ns in present for ns in self.namespaces),
            "namespaces": {},
        }
        for ns in self.namespaces:
            entry: dict[str, Any] = {"exists": ns in present, "interfaces": [], "routes": []}
            if ns in present:
                for link in _ns_json(ns, "addr", "show"):
                    entry["interfaces"].append(
                        {
                            "name": link.get("ifname"),
                            "state": link.get("operstate"),
                            "admin_up": "UP" in link.get("flags", []),
                            "master": link.get("master"),
                            "addresses": [
                                f"{a['local']}/{a['prefixlen']}"
                                for a in link.get("addr_info", [])
                                if a.get("family") == "inet"
                            ],
                        }
                    )
                entry["routes"] = [r.get("dst") for r in _ns_json(ns, "route", "show")]
            out["namespaces"][ns] = entry
        return out

    # running things inside ----------------------------------------------------------------

    def _argv(self, host: str, argv: list[str]) -> list[str]:
        ns = self.net_ns if host == "net" else self.ns(host)
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside ``host``'s namespace (``timeout`` defaults to 30 s)."""
        kwargs.setdefault("timeout", 30)
        return subprocess.run(self._argv(host, argv), **kwargs)

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside ``host``'s namespace; :meth:`down` stops it."""
        proc = subprocess.Popen(self._argv(host, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def ping(self, src: str, dst_ip: str, timeout: float = 1.0) -> bool:
        """One ICMP echo from ``src`` to ``dst_ip``; True if answered within ``timeout``.

        Uses ``ping -c1`` when installed (Debian iputils-ping), a raw socket otherwise.
        """
        if shutil.which("ping"):
            argv = ["ping", "-n", "-q", "-c1", f"-W{max(1, round(timeout))}", dst_ip]
        else:
            argv = [sys.executable, "-c", _PING_SCRIPT, dst_ip, str(timeout)]
        proc = self.run(src, argv, capture_output=True, timeout=timeout + 10)
        return proc.returncode == 0

    # drills -------------------------------------------------------------------------------

    def link_down(self, host: str, *, keep_carrier: bool = False) -> None:
        """Cut ``host`` off the bridge.

        By default its bridge-side veth goes down, so the host sees NO-CARRIER. With
        ``keep_carrier`` the port is only detached from the bridge: the host's link stays
        up but nothing gets through (a silent partition).
        """
        self.ns(host)  # validates the name
        port = bridge_port(host)
        if keep_carrier:
            _ip("-n", self.net_ns, "link", "set", port, "nomaster")
        else:
            _ip("-n", self.net_ns, "link", "set", port, "down")

    def link_up(self, host: str) -> None:
        """Undo :meth:`link_down` (either kind)."""
        self.ns(host)  # validates the name
        port = bridge_port(host)
        _ip("-n", self.net_ns, "link", "set", port, "master", BRIDGE)
        _ip("-n", self.net_ns, "link", "set", port, "up")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=3)


def _kill_pids(ns: str) -> None:
    """Kill the processes left inside one of the lab's own namespaces (by pid)."""
    proc = _ip("netns", "pids", ns, check=False)
    pids = [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        if pids:
            time.sleep(0.02)


_PING_SCRIPT = r"""
import os, socket, struct, sys, time
dst, limit = sys.argv[1], float(sys.argv[2])
def csum(b):
    b += b"\0" * (len(b) % 2)
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    n = (n >> 16) + (n & 0xFFFF)
    n += n >> 16
    return ~n & 0xFFFF
ident = os.getpid() & 0xFFFF
pkt = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"weir-lab"
pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(pkt, (dst, 0))
end = time.monotonic() + limit
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except OSError:
        break
    h = (data[0] & 15) * 4
    if addr[0] == dst and data[h] == 0 and struct.unpack("!H", data[h + 4:h + 6])[0] == ident:
        sys.exit(0)
sys.exit(1)
"""


# the ``weir lab`` command --------------------------------------------------------------------


def _state_lab(prefix: str) -> Lab:
    path = STATE_DIR / f"{prefix}.json"
    return Lab.from_state(path) if path.exists() else Lab(prefix, unique=False)


def run_command(action: str, prefix: str | None, as_json: bool = False) -> int:
    """``weir lab up|down|status [--prefix P]``; the lab is named P (default ``weir``)."""
    try:
        check_environment()
        lab = _state_lab(prefix or DEFAULT_PREFIX)
        if action == "up":
            lab.up()
            _print_status(lab.status(), as_json)
            return 0
        if action == "down":
            lab.down()
            print(f"lab {lab.name}: removed")
            return 0
        status = lab.status()
        _print_status(status, as_json)
        return 0 if status["up"] else 1
    except LabError as exc:
        print(f"weir lab: {exc}", file=sys.stderr)
        return 2


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    print(f"lab {status['name']}: {'up' if status['up'] else 'not (fully) up'}")
    for ns, entry in status["namespaces"].items():
        if not entry["exists"]:
            print(f"  {ns}: missing")
            continue
        links = ", ".join(
            f"{i['name']} {i['state']}" + (f" {' '.join(i['addresses'])}" if i["addresses"] else "")
            for i in entry["interfaces"]
            if i["name"] != "lo"
        )
        print(f"  {ns}: {links}")
    print(f"  VIPs reserved for VRRP: {VIP_RANGE[0]}-{VIP_RANGE[1]}; run inside with:")
    print(f"  ip netns exec {status['name']}-client ...")
