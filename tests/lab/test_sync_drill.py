"""The Weir <-> Weir takeover drill with stick-table sync (issue 6, "Proof"), repeated.

The pair of tests/lab/sync_pair.py: lb1 (MASTER) and lb2 (BACKUP) each run ``weir run`` and
``weir ha``, the stick table learns the application's session cookie and ``[ha.sync]``
replicates it. In each drill a population of several hundred clients (tests/lab/sessions.py)
goes through the VIP, each starting with a request without a cookie and continuing with the
session the application gave it, while lb1's ``weir run`` and ``weir ha`` are killed with
SIGKILL, at a random moment while clients are still arriving. Drills alternate between two
kinds of moment: a random time, and the instant a randomly chosen new session's answer reaches
its client (the newest entry: the worst case).

**Acknowledged entry**: a session whose ``Set-Cookie`` answer reached its client (from lb1
before or just after the kill, or from lb2 after the takeover). The claim checked, for every
acknowledged entry of every drill, with zero tolerance:

- every answer to a request carrying the session, through lb1 before the kill and through lb2
  after it, came from the application server that created the session, and that server knew
  the session;
- each client had at least ``CONFIRM`` such answers through lb2 after the takeover;
- lb2's table holds the session with that server's id.

Then lb1 is restored: its ``weir run`` restarts and must learn everything from lb2 (its table
then holds every session acknowledged in every drill so far), then its ``weir ha`` preempts
back. Some sessions of earlier drills are sent through the restored lb1 in the next drill and
must reach their servers too. ``DRILLS`` drills run in one test; each prints one line (``-s``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ha.lab import Lab
from tests.lab.sessions import Plan
from tests.lab.sync_pair import ROOT, SERVER_IDS, SyncPair
from tests.lab.vrrp import VIP, lab_fixture

pytestmark = pytest.mark.lab

DRILLS = 10
CLIENTS = 300  # new sessions per drill
WINDOW = 1.5  # seconds over which they arrive
INTERVAL = 0.4  # seconds between a client's requests
CONFIRM = 2  # answers through lb2 each client needs after the takeover
OLD_SAMPLE = 40  # sessions of earlier drills sent through the restored lb1
EXPOSED_MS = 10.0  # entries acknowledged this close to the kill are reported apart

lab = lab_fixture("sy")


@dataclasses.dataclass
class Outcome:
    """What one drill showed; ``lost`` and ``wrong`` must be empty."""

    acknowledged: dict[str, str]  # session -> server, every session a client holds
    before_kill: int  # acknowledged through lb1 (before the kill or in flight at it)
    after_kill: int  # acknowledged through lb2
    exposed: int  # acknowledged through lb1 at most EXPOSED_MS before the kill, or after it
    newest_ms: float  # the newest lb1 acknowledgement, in ms relative to the kill
    wrong: list[str]  # answers from another server, or from one that did not know the session
    unconfirmed: list[str]  # clients with fewer than CONFIRM answers through lb2
    lost: list[str]  # acknowledged sessions lb2's table does not hold (or with another server)


def analyse(result: dict[str, Any], lb2_table: dict[str, int]) -> Outcome:
    killed = result["killed_at"]
    acknowledged, wrong, unconfirmed, lost = {}, [], [], []
    lb1_acks = []
    for client in result["clients"]:
        session, server = client["session"], client["server"]
        if session is None:
            continue
        acknowledged[session] = server
        if client["acked_via"] == "lb1":
            lb1_acks.append(client["acked_at"] - killed)
        for at, via, answered_by, verdict, with_session in client["answers"]:
            if with_session and (answered_by != server or verdict != "known"):
                wrong.append(
                    f"{session} (created on {server}): {answered_by} {verdict} via {via} "
                    f"at {(at - killed) * 1000:+.1f} ms"
                )
        if client["old"]:  # one answer, through the restored lb1 (or lb2 if the kill came first)
            if not any(a[4] for a in client["answers"]):
                unconfirmed.append(f"{session} (earlier drill): no answer ({client['errors']})")
        else:
            confirmed = sum(1 for a in client["answers"] if a[1] == "lb2" and a[4])
            if confirmed < CONFIRM:
                unconfirmed.append(
                    f"{session}: {confirmed} answers through lb2 ({client['errors']})"
                )
        if lb2_table.get(session) != SERVER_IDS[server]:
            lost.append(
                f"{session} (created on {server} via {client['acked_via'] or 'an earlier drill'}"
                + (
                    f" at {(client['acked_at'] - killed) * 1000:+.2f} ms"
                    if client["acked_at"]
                    else ""
                )
                + f"): lb2 has {lb2_table.get(session)}"
            )
    new = [c for c in result["clients"] if not c["old"] and c["session"] is not None]
    return Outcome(
        acknowledged=acknowledged,
        before_kill=len(lb1_acks),
        after_kill=sum(1 for c in new if c["acked_via"] == "lb2"),
        exposed=sum(1 for t in lb1_acks if t >= -EXPOSED_MS / 1000),
        newest_ms=max(lb1_acks) * 1000 if lb1_acks else float("nan"),
        wrong=wrong,
        unconfirmed=unconfirmed,
        lost=lost,
    )


def run_population(lab: Lab, workdir: Path, plan: Plan) -> dict[str, Any]:
    path = workdir / "plan.json"
    path.write_text(json.dumps(dataclasses.asdict(plan)))
    out = lab.run(
        "client",
        [sys.executable, "-m", "tests.lab.sessions", "clients", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=plan.bound + 30,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_no_acknowledged_session_is_lost_when_the_master_is_killed(lab: Lab, tmp_path: Path):
    started = time.monotonic()
    pair = SyncPair(lab, tmp_path).up()
    lb1, lb2 = pair.nodes["lb1"], pair.nodes["lb2"]
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    everything: dict[str, str] = {}  # every session acknowledged so far -> its server
    lines = [f"sync drill: seed {seed}, {DRILLS} drills of {CLIENTS} new clients"]
    for drill in range(1, DRILLS + 1):
        by_response = drill % 2 == 0
        old = rng.sample(sorted(everything.items()), min(OLD_SAMPLE, len(everything)))
        plan = Plan(
            url_host=VIP,
            port=80,
            clients=CLIENTS,
            window=WINDOW,
            interval=INTERVAL,
            confirm=CONFIRM,
            kill_pids=lb1.pids(),
            kill_at=None if by_response else rng.uniform(0.2, 0.8) * WINDOW,
            kill_after_new=rng.randint(CLIENTS // 5, CLIENTS * 3 // 5) if by_response else None,
            old=[list(item) for item in old],
            seed=rng.randrange(1 << 30),
        )
        result = run_population(lab, tmp_path, plan)
        lb1.reap()
        assert result["killed_at"] is not None, f"drill {drill}: lb1 was never killed"
        pair.wait(pair.taken_over, f"drill {drill}: lb2 MASTER with the VIP")
        outcome = analyse(result, lb2.table())
        kind = "at a new session" if by_response else "at a random time"
        lines.append(
            f"drill {drill:2d} ({kind}): {outcome.before_kill} sessions acknowledged through "
            f"lb1, newest {outcome.newest_ms:+.2f} ms from the kill, {outcome.exposed} within "
            f"{EXPOSED_MS:g} ms; {outcome.after_kill} through lb2; lost {len(outcome.lost)}, "
            f"wrong server {len(outcome.wrong)}"
        )
        print(lines[-1])
        report = "\n".join(lines)
        assert not outcome.lost, f"{report}\nlost:\n" + "\n".join(outcome.lost[:20])
        assert not outcome.wrong, f"{report}\nwrong:\n" + "\n".join(outcome.wrong[:20])
        assert result["finished"] and not outcome.unconfirmed, (
            f"{report}\nnot confirmed through lb2:\n" + "\n".join(outcome.unconfirmed[:20])
        )
        # The kill fell while clients were learning: some sessions before it, some after.
        assert outcome.before_kill > 0 and outcome.after_kill > 0, report
        everything.update(outcome.acknowledged)

        resync_s = pair.restore_lb1()
        table = lb1.table()
        forgotten = [s for s, server in everything.items() if table.get(s) != SERVER_IDS[server]]
        assert not forgotten, (
            f"{report}\nthe restarted lb1 lacks {len(forgotten)} of {len(everything)}: "
            f"{forgotten[:10]}"
        )
        lines.append(f"          lb1 restored: resynced {len(table)} entries in {resync_s:.3f} s")
        print(lines[-1])
    print(f"sync drill: {DRILLS} drills in {time.monotonic() - started:.1f} s")
