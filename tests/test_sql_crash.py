"""Crash safety with real process kills (issue 4, SPEC §10): a worker process handles an
event file through ``Engine(rules, store=SqlStore(...))`` one event at a time, or with
``handle_many`` in batches (one transaction per batch, a savepoint per event: what
``crmcore run`` does on SQLite); the test kills it with SIGKILL at random points of the
file (most likely inside a transaction: the worker sleeps inside each unit of work and
says which unit it is in), restarts it on the same file until it finishes, and checks that

- after every kill nothing is half-applied (each stored event has its decision and its
  outbox rows, each decision its event, each client at most one open assignment; what is
  kept is a prefix of the file, and in batches a prefix of whole batches), and
- the end state equals that of a clean run of the same file in a fresh database.

SQLite (a file) always runs; PostgreSQL runs with ``CRMCORE_TEST_PG_URL`` (and must in CI).
The helpers here are shared with ``test_sql_concurrency.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from crmcore.storage.sql import SqlStore

WORKER = Path(__file__).parent / "workers" / "crm_worker.py"
SPEC_RULES = Path(__file__).parent / "data" / "spec_rules.yaml"
BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- events -------------------------------------------------------------------------------------

def generate_events(seed: int, clients: int) -> list[dict[str, Any]]:
    """Registrations (plain, DACH, hot via a good IB) with logins, clicks, KYC, FTDs, later
    deposits and trades, in time order; a few lines repeat an earlier id (duplicates)."""
    rng = random.Random(seed)
    timed: list[tuple[datetime, int, dict[str, Any]]] = []
    n = 0

    def add(at: datetime, event: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        event.setdefault("id", f"e{n:05d}")
        event["at"] = iso(at)
        timed.append((at, n, event))

    add(BASE - timedelta(hours=1), {"type": "ib_updated", "ib": {"id": "ib1", "quality": 300}})
    for i in range(clients):
        cid = f"c{i:04d}"
        reg_at = BASE + timedelta(minutes=7 * i)
        country = rng.choice(["DE", "AT", "CH", "GB", "US", "ES", "FR", "BR"])
        reg: dict[str, Any] = {
            "type": "client_registered", "client_id": cid, "country": country,
            "language": rng.choice(["de", "en", "es"]), "email": f"{cid}@example.com",
        }
        if rng.random() < 0.2:
            reg["ib_id"] = "ib1"
        add(reg_at, reg)
        t = reg_at
        for _ in range(rng.randint(0, 3)):
            t += timedelta(minutes=rng.randint(1, 90))
            kind = rng.choice(["login", "email_clicked", "email_opened", "kyc_submitted"])
            add(t, {"type": kind, "client_id": cid})
        if rng.random() < 0.6:
            t += timedelta(minutes=rng.randint(1, 120))
            add(t, {"type": "deposit", "client_id": cid, "amount": str(rng.choice([100, 250, 1000]))})
            for _ in range(rng.randint(0, 2)):
                t += timedelta(minutes=rng.randint(1, 60))
                add(t, {"type": "trade", "client_id": cid, "volume": "1.5", "pnl": str(rng.randint(-50, 50))})
            if rng.random() < 0.3:
                t += timedelta(minutes=rng.randint(1, 60))
                add(t, {"type": "deposit", "client_id": cid, "amount": "500"})
    timed.sort(key=lambda x: (x[0], x[1]))
    events = [e for _, _, e in timed]
    for k in rng.sample(range(len(events)), 4):  # replays of an id: duplicates
        events.insert(k + 1 + rng.randint(0, 5), dict(events[k]))
    # a replayed line must come after its original
    seen: set[str] = set()
    ordered: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for e in events:
        if e["id"] in seen:
            pending.append(e)
        else:
            seen.add(e["id"])
            ordered.append(e)
            ordered.extend(pending)
            pending = []
    ordered.extend(pending)
    return ordered


def write_events(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


# --- workers ------------------------------------------------------------------------------------

def worker_cmd(mode: str, url: str, schema: str | None, rules: Path, *extra: str) -> list[str]:
    return [sys.executable, str(WORKER), mode, "--url", url, "--schema", schema or "", "--rules", str(rules), *extra]


def start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"worker did not start (rc={proc.returncode}): {line}{out}\n{err}")


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed (rc={proc.returncode}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_with_kills(
    cmd: list[str], kills: int, rng: random.Random, units: tuple[int, int], dwell: float,
    after_kill: Callable[[int], None],
) -> tuple[dict[str, Any], int]:
    """Run ``cmd`` (a ``handle --dwell D --mark`` worker) until it finishes, SIGKILLing it
    ``kills`` times; ``after_kill`` checks the state each time, given the last unit of work
    the killed run entered. Each kill waits for the worker to enter its N-th unit of work
    (N drawn from ``units``), then a random part of up to 1.5 dwells: most kills land inside
    that unit's transaction, some just after it. Kills are placed by progress through the
    file, not by the clock, so a faster machine or store cannot make them all miss."""
    killed = 0
    while True:
        proc = start(cmd)
        wait_ready(proc)
        if killed < kills:
            reached = rng.randint(*units)
            _wait_for_unit(proc, reached)
            time.sleep(rng.uniform(0.0, 1.5 * dwell))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                rest, _ = proc.communicate(timeout=30)
                killed += 1
                after_kill(max([reached, *(int(line.split()[1]) for line in rest.splitlines() if line.startswith("unit "))]))
                continue
        return finish(proc), killed


def _wait_for_unit(proc: subprocess.Popen[str], n: int) -> None:
    """Read the worker's ``unit K`` lines until K = n."""
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if line.strip() == f"unit {n}":
            return
    out, err = proc.communicate(timeout=30)
    raise AssertionError(f"the worker ended before unit {n}: make the file longer\n{out}\n{err}")


# --- what a database holds ----------------------------------------------------------------------

def _rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query))


def check_atomic(store: SqlStore) -> dict[str, int]:
    """Nothing half-applied: each client event stored has exactly one decision and the
    decision's notifications are in the outbox; no decision, outbox row or client without
    its event; at most one open assignment per client, and it is the client's agent."""
    t, engine = store.t, store.engine
    events = _rows(engine, sa.select(t.events.c.id, t.events.c.type, t.events.c.client_id))
    ids = [r.id for r in events]
    assert len(ids) == len(set(ids)), "an event id stored twice"
    client_events = {r.id for r in events if r.client_id is not None}
    decisions = store.decisions()
    per_event = Counter(d.event_id for d in decisions if d.cause == "event")
    assert set(per_event) == client_events, (
        f"events without decisions: {sorted(client_events - set(per_event))[:5]}, "
        f"decisions without events: {sorted(set(per_event) - client_events)[:5]}"
    )
    assert max(per_event.values(), default=1) == 1, "an event with two decisions"
    decided = {n.id for d in decisions for n in d.notifications}
    outbox = store.outbox.entries()
    outbox_ids = [e.id for e in outbox]
    assert len(outbox_ids) == len(set(outbox_ids))
    assert set(outbox_ids) == decided, "outbox rows and decisions' notifications differ"
    registered = {r.client_id for r in events if r.type == "client_registered"}
    clients = {c["id"]: c for c in store.clients()}
    assert set(clients) == registered, "clients and registrations differ"
    a = t.assignments
    open_rows = _rows(engine, sa.select(a.c.client_id, a.c.agent_id).where(a.c.ended_at.is_(None)))
    open_per_client = Counter(r.client_id for r in open_rows)
    assert max(open_per_client.values(), default=1) == 1, "a client with two open assignments"
    for r in open_rows:
        assert clients[r.client_id]["agent_id"] == r.agent_id, f"{r.client_id}: record and assignment differ"
    for cid, client in clients.items():
        if client["agent_id"] is not None:
            assert open_per_client[cid] == 1, f"{cid} has an agent but no open assignment"
    return {"events": len(ids), "decisions": len(decisions), "outbox": len(outbox_ids)}


def snapshot(store: SqlStore) -> dict[str, Any]:
    """Everything the engine decided, comparable across databases (no sequence numbers)."""
    t, engine = store.t, store.engine
    a = t.assignments
    assignments = [
        tuple(r) for r in _rows(engine, sa.select(
            a.c.client_id, a.c.agent_id, a.c.desk, a.c.stage, a.c.rule, a.c.strategy, a.c.assigned_at,
            a.c.event_id, a.c.sla_due_at, a.c.ended_at, a.c.end_reason, a.c.ended_by,
        ).order_by(a.c.seq))
    ]
    open_per_agent = Counter(r[1] for r in assignments if r[9] is None)
    decisions = store.decisions()
    r, p, q = t.routing_state, t.pool, t.queue_items
    return {
        "clients": sorted((c for c in store.clients()), key=lambda c: c["id"]),
        "events": [row.id for row in _rows(engine, sa.select(t.events.c.id).order_by(t.events.c.seq))],
        "assignments": assignments,
        "open_per_agent": dict(open_per_agent),
        "decisions_per_client": dict(Counter(d.client_id for d in decisions)),
        "decisions": [(d.event_id, d.client_id, d.cause, d.stage, d.scores, d.bands, d.triggers,
                       None if d.routing is None else (d.routing.outcome, d.routing.rule, d.routing.agent))
                      for d in decisions],
        "outbox": sorted(e.id for e in store.outbox.entries()),
        "routing_state": sorted(tuple(row) for row in _rows(engine, sa.select(r.c.desk, r.c.pointer, r.c.current))),
        "pool": sorted(tuple(row) for row in _rows(engine, sa.select(p.c.client_id, p.c.desk, p.c.reason))),
        "queue_items": sorted(tuple(row) for row in _rows(engine, sa.select(q.c.client_id, q.c.queue, q.c.trigger, q.c.resolved_at))),
        "dead_letters": store.dead_letters(),
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in want:
        assert got[key] == want[key], f"{key} differs from the clean run"


def distinct_ids(events: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(e["id"] for e in events))


# --- PostgreSQL schemas -------------------------------------------------------------------------

@pytest.fixture
def pg_schemas(pg_engine: Engine) -> Iterator[Callable[[], str]]:
    """Make fresh schemas on the test server (dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        name = f"crm_proc_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return name

    yield make
    with pg_engine.begin() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def pg_url(pg_engine: Engine) -> str:
    return pg_engine.url.render_as_string(hide_password=False)


# --- the tests ----------------------------------------------------------------------------------

CLIENTS = 40  # some 175 events
KILLS = 4
DWELL = 0.006


def _kill_units(batch: int) -> tuple[int, int]:
    """Where a run is killed, in units of work (events with a decision) since it started.
    One at a time: after 5-30, so 4 kills keep at most ~125 events. In batches: inside the
    run's second batch (past the 25 units of its first but for the few lines that make no
    unit: duplicates, the IB event), so that each kill finds one batch committed by the
    same run and one in flight, and 4 kills keep 4 batches: 100 events."""
    return (5, 30) if batch == 1 else (batch + 3, batch + batch // 2)


def _check_kept(store: SqlStore, events: list[dict[str, Any]], batch: int) -> None:
    """What a killed worker kept is a prefix of the file's events; in batches, of whole
    batches (lines 0 to k * batch; a run starts again at line 0, so batches stay aligned)."""
    kept = [row.id for row in _rows(store.engine, sa.select(store.t.events.c.id).order_by(store.t.events.c.seq))]
    assert kept == distinct_ids(events)[: len(kept)], "what was kept is not a prefix of the file"
    if batch > 1:
        whole = [distinct_ids(events[:end]) for end in range(0, len(events) + batch, batch)]
        assert kept in whole, f"{len(kept)} events kept: a batch was half-applied"


def _crash_and_compare(
    tmp_path: Path, make_db: Callable[[], tuple[str, str | None]], seed: int, batch: int = 1,
) -> None:
    events = generate_events(seed, CLIENTS)
    ids = distinct_ids(events)
    path = write_events(tmp_path / "events.jsonl", events)
    last = max(datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in events)
    finish_at = iso(last)
    crash_url, crash_schema = make_db()
    clean_url, clean_schema = make_db()
    SqlStore(crash_url, schema=crash_schema).close()  # migrate once, before any kill
    SqlStore(clean_url, schema=clean_schema).close()
    extra = ("--events", str(path), "--finish-at", finish_at, *(("--batch", str(batch)) if batch > 1 else ()))

    # the clean run, alongside the crashing one (another database, no kills)
    clean = start(worker_cmd("handle", clean_url, clean_schema, SPEC_RULES, *extra))

    crash_store = SqlStore(crash_url, schema=crash_schema)
    progress: list[dict[str, int]] = []

    def after_kill(reached: int) -> None:
        progress.append(check_atomic(crash_store))
        _check_kept(crash_store, events, batch)
        done = progress[-1]["decisions"] - (progress[-2]["decisions"] if len(progress) > 1 else 0)
        assert done <= reached, f"{done} events kept by a run that entered {reached} units of work"
        if batch > 1:  # the kill came before the batch in flight committed: its work was undone
            assert done < reached, f"the kill after unit {reached} came after a commit, not inside a batch"

    counts, killed = run_with_kills(
        worker_cmd("handle", crash_url, crash_schema, SPEC_RULES, *extra, "--dwell", str(DWELL), "--mark"),
        KILLS, random.Random(seed), units=_kill_units(batch), dwell=DWELL, after_kill=after_kill,
    )
    clean_counts = finish(clean)
    assert killed == KILLS, f"the worker finished after {killed} kills: make the file longer"
    assert [p["events"] for p in progress] == sorted(p["events"] for p in progress)
    assert all(p["events"] < len(ids) for p in progress), "a kill came after the last event"

    clean_store = SqlStore(clean_url, schema=clean_schema)
    assert clean_counts == {"handled": len(ids), "duplicate": len(events) - len(ids), "dead_lettered": 0}
    # the last run saw what the killed ones did as duplicates
    assert counts["dead_lettered"] == 0
    assert counts["handled"] + counts["duplicate"] == len(events)

    for store in (crash_store, clean_store):
        check_atomic(store)
        assert store.outbox.pending_count() == 0
    want, got = snapshot(clean_store), snapshot(crash_store)
    assert want["events"] == ids  # every id once, in file order
    assert want["dead_letters"] == []
    assert_same(got, want)
    crash_store.close()
    clean_store.close()


def test_sqlite_file_survives_sigkill(tmp_path: Path) -> None:
    names = iter(["crash.db", "clean.db"])

    def make_db() -> tuple[str, str | None]:
        return f"sqlite:///{tmp_path / next(names)}", None

    _crash_and_compare(tmp_path, make_db, seed=11)


def test_postgresql_survives_sigkill(pg_engine: Engine, pg_schemas: Callable[[], str], tmp_path: Path) -> None:
    url = pg_url(pg_engine)

    def make_db() -> tuple[str, str | None]:
        return url, pg_schemas()

    _crash_and_compare(tmp_path, make_db, seed=12)


def test_sqlite_file_survives_sigkill_in_batches(tmp_path: Path) -> None:
    """As ``crmcore run`` on SQLite: a transaction per batch, a savepoint per event."""
    names = iter(["crash.db", "clean.db"])

    def make_db() -> tuple[str, str | None]:
        return f"sqlite:///{tmp_path / next(names)}", None

    _crash_and_compare(tmp_path, make_db, seed=13, batch=25)


def test_postgresql_survives_sigkill_in_batches(pg_engine: Engine, pg_schemas: Callable[[], str], tmp_path: Path) -> None:
    url = pg_url(pg_engine)

    def make_db() -> tuple[str, str | None]:
        return url, pg_schemas()

    _crash_and_compare(tmp_path, make_db, seed=14, batch=25)


def wait_for_lines(path: Path, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path} never got {n} lines")


def test_a_kill_during_delivery_leaves_nothing_pending_after_the_rerun(tmp_path: Path) -> None:
    """Killed while the notifier sends (after the event committed, its outbox rows leased):
    running the same file again must still deliver every notification."""
    events = [
        {"id": f"e{i}", "type": "client_registered", "client_id": f"c{i}", "country": "GB",
         "at": iso(BASE + timedelta(minutes=i))}
        for i in range(4)  # a burst: all within the outbox lease (5 minutes)
    ]
    path = write_events(tmp_path / "events.jsonl", events)
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    sent = tmp_path / "sent.txt"
    extra = ("--events", str(path), "--finish-at", events[-1]["at"], "--out", str(sent))
    proc = start(worker_cmd("handle", url, None, SPEC_RULES, *extra, "--slow", "30"))
    wait_ready(proc)
    wait_for_lines(sent, 1)  # inside send(): the first event's rows are leased
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    counts = finish(start(worker_cmd("handle", url, None, SPEC_RULES, *extra)))
    assert counts == {"handled": 3, "duplicate": 1, "dead_lettered": 0}
    store = SqlStore(url)
    check_atomic(store)
    stuck = [e.id[:12] for e in store.outbox.entries() if e.pending]
    store.close()
    delivered = set(sent.read_text().split())
    assert stuck == [], (
        f"{len(stuck)} notifications stay pending after the rerun (leased by the killed "
        f"worker until {iso(BASE + timedelta(minutes=5))} event time); delivered: {len(delivered)}"
    )
