"""The two programs of the sync drill (tests/lab/test_sync_drill.py) that run inside the lab.

``python -m tests.lab.sessions serve NAME PORT`` is an application server: it hands a new
client a session (``Set-Cookie: JSESSIONID=<32 hex digits>; path=/``, body ``NAME new``) and
keeps it in memory, as an application server keeps a user's context; a request with a session
it issued is answered ``NAME known``, one with a session it never issued ``NAME foreign`` (the
user lost his context: what persistence exists to prevent).

``python -m tests.lab.sessions clients PLAN.json`` is the client population. Each client has
its own keep-alive connection to the VIP; it sends its first request without a cookie, notes the
session the answer sets and the server that answered, and then sends a request with that cookie
every ``interval`` seconds. Clients start at random moments over ``window`` seconds. At the
moment the plan says (a time, or the arrival of the N-th new session at the client: the worst
case, since that entry is the newest), the program kills the plan's pids with SIGKILL itself, so
that nothing sits between the moment and the kill. A connection opened before the kill can only
reach the master (lb1), one opened after it only the backup (lb2: the master's proxy is dead),
so every answer is attributed to the node that gave it. A client is done once it has had
``confirm`` answers with its session through lb2; the program then prints one JSON document
(see :func:`report`) and exits. Every wait is bounded; times are CLOCK_MONOTONIC, which the
test process shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

SESSION = re.compile(rb"^set-cookie:\s*JSESSIONID=([0-9a-f]{32})", re.IGNORECASE | re.MULTILINE)
CONNECT_TIMEOUT = 0.5
ANSWER_TIMEOUT = 2.0
RETRY = (0.05, 0.15)  # seconds to wait after a failed request (uniform)
HEAD_LIMIT = 16384


# -- the application server ------------------------------------------------------------------


class AppServer(asyncio.Protocol):
    """HTTP/1.1 keep-alive, GET only, no bodies: enough for a browser-like client."""

    def __init__(self, name: str, sessions: set[bytes]) -> None:
        self.name = name.encode()
        self.sessions = sessions
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.answer(head)
        if len(self.buffer) > HEAD_LIMIT:
            self.transport.close()

    def answer(self, head: bytes) -> None:
        cookie = re.search(rb"^cookie:.*?\bJSESSIONID=([0-9a-f]+)", head, re.I | re.M)
        extra = b""
        if cookie is None:
            session = secrets.token_hex(16).encode()
            self.sessions.add(session)
            extra = b"Set-Cookie: JSESSIONID=" + session + b"; path=/\r\n"
            body = self.name + b" new\n"
        elif cookie.group(1) in self.sessions:
            body = self.name + b" known\n"
        else:
            body = self.name + b" foreign\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + extra
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


async def serve(name: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    sessions: set[bytes] = set()
    server = await loop.create_server(
        lambda: AppServer(name, sessions), "0.0.0.0", port, backlog=1024
    )
    await server.serve_forever()


# -- the client population -------------------------------------------------------------------


@dataclass
class Plan:
    """What the population does; written by the test as JSON."""

    url_host: str  # the VIP
    port: int
    clients: int
    window: float  # seconds over which the clients start
    interval: float  # seconds between a client's requests
    confirm: int  # answers through lb2 each client needs
    kill_pids: list[int]
    kill_at: float | None = None  # seconds after the start, or
    kill_after_new: int | None = None  # when the client has this many new sessions
    bound: float = 30.0  # seconds the whole run may take at most
    old: list[list[str]] = field(default_factory=list)  # [session, server] from earlier drills
    seed: int = 0


class Population:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.start = time.monotonic()
        self.killed_at: float | None = None
        self.new_sessions = 0
        self.all_done = asyncio.Event()
        self.clients: list[Client] = []

    def kill(self) -> None:
        if self.killed_at is not None:
            return
        self.killed_at = time.monotonic()
        for pid in self.plan.kill_pids:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)

    def client_finished(self) -> None:
        if all(c.done for c in self.clients):
            self.all_done.set()


@dataclass
class Answer:
    at: float  # when the answer arrived
    via: str  # "lb1" or "lb2"
    server: str  # the application server that answered
    verdict: str  # new, known or foreign
    session: str | None  # the session sent (None for a first request)


class Client:
    def __init__(self, population: Population, index: int, start: float, old: list[str]) -> None:
        self.population = population
        self.index = index
        self.start = start
        self.session: str | None = old[0] if old else None
        self.server: str | None = old[1] if old else None
        self.old = bool(old)
        self.acked_at: float | None = None  # when the Set-Cookie answer arrived
        self.acked_via: str | None = None
        self.answers: list[Answer] = []
        self.errors: dict[str, int] = {}
        self.done = False
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened_at = 0.0

    def via(self) -> str:
        killed = self.population.killed_at
        return "lb1" if killed is None or self.opened_at < killed else "lb2"

    def finished(self) -> bool:
        confirmations = sum(1 for a in self.answers if a.via == "lb2" and a.session is not None)
        need = 1 if self.old else self.population.plan.confirm
        return self.population.killed_at is not None and confirmations >= need

    async def run(self) -> None:
        plan = self.population.plan
        await asyncio.sleep(self.start)
        while not self.finished():
            try:
                answer = await asyncio.wait_for(self.request(), ANSWER_TIMEOUT)
            except (OSError, TimeoutError, ValueError, EOFError) as exc:
                kind = type(exc).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                self.close()
                await asyncio.sleep(random.uniform(*RETRY))
                continue
            self.answers.append(answer)
            if self.old and self.population.killed_at is None and answer.session is not None:
                # Old sessions only need one answer from the restored master, before the kill.
                break
            await asyncio.sleep(plan.interval)
        self.close()
        self.done = True
        self.population.client_finished()

    async def request(self) -> Answer:
        plan = self.population.plan
        if self.writer is None:
            self.opened_at = time.monotonic()
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(plan.url_host, plan.port), CONNECT_TIMEOUT
            )
        assert self.reader is not None
        cookie = f"Cookie: JSESSIONID={self.session}\r\n" if self.session else ""
        self.writer.write(f"GET /app HTTP/1.1\r\nHost: www\r\n{cookie}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1:2]
        length = re.search(rb"^content-length:\s*(\d+)", head, re.I | re.M)
        if status != [b"200"] or length is None:
            raise ValueError(f"answer {head[:40]!r}")
        body = (await self.reader.readexactly(int(length.group(1)))).decode().split()
        now = time.monotonic()
        via = self.via()
        sent = self.session
        if sent is None:
            found = SESSION.search(head)
            if found is None:
                raise ValueError("a first answer without a session cookie")
            self.session, self.server = found.group(1).decode(), body[0]
            self.acked_at, self.acked_via = now, via
            self.population.new_sessions += 1
            if self.population.new_sessions == plan.kill_after_new:
                self.population.kill()
        return Answer(now, via, body[0], body[1], sent)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "old": self.old,
            "session": self.session,
            "server": self.server,
            "acked_at": self.acked_at,
            "acked_via": self.acked_via,
            "answers": [
                [a.at, a.via, a.server, a.verdict, a.session is not None] for a in self.answers
            ],
            "errors": self.errors,
            "done": self.done,
        }


async def population(plan: Plan) -> dict[str, Any]:
    random.seed(plan.seed)
    pop = Population(plan)
    for index, old in enumerate(plan.old):
        pop.clients.append(Client(pop, index, 0.0, old))
    for index in range(plan.clients):
        start = random.uniform(0.0, plan.window)
        pop.clients.append(Client(pop, len(plan.old) + index, start, []))
    loop = asyncio.get_running_loop()
    if plan.kill_at is not None:
        loop.call_later(plan.kill_at, pop.kill)
    tasks = [asyncio.ensure_future(c.run()) for c in pop.clients]
    with contextlib.suppress(TimeoutError):  # the report says who did not finish
        await asyncio.wait_for(pop.all_done.wait(), plan.bound)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return report(pop)


def report(pop: Population) -> dict[str, Any]:
    """``start`` and ``killed_at`` (monotonic seconds; None if no kill happened), ``finished``
    (every client done within the bound) and one entry per client (:meth:`Client.report`):
    ``answers`` are ``[time, via, server, verdict, with_session]``."""
    return {
        "start": pop.start,
        "killed_at": pop.killed_at,
        "finished": pop.all_done.is_set(),
        "clients": [c.report() for c in pop.clients],
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 3:
        asyncio.run(serve(argv[1], int(argv[2])))
        return 0
    if argv[:1] == ["clients"] and len(argv) == 2:
        with open(argv[1]) as f:
            plan = Plan(**json.load(f))
        print(json.dumps(asyncio.run(population(plan))))
        return 0
    print(
        "usage: python -m tests.lab.sessions serve NAME PORT | clients PLAN.json", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
