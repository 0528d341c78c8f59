"""Outbox: writes wait for the end of the loop iteration, in order, and never get lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from appliance.proxy.outbox import HOLD_MAX, Outbox, send_queue

pytestmark = pytest.mark.unit


class RecordingTransport(asyncio.Transport):
    """Records each call the outbox makes on it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.calls.append(("write", data))

    def writelines(self, chunks: list[bytes]) -> None:
        assert not self.closing, "write after close"
        self.calls.append(("writelines", list(chunks)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_writes_are_sent_together_after_the_iteration(loop) -> None:
    a, b = RecordingTransport(), RecordingTransport()
    out_a, out_b = Outbox(a, send_queue(loop)), Outbox(b, send_queue(loop))

    def callbacks() -> None:  # what the I/O callbacks of one iteration do
        out_a.write(b"head")
        out_b.write(b"request")
        out_a.write(b"body")
        assert a.calls == b.calls == []  # nothing sent while the iteration runs

    loop.call_soon(callbacks)
    one_iteration(loop)
    assert a.calls == [("writelines", [b"head", b"body"])]
    assert b.calls == [("write", b"request")]
    out_a.write(b"next")
    one_iteration(loop)
    assert a.calls[-1] == ("write", b"next")  # the next iteration sends again


def test_a_huge_iteration_sends_in_bursts_of_hold_max(loop) -> None:
    transports = [RecordingTransport() for _ in range(HOLD_MAX + 1)]
    outboxes = [Outbox(t, send_queue(loop)) for t in transports]

    def callbacks() -> None:
        for outbox in outboxes[:HOLD_MAX]:
            outbox.write(b"early")
        assert all(t.calls == [] for t in transports)
        outboxes[-1].write(b"late")  # one too many: the first HOLD_MAX go now
        assert all(t.calls == [("write", b"early")] for t in transports[:-1])
        assert transports[-1].calls == []

    loop.call_soon(callbacks)
    one_iteration(loop)
    assert transports[-1].calls == [("write", b"late")]


def test_close_sends_what_is_held_first(loop) -> None:
    t = RecordingTransport()
    out = Outbox(t, send_queue(loop))
    out.write(b"error page")
    out.close()
    assert t.calls == [("writelines", [b"error page"]), ("close", None)]
    one_iteration(loop)  # the scheduled send finds nothing left, writes nothing more
    assert t.calls == [("writelines", [b"error page"]), ("close", None)]


def test_abort_drops_what_is_held(loop) -> None:
    t = RecordingTransport()
    out = Outbox(t, send_queue(loop))
    out.write(b"request head")
    out.abort()
    one_iteration(loop)
    assert t.calls == [("abort", None)]


def test_data_for_a_peer_that_went_away_is_dropped(loop) -> None:
    gone, alive = RecordingTransport(), RecordingTransport()
    queue = send_queue(loop)
    out_gone, out_alive = Outbox(gone, queue), Outbox(alive, queue)
    out_gone.write(b"late")
    out_alive.write(b"answer")
    gone.closing = True  # connection lost before the end of the iteration
    one_iteration(loop)
    assert gone.calls == []
    assert alive.calls == [("write", b"answer")]


def test_one_failing_transport_does_not_strand_the_others(loop) -> None:
    class Broken(RecordingTransport):
        def write(self, data: bytes) -> None:
            raise RuntimeError("broken")

    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    broken, fine = Broken(), RecordingTransport()
    queue = send_queue(loop)
    Outbox(broken, queue).write(b"x")
    Outbox(fine, queue).write(b"y")
    one_iteration(loop)
    assert fine.calls == [("write", b"y")]
    assert [type(e["exception"]) for e in errors] == [RuntimeError]


def test_the_head_runs_before_anything_held_is_sent_and_once(loop) -> None:
    t = RecordingTransport()
    queue = send_queue(loop)
    out = Outbox(t, queue)
    order: list[str] = []

    def head() -> None:
        order.append(f"head after {len(t.calls)} sends")

    def callbacks() -> None:
        out.write(b"held before")  # already enrolled when the head comes
        queue.enroll_head(head)
        queue.enroll_head(head)  # a second change of the iteration: still one call
        out.write(b"held after")

    loop.call_soon(callbacks)
    one_iteration(loop)
    assert order == ["head after 0 sends"]
    assert t.calls == [("writelines", [b"held before", b"held after"])]
    one_iteration(loop)
    assert order == ["head after 0 sends"]  # not called again without a new enroll


def test_a_head_alone_is_called_at_the_end_of_the_iteration(loop) -> None:
    called: list[bool] = []
    send_queue(loop).enroll_head(lambda: called.append(True))
    assert called == []
    one_iteration(loop)
    assert called == [True]


def test_close_and_a_burst_call_the_head_first(loop) -> None:
    queue = send_queue(loop)
    order: list[str] = []

    class Watching(RecordingTransport):
        def writelines(self, chunks: list[bytes]) -> None:
            order.append("data")
            super().writelines(chunks)

        def write(self, data: bytes) -> None:
            order.append("data")
            super().write(data)

    closing = Outbox(Watching(), queue)
    closing.write(b"last answer")
    queue.enroll_head(lambda: order.append("head"))
    closing.close()
    assert order == ["head", "data"]
    order.clear()
    outboxes = [Outbox(Watching(), queue) for _ in range(HOLD_MAX + 1)]

    def callbacks() -> None:
        queue.enroll_head(lambda: order.append("head"))
        for outbox in outboxes:
            outbox.write(b"x")  # the last one sends the first HOLD_MAX at once
        assert order == ["head", *["data"] * HOLD_MAX]

    loop.call_soon(callbacks)
    one_iteration(loop)
    assert order == ["head", *["data"] * (HOLD_MAX + 1)]


def test_a_failing_head_does_not_strand_the_held_data(loop) -> None:
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    t = RecordingTransport()
    queue = send_queue(loop)
    Outbox(t, queue).write(b"answer")

    def head() -> None:
        raise RuntimeError("push failed")

    queue.enroll_head(head)
    one_iteration(loop)
    assert t.calls == [("write", b"answer")]
    assert [type(e["exception"]) for e in errors] == [RuntimeError]


def test_each_loop_has_its_own_queue(loop) -> None:
    other = uvloop.new_event_loop()
    try:
        assert send_queue(loop) is send_queue(loop)
        assert send_queue(other) is not send_queue(loop)
    finally:
        other.close()
