"""Writes held until the end of the event-loop iteration, then sent back to back.

One loop iteration handles every connection that became readable: often dozens
of requests from the clients, or of responses from the servers. Sending each
answer the moment it is ready makes the kernel wake the peer (wrk, nginx, a
client's network thread) once per message, and the peer, done with that one
message before the next arrives, goes back to sleep: on a loopback or a VM
every wake-up of a sleeping process on another CPU is an inter-processor
interrupt (in the pinned benchmark, perf put about 13% of Weir's CPU time
there). Sending everything at the end of the iteration instead wakes each
peer about once per burst. It is the same number of ``write`` system calls, a
few microseconds later (docs/design.md, docs/benchmarks.md).

``Outbox`` stands in front of one connection's transport: ``write`` queues the
data and enrolls the outbox in its loop's ``SendQueue``, which sends every
enrolled outbox from a callback scheduled once per iteration (``call_soon``:
it runs after the iteration's I/O callbacks). Everything that must not be
overtaken sends what is queued first: ``close`` sends, then closes; ``abort``
drops the queue, as it drops the transport's own buffer. The other transport
methods the proxy uses are passed through. A head (``SendQueue.enroll_head``)
is called once before anything held in the iteration is sent, ``close``
included: the sync service writes the iteration's learned entries to its peers
there, ahead of the responses they were learned from.

An iteration can handle hundreds of ready connections; so that the first
answers do not wait for all of them, once ``HOLD_MAX`` outboxes are enrolled
they are sent at once, in the middle of the iteration.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from typing import Any

HOLD_MAX = 64
"""Outboxes held at most: a burst is this many messages (about 1 ms of work) at the most."""


class SendQueue:
    """The outboxes of one event loop with data to send in this iteration."""

    __slots__ = ("_head", "_loop", "_outboxes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the registry below maps each loop to its queue and must not keep it alive.
        self._loop = weakref.ref(loop)
        self._outboxes: list[Outbox] = []
        self._head: Callable[[], None] | None = None

    def enroll_head(self, send: Callable[[], None]) -> None:
        """Have ``send`` called before anything held in this iteration is sent, also before what
        an outbox's ``close`` sends at once. The sync service (ha/sync) uses it: a learned entry
        must reach the peers before the response it was learned from reaches the client."""
        if not self._outboxes and self._head is None:
            self._loop().call_soon(self.send_all)
        self._head = send

    def send_head(self) -> None:
        """Call what ``enroll_head`` enrolled, now (once)."""
        head = self._head
        if head is not None:
            self._head = None
            try:
                head()
            except Exception as exc:  # it must not strand the outboxes' data
                self._loop().call_exception_handler(
                    {"message": "sending ahead of the held data failed", "exception": exc}
                )

    def enroll(self, outbox: Outbox) -> None:
        outboxes = self._outboxes
        if not outboxes:
            if self._head is None:
                self._loop().call_soon(self.send_all)
        elif len(outboxes) >= HOLD_MAX:
            self.send_all()  # the send scheduled for the end of the iteration stays due
            outboxes = self._outboxes
        outboxes.append(outbox)

    def send_all(self) -> None:
        """Send what every enrolled outbox holds (the end of a loop iteration)."""
        if self._head is not None:
            self.send_head()
        outboxes = self._outboxes
        if not outboxes:
            return
        self._outboxes = []
        for outbox in outboxes:  # in line, no method per outbox: this runs for every message
            held = outbox._held
            if held is None:
                continue  # closed (sent) or aborted (dropped) since
            outbox._held = None
            transport = outbox.transport
            try:
                if transport.is_closing():
                    continue  # the peer is gone: nothing to deliver
                if len(held) == 1:
                    transport.write(held[0])
                else:
                    transport.writelines(held)
            except Exception as exc:  # one broken transport must not strand the others' data
                self._loop().call_exception_handler(
                    {"message": "sending held data failed", "exception": exc}
                )


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SendQueue] = (
    weakref.WeakKeyDictionary()
)


def send_queue(loop: asyncio.AbstractEventLoop) -> SendQueue:
    """The send queue of ``loop`` (one per loop, made on first use)."""
    queue = _QUEUES.get(loop)
    if queue is None:
        queue = _QUEUES[loop] = SendQueue(loop)
    return queue


class Outbox:
    """One connection's transport, with writes sent at the end of the loop iteration."""

    __slots__ = ("_held", "_queue", "transport")

    def __init__(self, transport: asyncio.Transport, queue: SendQueue) -> None:
        self.transport = transport
        self._queue = queue
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            queue = self._queue
            outboxes = queue._outboxes
            if 0 < len(outboxes) < HOLD_MAX:  # SendQueue.enroll, inlined for the usual case
                outboxes.append(self)
            else:
                queue.enroll(self)
        else:
            held.append(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for data in chunks:
            self.write(data)

    def close(self) -> None:
        """Send what is held, then close (the transport sends its own buffer first)."""
        if self._queue._head is not None:
            self._queue.send_head()  # what must precede this connection's last data
        held = self._held
        transport = self.transport
        if held is not None:
            self._held = None
            if not transport.is_closing():
                transport.writelines(held)
        transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)
