"""Benchmark: ``scan`` inside the database — six condition triggers compiled to SQL against
the same conditions written by hand, and against evaluating clients one by one in Python.

    python bench/scan_bench.py                                  # PostgreSQL 1,000,000 clients / 10,000,000 events, SQLite 100,000 / 1,000,000
    python bench/scan_bench.py --db sqlite --clients 20000      # smoke run
    python bench/scan_bench.py --db postgresql --clients 100000 --events-per-client 10
    python bench/scan_bench.py --keep                           # reuse the database the last run loaded
    python bench/scan_bench.py --db postgresql --clients 20000 --end-to-end   # also time Engine.scan

The data is loaded straight into crmcore's tables (a fresh SQLite file / a PostgreSQL schema;
``COPY`` on PostgreSQL, ``executemany`` on SQLite), not through the engine: the benchmark is
about the scan, and the engine would take hours to make ten million events. A seeded
generator makes clients registered over the 180 days before ``NOW``, 40 % of them funded,
with their last login / trade, balance and account snapshot (margin level, open positions in
``extra``, as the engine keeps it) and activity events in the 90 days before ``NOW`` (a
funded client ``--events-per-client`` on average, 25 by default: about 10.6 per client) (funded clients: logins, trades, deposits some failed, withdrawals
requested / completed / failed, e-mails; the others logins and e-mails). Then ``ANALYZE``.

Timed, best of ``--rounds``, for the six triggers of ``TRIGGERS`` at ``NOW``:

- **crmcore**: ``SqlStore.trigger_matches(rules, trigger, now)`` for each trigger: the
  condition compiled by crmcore's SQL compiler (client columns, the snapshot in JSON,
  windows as correlated aggregates over ``crm_events``) and run, ids fetched.
- **hand-written SQL** (the floor): each condition as one query written by hand for these
  tables, windows as a pre-aggregation of the events in range (``GROUP BY client_id``) joined
  to the clients, fetching the same ids.
- **Python** (extrapolated): for a random sample of ``--sample`` clients, read the client and
  its history from the store and run ``rules.evaluate`` (what a scan without SQL does per
  client); the time per client times the number of clients.

Then, last and once (it writes; ``--end-to-end``, on by default up to 100,000 clients):

- **Engine.scan** end to end: ``Engine(rules, store=SqlStore(...)).scan(NOW)``, the query
  (``scan_candidates``) then each candidate client in its own unit of work: read it and its
  history, evaluate, fire (trigger firing, queue item), its decision and the notification to
  its agent in the outbox, commit; then the outbox delivered (to a notifier that drops them).
  The rule set has a retention desk and 20 agents, and funded clients carry one of them
  (``agent_id`` / ``desk_id``; no ``crm_assignments`` rows: the SLA part of the scan finds
  nothing). Firings, items, decisions and the outbox are emptied first, so a ``--keep`` run
  starts as the first did.

Before timing, every trigger's crmcore result is checked equal to the hand-written one (and,
over the sample, to Python's), and the scan must decide for exactly the clients where a
trigger holds: a benchmark of wrong answers measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import crmcore
from common import cpu_pressure
from crmcore.rules.ruleset import RuleSet
from crmcore.storage.sql import SqlStore

PG_URL = os.environ.get("CRMCORE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:55433/postgres")
PG_SCHEMA = "bench_scan"
SQLITE_PATH = Path("/tmp/crmcore_scan_bench.db")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

TRIGGERS = {
    "no_login_14d": 'client.stage == "funded" and days_since(coalesce(client.last_login_at, client.ftd_at)) >= 14',
    "no_trade_30d": 'client.stage == "funded" and days_since(coalesce(client.last_trade_at, client.ftd_at)) >= 30 and client.balance > 100',
    "deposits_slowing": 'client.stage == "funded" and deposits.count(30d, 30d) >= 2 and deposits.count(30d) < deposits.count(30d, 30d)',
    "repeated_failed_withdrawals": "withdrawals.failed(7d) >= 2",
    "margin_call_risk": "trading.margin_level < 150 and trading.open_positions > 0",
    "volume_below_threshold": 'client.stage == "funded" and trades.volume(30d, 30d) >= 5 and trades.volume(30d) < 0.5 * trades.volume(30d, 30d)',
}


AGENTS = [f"r{n:02d}" for n in range(1, 21)]  # the retention desk's agents; funded clients are theirs


def rule_set() -> RuleSet:
    """The six triggers as a retention desk writes them (a queue, the agent notified, a cooldown),
    with the desk and its agents: what ``Engine.scan`` needs to fire them."""
    triggers = "\n".join(f"  - {{name: {name}, when: '{when}', queue: q, notify: [agent], cooldown: 7d}}"
                         for name, when in TRIGGERS.items())
    agents = "\n".join(f"  - {{id: {a}, desk: retention, manager: m-ret}}" for a in AGENTS)
    return crmcore.loads(
        "version: 1\ndesks:\n  - {id: retention, kind: retention}\n"
        f"agents:\n  - {{id: m-ret, desk: retention, role: manager}}\n{agents}\ntriggers:\n{triggers}\n"
    )


# ------------------------------------------------------------------------ hand-written SQL

def _ts(dialect: str, delta: timedelta) -> str:
    """``NOW - delta`` as a literal comparable to the stored timestamps."""
    moment = (NOW - delta).replace(tzinfo=None)
    if dialect == "sqlite":
        return f"'{moment.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    return f"TIMESTAMP '{moment.isoformat(sep=' ')}'"


def hand_written(dialect: str, t: dict[str, str]) -> dict[str, str]:
    """The six conditions as an engineer would write them for these tables."""
    c, e = t["clients"], t["events"]
    d = timedelta(days=1)
    money = "CAST({} AS REAL)" if dialect == "sqlite" else "{}"
    margin = ("CAST(coalesce(json_extract(extra, '$.trading.margin_level.\"$d\"'), json_extract(extra, '$.trading.margin_level')) AS REAL)"
              if dialect == "sqlite" else
              "CAST(coalesce(CAST(extra AS jsonb) #>> '{trading,margin_level,$d}', CAST(extra AS jsonb) #>> '{trading,margin_level}') AS DOUBLE PRECISION)")
    positions = ("CAST(json_extract(extra, '$.trading.open_positions') AS INTEGER)" if dialect == "sqlite"
                 else "CAST(CAST(extra AS jsonb) #>> '{trading,open_positions}' AS BIGINT)")

    def windowed(kind: str, status: str | None, value: str, days: int) -> str:
        """Per client: the aggregate over the last ``days`` and over the ``days`` before."""
        where = f"type = '{kind}'" + (f" AND status = '{status}'" if status else "")
        recent, before = _ts(dialect, days * d), _ts(dialect, 2 * days * d)
        return (f"SELECT client_id, "
                f"sum(CASE WHEN at > {recent} THEN {value} ELSE 0 END) AS cur, "
                f"sum(CASE WHEN at <= {recent} THEN {value} ELSE 0 END) AS prev "
                f"FROM {e} WHERE {where} AND at > {before} AND at <= {_ts(dialect, timedelta(0))} GROUP BY client_id")

    return {
        "no_login_14d": f"SELECT id FROM {c} WHERE stage = 'funded' AND coalesce(last_login_at, ftd_at) <= {_ts(dialect, 14 * d)}",
        "no_trade_30d": f"SELECT id FROM {c} WHERE stage = 'funded' AND coalesce(last_trade_at, ftd_at) <= {_ts(dialect, 30 * d)}"
                        f" AND {money.format('balance')} > 100",
        "deposits_slowing": f"SELECT c.id FROM {c} c JOIN ({windowed('deposit', 'completed', '1', 30)}) w ON w.client_id = c.id"
                            " WHERE c.stage = 'funded' AND w.prev >= 2 AND w.cur < w.prev",
        "repeated_failed_withdrawals": f"SELECT client_id FROM {e} WHERE type = 'withdrawal' AND status = 'failed'"
                                       f" AND at > {_ts(dialect, 7 * d)} AND at <= {_ts(dialect, timedelta(0))}"
                                       " GROUP BY client_id HAVING count(*) >= 2",
        "margin_call_risk": f"SELECT id FROM {c} WHERE {margin} < 150 AND {positions} > 0",
        "volume_below_threshold": f"SELECT c.id FROM {c} c JOIN ({windowed('trade', None, money.format('volume'), 30)}) w"
                                  " ON w.client_id = c.id WHERE c.stage = 'funded' AND w.prev >= 5 AND w.cur < 0.5 * w.prev",
    }


# ------------------------------------------------------------------------ data

def _money(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.randrange(low * 100, high * 100) / 100:.2f}"


def generate(n_clients: int, per_client: float, seed: int) -> Iterator[tuple[dict[str, Any], list[tuple[Any, ...]]]]:
    """``(client row, its event rows)`` for each client: the tables' columns, times naive UTC."""
    rng = random.Random(seed)
    now = NOW.replace(tzinfo=None)
    funded_kinds = ["login", "trade", "deposit", "withdrawal", "email_opened"]
    funded_weights = [35, 30, 15, 8, 12]
    serial = 0
    for seq in range(1, n_clients + 1):
        cid = f"c{seq:07d}"
        registered = now - timedelta(seconds=rng.randrange(0, 180 * 86400))
        funded = rng.random() < 0.4
        ftd_at = registered + timedelta(seconds=rng.randrange(3600, 10 * 86400)) if funded else None
        if ftd_at is not None and ftd_at > now:
            ftd_at = now - timedelta(hours=1)
        n_events = min(int(rng.expovariate(1 / per_client)) if funded else rng.randrange(0, 3), 200)
        events = []
        last = {"login": None, "trade": None, "deposit": None}
        start = max(registered, now - timedelta(days=90))
        span = max(1, int((now - start).total_seconds()))
        for _ in range(n_events):
            kind = rng.choices(funded_kinds, funded_weights)[0] if funded else rng.choice(["login", "email_opened"])
            at = start + timedelta(seconds=rng.randrange(0, span))
            serial += 1
            status = amount = volume = pnl = revenue = None
            if kind == "deposit":
                status, amount = ("failed" if rng.random() < 0.08 else "completed"), _money(rng, 50, 5000)
            elif kind == "withdrawal":
                status, amount = rng.choices(["requested", "completed", "failed"], [3, 5, 2])[0], _money(rng, 50, 3000)
            elif kind == "trade":
                volume, pnl, revenue = _money(rng, 0, 5), _money(rng, -300, 300), _money(rng, 0, 20)
            if kind in last and (last[kind] is None or at > last[kind]):
                last[kind] = at
            data: dict[str, Any] = {"id": f"e{serial:09d}", "type": kind, "client_id": cid, "at": at.isoformat() + "Z"}
            data.update((k, v) for k, v in (("status", status), ("amount", amount), ("volume", volume),
                                             ("pnl", pnl), ("revenue", revenue)) if v is not None)
            events.append((data["id"], kind, cid, at, status, amount, volume, pnl, revenue, json.dumps(data)))
        trading: dict[str, Any] = {"balance": None, "equity": None, "margin_level": None, "open_positions": None,
                                   "floating_pnl": None}
        balance = "0"
        if funded:
            balance = _money(rng, 0, 20000)
            trading = {"balance": {"$d": balance}, "equity": {"$d": balance},
                       "margin_level": {"$d": _money(rng, 50, 2000)} if rng.random() < 0.6 else None,
                       "open_positions": rng.randrange(0, 10), "floating_pnl": None}
        client = {
            "seq": seq, "id": cid, "registered_at": registered, "country": rng.choice(["DE", "GB", "FR", "ES", "NG", "BR"]),
            "stage": "funded" if funded else rng.choice(["registered", "kyc_submitted", "kyc_approved"]),
            "ftd_at": ftd_at, "ftd_amount": "500" if funded else None, "balance": balance,
            "last_login_at": last["login"], "last_trade_at": last["trade"], "last_deposit_at": last["deposit"],
            "email_opens": 0, "email_clicks": 0, "status": "new", "contact_count": 0,
            "extra": json.dumps({"trading": trading}),
            # not drawn from rng: the other columns stay those of earlier runs
            "desk_id": "retention" if funded else None, "agent_id": AGENTS[seq % len(AGENTS)] if funded else None,
        }
        yield client, events


EVENT_COLUMNS = ("id", "type", "client_id", "at", "status", "amount", "volume", "pnl", "revenue", "data")
CLIENT_COLUMNS = ("seq", "id", "registered_at", "country", "stage", "ftd_at", "ftd_amount", "balance", "last_login_at",
                  "last_trade_at", "last_deposit_at", "email_opens", "email_clicks", "status", "contact_count", "extra",
                  "desk_id", "agent_id")


def load(store: SqlStore, dialect: str, args: argparse.Namespace) -> tuple[int, int]:
    """Fill the store's clients and events tables; returns (clients, events)."""
    t = store.t
    clients_name = t.clients.fullname
    events_name = t.events.fullname
    n_events = 0
    chunk_clients: list[tuple[Any, ...]] = []
    chunk_events: list[tuple[Any, ...]] = []
    raw = store.engine.raw_connection()
    started = time.perf_counter()
    try:
        def flush() -> None:
            if dialect == "sqlite":
                cur = raw.cursor()
                fmt = "%Y-%m-%d %H:%M:%S.%f"
                cur.executemany(
                    f"INSERT INTO {clients_name} ({', '.join(CLIENT_COLUMNS)}) VALUES ({', '.join('?' * len(CLIENT_COLUMNS))})",
                    [tuple(v.strftime(fmt) if isinstance(v, datetime) else v for v in row) for row in chunk_clients])
                cur.executemany(
                    f"INSERT INTO {events_name} ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
                    [tuple(v.strftime(fmt) if isinstance(v, datetime) else v for v in row) for row in chunk_events])
            else:
                cur = raw.cursor()
                with cur.copy(f"COPY {clients_name} ({', '.join(CLIENT_COLUMNS)}) FROM STDIN") as copy:
                    for row in chunk_clients:
                        copy.write_row(row)
                with cur.copy(f"COPY {events_name} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                    for row in chunk_events:
                        copy.write_row(row)
            raw.commit()
            chunk_clients.clear()
            chunk_events.clear()

        for n, (client, events) in enumerate(generate(args.clients, args.events_per_client, args.seed), 1):
            chunk_clients.append(tuple(client[name] for name in CLIENT_COLUMNS))
            chunk_events.extend(events)
            n_events += len(events)
            if len(chunk_events) >= 200_000:
                flush()
            if n % 100_000 == 0:
                print(f"  loaded {n:,} clients, {n_events:,} events ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        flush()
        raw.cursor().execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    print(f"  loaded {args.clients:,} clients, {n_events:,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return args.clients, n_events


# ------------------------------------------------------------------------ timing

def best_of(rounds: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def python_per_client(store: SqlStore, rules: RuleSet, ids: list[str]) -> tuple[float, dict[str, set[str]]]:
    """Seconds per client of the Python path (read client and history, evaluate), and what held."""
    held: dict[str, set[str]] = {}
    started = time.perf_counter()
    for cid in ids:
        client = store.client(cid)
        assert client is not None
        context = {"client": client, "ib": None, "trading": client.get("trading"), "now": NOW,
                   "events": store.history(cid)}
        held[cid] = set(rules.evaluate(context).triggers)
    return (time.perf_counter() - started) / len(ids), held


class _TimedStore(SqlStore):
    """A SqlStore that keeps the time of the scan's query (``scan_candidates``)."""

    query_seconds = 0.0

    def scan_candidates(self, rules: RuleSet, now: datetime) -> list[str]:
        started = time.perf_counter()
        try:
            return super().scan_candidates(rules, now)
        finally:
            self.query_seconds += time.perf_counter() - started


def end_to_end(
    url: str, schema: str | None, rules: RuleSet, candidates: set[str], batch: int | None = None,
) -> tuple[float, float, int, int]:
    """One ``Engine(rules, store).scan(NOW)`` on the loaded data, from no firings, items, decisions
    or outbox (a ``--keep`` run starts where the first did): seconds in all and in the query,
    decisions and notifications. Once, not best of: it writes, and a second scan meets its items."""
    store = _TimedStore(url, schema=schema)
    t = store.t
    with store.engine.begin() as conn:
        for table in (t.queue_items, t.trigger_firings, t.decisions, t.outbox, t.dead_letters):
            conn.execute(table.delete())
    engine = crmcore.Engine(rules, store=store)  # writes the desk and agents: not in the time
    started = time.perf_counter()
    decisions = engine.scan(NOW, batch=batch)
    seconds = time.perf_counter() - started
    if store.dead_letters() or sorted(d.client_id for d in decisions) != sorted(candidates):
        raise SystemExit(f"the scan decided for {len(decisions):,} clients, not the {len(candidates):,} "
                         f"where a trigger holds ({len(store.dead_letters())} dead letters)")
    notes = sum(len(d.notifications) for d in decisions)
    store.close()
    return seconds, store.query_seconds, len(decisions), notes


def bench(dialect: str, args: argparse.Namespace) -> None:
    rules = rule_set()
    if dialect == "sqlite":
        url, schema = f"sqlite:///{args.sqlite}", None
        if not args.keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{args.sqlite}{suffix}").unlink(missing_ok=True)
    else:
        url, schema = args.pg_url, args.schema
        if not args.keep:
            admin = sa.create_engine(url)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            admin.dispose()
    store = SqlStore(url, schema=schema)
    with store.engine.connect() as conn:
        n_clients = conn.execute(sa.select(sa.func.count()).select_from(store.t.clients)).scalar_one()
        n_events = conn.execute(sa.select(sa.func.count()).select_from(store.t.events)).scalar_one()
    if not (args.keep and n_clients):
        n_clients, n_events = load(store, dialect, args)
    names = {"clients": store.t.clients.fullname, "events": store.t.events.fullname}
    floor_sql = hand_written(dialect, names)
    print(f"\n{dialect}: {n_clients:,} clients, {n_events:,} events, 6 condition triggers at {NOW:%Y-%m-%d %H:%M}")
    print(f"{'trigger':<28} {'matches':>9} {'crmcore s':>10} {'by hand s':>10} {'ratio':>7}")
    total_crm = total_floor = 0.0
    candidates: set[str] = set()
    for trigger in rules.condition_triggers:
        crm_time, crm_rows = best_of(args.rounds, lambda tr=trigger: store.trigger_matches(rules, tr, NOW))

        def by_hand(sql: str = floor_sql[trigger.name]) -> list[str]:
            with store.engine.connect() as conn:
                return [row[0] for row in conn.exec_driver_sql(sql)]

        floor_time, floor_ids = best_of(args.rounds, by_hand)
        if sorted(cid for _, cid in crm_rows) != sorted(floor_ids):
            raise SystemExit(f"{trigger.name}: crmcore and the hand-written query disagree "
                             f"({len(crm_rows)} against {len(floor_ids)} clients)")
        total_crm += crm_time
        total_floor += floor_time
        candidates.update(cid for _, cid in crm_rows)
        print(f"{trigger.name:<28} {len(crm_rows):>9,} {crm_time:>10.3f} {floor_time:>10.3f} {crm_time / floor_time:>6.2f}x")
    rng = random.Random(args.seed + 7)
    sample = [f"c{rng.randrange(1, n_clients + 1):07d}" for _ in range(min(args.sample, n_clients))]
    per_client, held = python_per_client(store, rules, sample)
    for trigger in rules.condition_triggers:  # the sample agrees with SQL too
        in_sql = {cid for _, cid in store.trigger_matches(rules, trigger, NOW)}
        for cid in sample:
            if (cid in in_sql) != (trigger.name in held[cid]):
                raise SystemExit(f"{trigger.name}: SQL and Python disagree on {cid}")
    python_total = per_client * n_clients
    print(f"{'all six':<28} {'':>9} {total_crm:>10.3f} {total_floor:>10.3f} {total_crm / total_floor:>6.2f}x  (goal <= 2x)")
    print(f"Python path: {per_client * 1e6:.0f} us/client over {len(sample):,} sampled clients -> "
          f"{python_total:.1f} s for all; crmcore's SQL scan is {python_total / total_crm:.1f}x faster (goal >= 20x)")
    store.close()
    if args.end_to_end if args.end_to_end is not None else n_clients <= END_TO_END_UP_TO:
        scan, query, n_decisions, n_notes = end_to_end(url, schema, rules, candidates, args.scan_batch)
        visited = max(len(candidates), 1)
        print(f"Engine.scan end to end (once): {scan:.2f} s for {len(candidates):,} candidates "
              f"({n_decisions:,} decisions, {n_notes:,} notifications): its query {query:.2f} s "
              f"(the six above: {total_crm:.2f} s), then {(scan - query) / visited * 1e6:,.0f} us per candidate "
              f"({scan / visited * 1e6:,.0f} us all in)")
        print(f"  Python path / this scan: {python_total:.1f} s / {scan:.2f} s = {python_total / scan:.1f}x; a scan without SQL "
              f"(every client evaluated, then the same candidates) ~{python_total + scan - query:.1f} s: "
              f"{(python_total + scan - query) / scan:.1f}x")


END_TO_END_UP_TO = 100_000  # clients: above, the scan's Python part alone takes minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--clients", type=int, help="clients (default: 1,000,000 on PostgreSQL, 100,000 on SQLite)")
    parser.add_argument("--events-per-client", type=float, default=25.0,
                        help="mean activity events of a funded client (default 25: about 10.6 events per client overall)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs per query (default 3)")
    parser.add_argument("--sample", type=int, default=2000, help="clients evaluated in Python (default 2,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=None,
                        help=f"also time Engine.scan(now) once, last (it writes); default: up to {END_TO_END_UP_TO:,} clients")
    parser.add_argument("--scan-batch", type=int, help="Engine.scan(now, batch=N): clients per transaction "
                        "(default: the store's, 500 on SQLite, 1 on PostgreSQL)")
    parser.add_argument("--keep", action="store_true", help="reuse the data of the last run when there is any")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--schema", default=PG_SCHEMA)
    parser.add_argument("--sqlite", default=str(SQLITE_PATH))
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, SQLAlchemy {sa.__version__}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs, CPU pressure {cpu_pressure()}")
    explicit = args.clients
    for dialect in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
        args.clients = explicit or (100_000 if dialect == "sqlite" else 1_000_000)
        bench(dialect, args)


if __name__ == "__main__":
    main()
