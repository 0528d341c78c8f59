"""The runtime API's Unix socket (interfaces.md §3), around the sans-io session.

The socket file is created with ``global.runtime_socket_mode`` (0600 by
default: only Weir's user may change server states) and the configured owner
and group. A socket file left by a process that died is replaced; one that a
live process still answers on is not: a second Weir on the same socket is
refused (``RuntimeSocketBusy``) instead of silently stealing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import socket
import stat
from typing import TYPE_CHECKING

from appliance.proxy.frontend import Listening
from appliance.runtime.commands import RuntimeCommands
from appliance.runtime.session import PROMPT, CliSession

if TYPE_CHECKING:
    from appliance.proxy.proxy import Proxy

BACKLOG = 128


class RuntimeSocketBusy(Exception):
    """The runtime socket cannot be ours; the message is the one-line reason."""


class RuntimeServer(Listening):
    """Listens on the runtime socket and serves each client with a ``CliSession``."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        config = proxy.config.global_
        self.path = config.runtime_socket
        self.mode = config.runtime_socket_mode
        self.owner = config.runtime_socket_owner
        self.group = config.runtime_socket_group
        self.commands = RuntimeCommands(proxy)
        self.sock: socket.socket | None = None
        self.server: asyncio.AbstractServer | None = None
        self.clients: set[RuntimeClient] = set()
        self._inode: tuple[int, int] | None = None  # the file we created, to remove only it

    def bind(self) -> None:
        """Create the socket file (before the loop runs); ``RuntimeSocketBusy`` if we can't."""
        path = self.path
        self._remove_stale(path)
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise RuntimeSocketBusy(
                    f"cannot create {directory} for the runtime socket: {exc.strerror}"
                ) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # No moment where the file is open to others: create it with no group/other bits.
        umask = os.umask(0o177)
        try:
            sock.bind(path)
            os.chmod(path, self.mode)
            if self.owner or self.group:
                os.chown(path, _uid(self.owner), _gid(self.group))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except (OSError, KeyError) as exc:
            sock.close()
            with contextlib.suppress(OSError):
                if self._ours_on_disk(path, None):
                    os.unlink(path)
            reason = exc.strerror if isinstance(exc, OSError) else f"unknown user or group {exc}"
            raise RuntimeSocketBusy(f"cannot create the runtime socket {path}: {reason}") from None
        finally:
            os.umask(umask)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self.sock = sock

    @staticmethod
    def _remove_stale(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeSocketBusy(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # nobody listens: a stale file from a process that died
        except OSError as exc:
            raise RuntimeSocketBusy(f"cannot check the runtime socket {path}: {exc}") from None
        else:
            raise RuntimeSocketBusy(f"another weir is running on {path}")
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _ours_on_disk(self, path: str, inode: tuple[int, int] | None) -> bool:
        st = os.lstat(path)
        return stat.S_ISSOCK(st.st_mode) and (inode is None or (st.st_dev, st.st_ino) == inode)

    async def start(self) -> None:
        if self.sock is None:
            return
        self.server = await self.proxy.loop.create_unix_server(
            lambda: RuntimeClient(self), sock=self.sock
        )

    def close(self) -> None:
        """Stop listening, drop the clients and remove the socket file (if still ours)."""
        self.close_listening()
        for client in list(self.clients):
            client.close()
        if self._inode is not None:
            with contextlib.suppress(OSError):
                if self._ours_on_disk(self.path, self._inode):
                    os.unlink(self.path)
            self._inode = None


class RuntimeClient(asyncio.Protocol):
    """One client of the runtime socket."""

    def __init__(self, server: RuntimeServer) -> None:
        self.server = server
        self.loop = server.proxy.loop
        self.session = CliSession(server.commands.answer)
        self.quick_answer = server.commands.quick_answer
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.active = 0.0  # loop time of the client's last bytes
        self.armed_for = 0.0  # the idle timeout the running timer counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.clients.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.clients.discard(self)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session.interactive and not session.buf and not session.closed:
            # A prompt-mode read that starts a line: a poller's ask (``quick_answer``: one
            # command, answered as the session would, with a fraction of the Python), or else
            # the session's general path.
            text = self.quick_answer(data)
            if text is not None and self.transport is not None:
                self.transport.write(text.encode() + b"\n" + PROMPT)
                self.active = self.loop.time()
                return
        self._send(*session.feed(data))

    def eof_received(self) -> bool:
        self._send(*self.session.eof())
        return False

    def _send(self, data: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if data:
            transport.write(data)
        if close:
            self.close()
        else:
            self._arm()

    def _arm(self) -> None:
        """Note the client's activity; start a timer only if none runs for this timeout.

        Re-arming a timer per command (cancel, then schedule) cost more than the rest of
        the socket path on a busy prompt-mode connection. Instead the one timer, when it
        fires, looks at the last activity and sleeps again for what is left.
        """
        self.active = self.loop.time()
        timeout = self.session.timeout
        if self.timer is None or timeout != self.armed_for:  # new, or ``set timeout cli``
            if self.timer is not None:
                self.timer.cancel()
            self.armed_for = timeout
            self.timer = self.loop.call_at(self.active + timeout, self._idle)

    def _idle(self) -> None:
        deadline = self.active + self.armed_for
        if self.loop.time() < deadline:
            self.timer = self.loop.call_at(deadline, self._idle)
        else:
            self.timer = None
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _uid(owner: str) -> int:
    if not owner:
        return -1
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group: str) -> int:
    if not group:
        return -1
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
