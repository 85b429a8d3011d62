"""Concurrency on PostgreSQL with 4 real OS processes (issue 4, SPEC §2 and §10).

Each worker (tests/workers/crm_worker.py) is its own Python process with its own
``SqlStore`` on one schema; the workers wait on a "go" file so that they run at the same
moment. Checked afterwards, from the database:

- registrations for the same desks: nobody assigned twice, one registration decision per
  client, no agent over capacity at any time, round robin fair (counts within one, picks in
  ``seq`` order cycling through the agents in id order), least loaded within one;
- claims of the same 50 pooled clients by 4 agents: one winner each, 50 ``True`` in all;
  and 4 claims of one agent with a capacity never take them over it;
- outbox delivery by 4 workers: each notification sent exactly once, none left pending;
- one event file handled by 2 workers at once: each event once in total, the same end state
  as one clean run.
- 2 workers in batches (``handle_many(batch=N)``) taking the same clients' rows in opposite
  orders: no deadlock (each batch takes the routing lock first).

PostgreSQL only: without ``CRMCORE_TEST_PG_URL`` these tests skip (and fail in CI).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import crmcore
from crmcore.notify.notification import Notification
from crmcore.storage.sql import SqlStore
from tests.test_sql_crash import (
    BASE,
    SPEC_RULES,
    assert_same,
    check_atomic,
    distinct_ids,
    finish,
    generate_events,
    iso,
    pg_schemas,
    pg_url,
    snapshot,
    start,
    wait_for_lines,
    wait_ready,
    worker_cmd,
    write_events,
)

__all__ = ["pg_schemas"]  # the fixture, imported for these tests

pytestmark = pytest.mark.postgres

WORKERS = 4

RULES = """\
version: 1
desks:
  - {id: rr, kind: sales}
  - {id: ll, kind: sales}
  - {id: capped, kind: sales}
  - {id: pooled, kind: sales}
  - {id: pooled_cap, kind: sales}
agents:
  - {id: m1, desk: rr, role: manager}
  - {id: r1, desk: rr, manager: m1}
  - {id: r2, desk: rr, manager: m1}
  - {id: r3, desk: rr, manager: m1}
  - {id: r4, desk: rr, manager: m1}
  - {id: r5, desk: rr, manager: m1}
  - {id: l1, desk: ll}
  - {id: l2, desk: ll}
  - {id: l3, desk: ll}
  - {id: k1, desk: capped, capacity: 4}
  - {id: k2, desk: capped, capacity: 4}
  - {id: k3, desk: capped, capacity: 4}
  - {id: p1, desk: pooled}
  - {id: p2, desk: pooled}
  - {id: p3, desk: pooled}
  - {id: p4, desk: pooled}
  - {id: q1, desk: pooled_cap, capacity: 5}
routing:
  registration:
    - {name: rr, when: 'client.source == "rr"', assign: {desk: rr, strategy: round_robin}}
    - {name: ll, when: 'client.source == "ll"', assign: {desk: ll, strategy: least_loaded}}
    - {name: capped, when: 'client.source == "capped"', assign: {desk: capped, strategy: round_robin}}
    - {name: pooled, when: 'client.source == "pooled"', assign: {desk: pooled, strategy: pool}}
    - {name: pooled_cap, when: 'client.source == "pooled_cap"', assign: {desk: pooled_cap, strategy: pool}}
"""


class _Down:
    """A notifier that is always down: every notification stays pending."""

    def send(self, notification: Notification) -> None:
        raise ConnectionError("down")


@pytest.fixture
def db(pg_engine: Engine, pg_schemas: Callable[[], str], tmp_path: Path) -> tuple[str, str, Path]:
    """A fresh schema with crmcore's tables and the test roster; the rules file."""
    url, schema = pg_url(pg_engine), pg_schemas()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    store = SqlStore(url, schema=schema)
    crmcore.Engine(crmcore.load_rules(rules), store=store)  # migrate and seed once, up front
    store.close()
    return url, schema, rules


def run_together(cmds: Sequence[list[str]], go: Path, timeout: float = 120) -> list[dict[str, Any]]:
    """Start the workers, wait until each is set up, release them at once, collect results."""
    procs: list[subprocess.Popen[str]] = [start([*cmd, "--go", str(go)]) for cmd in cmds]
    try:
        for proc in procs:
            wait_ready(proc)
        go.touch()
        return [finish(proc, timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def registration(event_id: str, client_id: str, minute: int, source: str) -> dict[str, Any]:
    return {
        "id": event_id, "type": "client_registered", "client_id": client_id,
        "at": iso(BASE + timedelta(minutes=minute)), "country": "GB", "source": source,
    }


def max_overlap(rows: Sequence[Any]) -> int:
    """The most assignments of one agent open at the same time (ends before starts)."""
    points = []
    for row in rows:
        points.append((row.assigned_at, 1, 1))
        if row.ended_at is not None:
            points.append((row.ended_at, 0, -1))
    points.sort()
    best = current = 0
    for _, _, delta in points:
        current += delta
        best = max(best, current)
    return best


def test_four_processes_register_for_the_same_desks(db: tuple[str, str, Path], tmp_path: Path) -> None:
    url, schema, rules = db
    sources = ["rr"] * 20 + ["ll"] * 15 + ["capped"] * 10  # per worker: 80 rr, 60 ll, 40 capped
    cmds = []
    for w in range(WORKERS):
        events = [
            registration(f"w{w}-e{i:03d}", f"w{w}-c{i:03d}", i, sources[(i * 7 + w) % len(sources)])
            for i in range(len(sources))
        ]
        path = write_events(tmp_path / f"w{w}.jsonl", events)
        cmds.append(worker_cmd("handle", url, schema, rules, "--events", str(path)))
    results = run_together(cmds, tmp_path / "go")
    assert all(r == {"handled": len(sources), "duplicate": 0, "dead_lettered": 0} for r in results)

    store = SqlStore(url, schema=schema)
    check_atomic(store)
    a = store.t.assignments
    with store.engine.connect() as conn:
        rows = list(conn.execute(sa.select(a).order_by(a.c.seq)))
    clients = {c["id"]: c for c in store.clients()}
    assert len(clients) == WORKERS * len(sources)
    decisions = Counter(d.client_id for d in store.decisions() if d.stage == "registration")
    assert set(decisions.values()) == {1} and len(decisions) == len(clients)
    assert max(Counter(r.client_id for r in rows).values()) == 1  # nobody assigned twice
    assert all(r.ended_at is None for r in rows)

    agents = store.agents()
    by_agent: dict[str, list[Any]] = {}
    for r in rows:
        by_agent.setdefault(r.agent_id, []).append(r)
    for agent_id, assigned in by_agent.items():
        capacity = agents[agent_id].capacity
        if capacity is not None:
            assert max_overlap(assigned) <= capacity, f"{agent_id} over capacity"

    rr = [r.agent_id for r in rows if r.desk == "rr"]
    assert len(rr) == 80
    counts = Counter(rr)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert rr == ["r1", "r2", "r3", "r4", "r5"] * 16, "round robin picks do not cycle in id order"

    ll = Counter(r.agent_id for r in rows if r.desk == "ll")
    assert sum(ll.values()) == 60 and set(ll) == {"l1", "l2", "l3"}
    assert max(ll.values()) - min(ll.values()) <= 1

    capped = Counter(r.agent_id for r in rows if r.desk == "capped")
    assert capped == {"k1": 4, "k2": 4, "k3": 4}  # full, never over
    pool = store.pool("capped")
    assert len(pool) == 40 - 12 and {e.reason for e in pool} == {"unassigned"}
    assert store.dead_letters() == []
    store.close()


def _pool_clients(url: str, schema: str, rules: Path, source: str, n: int) -> list[str]:
    store = SqlStore(url, schema=schema)
    engine = crmcore.Engine(crmcore.load_rules(rules), store=store)
    ids = [f"{source}-c{i:03d}" for i in range(n)]
    summary = engine.handle_many(
        registration(f"{source}-e{i:03d}", cid, i, source) for i, cid in enumerate(ids)
    )
    assert summary.handled == n
    assert {r.outcome for r in summary.results} == {"pooled"}
    store.close()
    return ids


def test_four_processes_claim_the_same_pooled_clients(db: tuple[str, str, Path], tmp_path: Path) -> None:
    url, schema, rules = db
    ids = _pool_clients(url, schema, rules, "pooled", 50)
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(ids))
    at = iso(BASE + timedelta(hours=5))
    cmds = [
        worker_cmd("claim", url, schema, rules, "--agent", f"p{w + 1}", "--clients", str(clients),
                   "--seed", str(w), "--at", at)
        for w in range(WORKERS)
    ]
    results = run_together(cmds, tmp_path / "go")
    won = {r["agent"]: r["won"] for r in results}
    assert sum(len(v) for v in won.values()) == 50
    winners = Counter(cid for v in won.values() for cid in v)
    assert set(winners) == set(ids) and set(winners.values()) == {1}
    assert all(r["denied"] == 0 for r in results)

    store = SqlStore(url, schema=schema)
    check_atomic(store)
    for agent, claimed in won.items():
        for cid in claimed:
            assignment = store.assignment(cid)
            assert assignment is not None and assignment.agent_id == agent
            assert len(store.assignments(cid)) == 1
    assert store.pool("pooled") == []
    assert Counter(d.cause for d in store.decisions())["claim"] == 50
    store.close()


def test_concurrent_claims_never_exceed_capacity(db: tuple[str, str, Path], tmp_path: Path) -> None:
    """Four sessions of one agent (capacity 5) claim from the same pool at once."""
    url, schema, rules = db
    ids = _pool_clients(url, schema, rules, "pooled_cap", 30)
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(ids))
    at = iso(BASE + timedelta(hours=5))
    cmds = [
        worker_cmd("claim", url, schema, rules, "--agent", "q1", "--clients", str(clients),
                   "--seed", str(w), "--at", at)
        for w in range(WORKERS)
    ]
    results = run_together(cmds, tmp_path / "go")
    store = SqlStore(url, schema=schema)
    open_now = store.open_clients("q1")
    store.close()
    won = sum(len(r["won"]) for r in results)
    assert len(open_now) <= 5 and won <= 5, f"q1 (capacity 5) holds {len(open_now)} clients ({won} claims won)"


def test_four_processes_deliver_the_outbox_once(db: tuple[str, str, Path], tmp_path: Path) -> None:
    url, schema, rules = db
    store = SqlStore(url, schema=schema)
    engine = crmcore.Engine(crmcore.load_rules(rules), store=store, notifier=_Down())
    engine.handle_many(registration(f"e{i:03d}", f"c{i:03d}", i, "rr") for i in range(120))
    entries = store.outbox.entries()
    all_ids = {e.id for e in entries}
    assert len(all_ids) == 240 and store.outbox.pending_count() == 240  # assigned + assigned_to_team
    store.close()

    now = iso(BASE + timedelta(days=1))
    outs = [tmp_path / f"sent{w}.txt" for w in range(WORKERS)]
    cmds = [
        worker_cmd("deliver", url, schema, rules, "--now", now, "--limit", "7", "--out", str(out))
        for out in outs
    ]
    results = run_together(cmds, tmp_path / "go")
    sent = [out.read_text().split() if out.exists() else [] for out in outs]
    per_id = Counter(i for ids in sent for i in ids)
    twice = [i for i, n in per_id.items() if n > 1]
    assert twice == [], f"{len(twice)} notifications delivered more than once"
    assert set(per_id) == all_ids
    assert sum(r["delivered"] for r in results) == 240
    assert sum(1 for ids in sent if ids) > 1, "one worker did everything: no concurrency tested"

    store = SqlStore(url, schema=schema)
    assert store.outbox.pending_count() == 0
    assert {e.attempts for e in store.outbox.entries()} == {2}  # the failed try, then one send
    store.close()


def test_two_processes_handle_the_same_file(
    pg_engine: Engine, pg_schemas: Callable[[], str], tmp_path: Path
) -> None:
    url = pg_url(pg_engine)
    events = generate_events(21, 30)
    path = write_events(tmp_path / "events.jsonl", events)
    last = iso(max(BASE, *(BASE.fromisoformat(e["at"].replace("Z", "+00:00")) for e in events)))
    extra = ("--events", str(path), "--finish-at", last)
    shared, clean = pg_schemas(), pg_schemas()
    SqlStore(url, schema=shared).close()
    clean_proc = start(worker_cmd("handle", url, clean, SPEC_RULES, *extra))
    results = run_together([worker_cmd("handle", url, shared, SPEC_RULES, *extra) for _ in range(2)], tmp_path / "go")
    finish(clean_proc)

    ids = distinct_ids(events)
    assert sum(r["handled"] for r in results) == len(ids)
    assert sum(r["duplicate"] for r in results) == 2 * len(events) - len(ids)
    assert all(r["dead_lettered"] == 0 for r in results)
    store, clean_store = SqlStore(url, schema=shared), SqlStore(url, schema=clean)
    check_atomic(store)
    per_event = Counter(d.event_id for d in store.decisions())
    assert set(per_event.values()) == {1}
    assert store.outbox.pending_count() == 0
    want, got = snapshot(clean_store), snapshot(store)
    assert got["events"] == ids
    assert_same(got, want)
    store.close()
    clean_store.close()


def test_deliverers_at_different_times_do_not_send_twice(db: tuple[str, str, Path], tmp_path: Path) -> None:
    """Worker A leases rows at ``now`` and sends slowly; worker B delivers with a ``now``
    past A's lease (workers handle events of different times: ``handle`` delivers at each
    event's time). Each notification must still be sent once."""
    url, schema, rules = db
    store = SqlStore(url, schema=schema)
    engine = crmcore.Engine(crmcore.load_rules(rules), store=store, notifier=_Down())
    engine.handle_many(registration(f"e{i:03d}", f"c{i:03d}", i, "rr") for i in range(10))
    store.close()
    early, late = iso(BASE + timedelta(hours=1)), iso(BASE + timedelta(hours=2))
    out_a, out_b = tmp_path / "a.txt", tmp_path / "b.txt"
    a = start(worker_cmd("deliver", url, schema, rules, "--now", early, "--limit", "20", "--out", str(out_a),
                         "--slow", "0.2"))
    wait_ready(a)
    wait_for_lines(out_a, 1)
    b = start(worker_cmd("deliver", url, schema, rules, "--now", late, "--limit", "20", "--out", str(out_b)))
    wait_ready(b)
    finish(b)
    finish(a)
    sent = out_a.read_text().split() + (out_b.read_text().split() if out_b.exists() else [])
    twice = [i[:12] for i, n in Counter(sent).items() if n > 1]
    assert len(set(sent)) == 20
    assert twice == [], f"{len(twice)} of 20 notifications sent twice (A's lease ended by B's later `now`)"


def test_two_first_deposits_of_one_client_at_once_make_one_ftd(
    pg_engine: Engine, pg_schemas: Callable[[], str], tmp_path: Path
) -> None:
    """Two workers each get one completed deposit of the same client at the same moment
    (a host partitioning by event, not by client): one is the FTD, one hand-over."""
    url, schema = pg_url(pg_engine), pg_schemas()
    store = SqlStore(url, schema=schema)
    engine = crmcore.Engine(crmcore.load_rules(SPEC_RULES), store=store)
    n = 25
    engine.handle_many(
        {"id": f"r{i}", "type": "client_registered", "client_id": f"c{i}", "country": "GB",
         "at": iso(BASE + timedelta(minutes=i))} for i in range(n)
    )
    store.close()
    at = iso(BASE + timedelta(hours=3))
    cmds = []
    for w in range(2):
        deposits = [{"id": f"d{w}-{i}", "type": "deposit", "client_id": f"c{i}", "amount": "100", "at": at}
                    for i in range(n)]
        path = write_events(tmp_path / f"w{w}.jsonl", deposits)
        cmds.append(worker_cmd("handle", url, schema, SPEC_RULES, "--events", str(path), "--dwell", "0.01"))
    results = run_together(cmds, tmp_path / "go")
    assert sum(r["handled"] for r in results) == 2 * n
    store = SqlStore(url, schema=schema)
    check_atomic(store)
    ftd_routings = Counter(d.client_id for d in store.decisions() if d.stage == "ftd" and d.routing is not None)
    twice = sorted(c for c, k in ftd_routings.items() if k > 1)
    handovers = Counter(len(store.assignments(f"c{i}")) for i in range(n))
    store.close()
    assert twice == [], f"{len(twice)} of {n} clients routed as FTD twice; assignments per client: {dict(handovers)}"


def test_batched_workers_taking_clients_in_opposite_orders_do_not_deadlock(
    db: tuple[str, str, Path], tmp_path: Path
) -> None:
    # handle_many(batch=N) holds each client's row until the batch commits. One worker makes
    # first deposits (which route: the routing lock, then the client) for c00..c29, the other
    # logs the same clients in from c29 down: without the routing lock at the start of every
    # batch, each would soon wait for a row the other holds.
    url, schema, rules = db
    clients = [f"c{i:02d}" for i in range(30)]
    engine = crmcore.Engine(crmcore.load_rules(rules), store=SqlStore(url, schema=schema))
    engine.handle_many([registration(f"reg-{c}", c, i, "rr") for i, c in enumerate(clients)])
    deposits = [{"id": f"dep-{c}", "type": "deposit", "client_id": c, "amount": "100",
                 "at": iso(BASE + timedelta(hours=1, minutes=i))} for i, c in enumerate(clients)]
    logins = [{"id": f"login-{c}", "type": "login", "client_id": c,
               "at": iso(BASE + timedelta(hours=1, minutes=i, seconds=30))} for i, c in reversed(list(enumerate(clients)))]
    files = write_events(tmp_path / "deposits.jsonl", deposits), write_events(tmp_path / "logins.jsonl", logins)
    results = run_together(  # batches of 6 and 4: the two meet inside a batch of each
        [worker_cmd("handle", url, schema, rules, "--events", str(path), "--batch", batch, "--dwell", "0.01")
         for path, batch in zip(files, ("6", "4"), strict=True)],
        tmp_path / "go",
    )
    assert [(r["handled"], r["dead_lettered"]) for r in results] == [(30, 0), (30, 0)]
    store = SqlStore(url, schema=schema)
    check_atomic(store)
    assert all((client := store.client(c)) is not None and client["ftd_at"] is not None and client["last_login_at"] is not None
               for c in clients)
    store.close()
