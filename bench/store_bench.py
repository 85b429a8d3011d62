"""Benchmark: ``Engine.handle_many`` on a ``SqlStore`` against the persistence floor.

    python bench/store_bench.py                          # 50,000 registrations + 200,000 activity events, both databases
    python bench/store_bench.py --db sqlite              # SQLite only (a file under /tmp)
    python bench/store_bench.py --registrations 2000     # smoke run (10,000 events)
    python bench/store_bench.py --engine-events all      # the engine on every event, however long it takes
    python bench/store_bench.py --engine-events 2000 --profile /tmp/store.prof   # cProfile one engine run
    python bench/store_bench.py --db postgresql --batch 100   # handle_many(batch=100): 100 events a transaction

A seeded generator makes ``N`` ``client_registered`` events (``engine_bench.make_events``:
the example rule set's ``schema`` fields, IBs, ...) after ten ``ib_updated`` events, and
``4 x N`` activity events for clients registered before them: logins, trades, deposits (a
client's first completed deposit is the FTD, routed to retention), account snapshots, e-mail
clicks and contacts (by one of the sales agents, sometimes the assigned one). The stream is
stationary: every fifth event is a registration, the others pick an already registered client
(half of them one of the ~50 latest, half any), so a prefix of it has the mix of the whole.
Everything is parsed with ``parse_event`` before anything is timed.

Timed, on a fresh database each (SQLite file in WAL mode / a PostgreSQL schema dropped and
created again):

- **floor**: the same event rows (``id, type, client_id, at, data`` = the event's JSON, as the
  engine stores it; rows built before timing) inserted into a plain table with SQLAlchemy Core,
  in batches of 1,000, one transaction per batch, both as ``conn.execute(insert(table), rows)``
  (executemany) and as ``conn.execute(insert(table).values(rows))`` (one multi-row INSERT);
  the floor is the faster of the two, each the best of ``--floor-rounds``.
- **engine**: ``Engine(rules, store=SqlStore(url, schema=...)).handle_many(events,
  keep_results=False)`` (engine construction not timed). The engine is slow on SQL, so by
  default (``--engine-events auto``) it runs in slices of 1,000 events (``handle_many``
  delivers its outbox every 1,000 events anyway) until all are done or ``--budget`` seconds
  have passed: then the figure is for that *prefix* of the stream, and the output says so.
- **ceiling** (not a goal, a bound): the same events on a ``MemoryStore``; the engine's own
  work per event, which no SQL store can undercut (``--no-memory`` skips it).

Statements are counted with a ``before_cursor_execute`` listener on the store's engine (an
``executemany`` is one statement; its rows are counted apart), commits with a ``commit``
listener; they are grouped by kind (verb and table) per event.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import crmcore
from common import cpu_pressure
from crmcore.engine import Engine
from crmcore.events import Event, parse_event
from crmcore.notify.notifiers import NullNotifier
from crmcore.storage.memory import MemoryStore
from crmcore.storage.schema import UtcDateTime
from crmcore.storage.sql import SqlStore
from engine_bench import RULES_DIR, START, _iso, make_events

PG_URL = os.environ.get("CRMCORE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:55433/postgres")
PG_SCHEMA = "bench_store"
SQLITE_PATH = Path("/tmp/crmcore_store_bench.db")
FLOOR_TABLE = "bench_floor_events"
FLOOR_BATCH = 1000
SLICE = 1000

# ------------------------------------------------------------------------ synthetic events

ACTIVITY = ["login", "trade", "deposit", "account_snapshot", "email_clicked", "contact"]
ACTIVITY_WEIGHTS = [30, 20, 12, 15, 13, 10]
SALES_AGENTS = ["a01", "a02", "a03", "a04", "a05", "a06", "a07", "a08", "a09", "a10"]
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "GER40", "BTCUSD"]
OUTCOMES = ["no_answer", "reached", "interested", "callback", "not_interested", "wrong_number"]


def _money(rng: random.Random, low: int, high: int, places: int = 2) -> str:
    return str(Decimal(rng.randrange(low * 10**places, high * 10**places)).scaleb(-places))


def make_stream(registrations: int, seed: int, activity: int = 4) -> list[dict[str, Any]]:
    """Ten ``ib_updated``, then ``registrations`` registrations and ``activity`` times as many
    activity events, interleaved (every ``activity + 1``-th a registration), in time order, as
    JSON-ready dicts."""
    ib_events, regs = make_events(registrations, seed)
    rng = random.Random(seed + 1)
    out: list[dict[str, Any]] = list(ib_events)
    at = START
    registered: list[str] = []
    deposits = Counter[str]()
    n = 0
    reg_iter = iter(regs)
    for slot in range((activity + 1) * registrations):
        at += timedelta(seconds=rng.randrange(1, 8), microseconds=rng.randrange(0, 1_000_000, 1000))
        if slot % (activity + 1) == 0:
            event = dict(next(reg_iter))
            event["at"] = _iso(rng, at)  # the stream's clock, not make_events' own
            registered.append(event["client_id"])
            out.append(event)
            continue
        if rng.random() < 0.5:
            client = registered[max(0, len(registered) - 1 - int(rng.expovariate(1 / 50)))]
        else:
            client = rng.choice(registered)
        kind = rng.choices(ACTIVITY, ACTIVITY_WEIGHTS)[0]
        n += 1
        event = {"type": kind, "id": f"{kind}-{n:07d}", "at": _iso(rng, at), "client_id": client}
        if kind == "trade":
            event.update(volume=_money(rng, 0, 20), pnl=_money(rng, -500, 500), symbol=rng.choice(SYMBOLS))
            if rng.random() < 0.7:
                event["revenue"] = _money(rng, 0, 30)
        elif kind == "deposit":
            deposits[client] += 1
            event.update(amount=_money(rng, 50, 5000) if deposits[client] > 1 else str(rng.choice([100, 250, 500, 1000])),
                         currency=rng.choice(["EUR", "USD", None]))
            if rng.random() < 0.08:
                event["status"] = "failed"
        elif kind == "account_snapshot":
            balance = Decimal(_money(rng, 0, 20000))
            event.update(balance=str(balance), equity=str(balance + Decimal(_money(rng, -300, 300))),
                         open_positions=rng.randrange(0, 12))
            if rng.random() < 0.5:
                event.update(margin_level=_money(rng, 50, 2000), floating_pnl=_money(rng, -300, 300))
        elif kind == "contact":
            outcome = rng.choice(OUTCOMES)
            event.update(agent_id=rng.choice(SALES_AGENTS), channel=rng.choice(["call", "email", "sms", "chat"]),
                         outcome=outcome)
            if outcome == "callback":
                event["callback_at"] = _iso(rng, at + timedelta(hours=rng.randrange(1, 72)))
        out.append(event)
    return out


# ------------------------------------------------------------------------ databases


def fresh_database(kind: str, args: argparse.Namespace) -> tuple[str, str | None]:
    """``(url, schema)`` of an empty database: the SQLite file removed, the schema recreated."""
    if kind == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{args.sqlite}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{args.sqlite}", None
    if not args.schema.startswith("bench"):
        raise SystemExit(f"--schema {args.schema!r}: this script drops it; use a name starting with 'bench'")
    admin = sa.create_engine(args.pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{args.schema}"')
    admin.dispose()
    return args.pg_url, args.schema


def pg_settings(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            values = {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in ("fsync", "synchronous_commit")}
            version = conn.exec_driver_sql("SHOW server_version").scalar()
    finally:
        engine.dispose()
    return f"PostgreSQL {version}, " + ", ".join(f"{k}={v}" for k, v in values.items())


class Counting:
    """Statements (by text), executemany rows and commits on an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: Counter[str] = Counter()
        self.rows = 0
        self.commits = 0
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._execute)
        sa.event.listen(engine, "commit", self._commit)

    def _execute(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.on:
            self.statements[statement] += 1
            self.rows += len(parameters) if executemany else 1

    def _commit(self, conn: Any) -> None:
        if self.on:
            self.commits += 1

    def total(self) -> int:
        return sum(self.statements.values())


_TABLE = r'(?:"?\w+"?\.)?"?(\w+)"?'


def kind_of(statement: str) -> str:
    """``SELECT crm_events``, ``INSERT crm_outbox ON CONFLICT``, ``SAVEPOINT``, ... ."""
    text = " ".join(statement.replace('"', "").split())
    upper = text.upper()
    verb = upper.split(" ", 1)[0]
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return " ".join(upper.split()[:2]) if verb in ("RELEASE", "BEGIN") else verb
    tags = []
    if verb == "SELECT":
        m = re.search(r"\bFROM " + _TABLE, text, re.I)
        table = m.group(1) if m else "?"
        if "FOR UPDATE" in upper:
            tags.append("FOR UPDATE")
        if "GROUP BY" in upper:
            tags.append("GROUP BY")
        where = re.search(r"\bWHERE (.*?)(?: ORDER BY| GROUP BY| LIMIT| FOR UPDATE|$)", text, re.I)
        if where:
            cols = sorted(set(re.findall(r"\.?(\w+) (?:=|IS|IN|<=|>)", where.group(1))))
            tags.append("by " + ",".join(cols))
    elif verb == "INSERT":
        m = re.search(r"\bINTO " + _TABLE, text, re.I)
        table = m.group(1) if m else "?"
        if "MAX(" in upper:
            tags.append("+max(seq) subquery")
        if "ON CONFLICT" in upper:
            tags.append("ON CONFLICT DO NOTHING" if "DO NOTHING" in upper else "ON CONFLICT DO UPDATE")
    elif verb == "UPDATE":
        m = re.match(r"UPDATE " + _TABLE, text, re.I)
        table = m.group(1) if m else "?"
        where = re.search(r"\bWHERE (.*)$", text, re.I)
        if where:
            tags.append("by " + ",".join(sorted(set(re.findall(r"\.?(\w+) (?:=|IS|IN)", where.group(1))))))
    elif verb == "DELETE":
        m = re.search(r"\bFROM " + _TABLE, text, re.I)
        table = m.group(1) if m else "?"
        if "RETURNING" in upper:
            tags.append("RETURNING")
    else:
        table = ""
    return " ".join(x for x in (verb, table, *tags) if x)


def by_kind(statements: Counter[str]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for statement, count in statements.items():
        kinds[kind_of(statement)] += count
    return kinds


# ------------------------------------------------------------------------ timing


def floor_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [
        {"id": e.id, "type": e.type, "client_id": getattr(e, "client_id", None), "at": e.at, "data": e.model_dump_json()}
        for e in events
    ]


def run_floor(
    engine: sa.Engine, schema: str | None, rows: Sequence[dict[str, Any]], rounds: int, style: str = "executemany",
) -> float:
    """Best seconds to insert ``rows`` into a fresh plain table, 1,000 per transaction: one
    ``executemany`` per batch, or (``style="values"``) one multi-row ``insert().values([...])``."""
    table = sa.Table(
        FLOOR_TABLE, sa.MetaData(schema=schema),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(200)),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    insert = sa.insert(table)
    best = float("inf")
    for _ in range(rounds):
        table.drop(engine, checkfirst=True)
        table.create(engine)
        gc.collect()
        start = time.perf_counter()
        for offset in range(0, len(rows), FLOOR_BATCH):
            with engine.begin() as conn:
                if style == "values":
                    conn.execute(insert.values(list(rows[offset:offset + FLOOR_BATCH])))
                else:
                    conn.execute(insert, rows[offset:offset + FLOOR_BATCH])
        best = min(best, time.perf_counter() - start)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == len(rows)
    table.drop(engine)
    return best


def run_engine(
    engine: Engine, events: Sequence[Event], limit: int | None, budget: float | None, profile: cProfile.Profile | None,
    batch: int | None = None,
) -> tuple[float, int]:
    """``(seconds, events handled)``: all of ``events[:limit]``, or slices of 1,000 until
    ``budget`` seconds have passed."""
    todo = events if limit is None else events[:limit]
    gc.collect()
    done = 0
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        if budget is None:
            engine.handle_many(todo, keep_results=False, batch=batch)
            done = len(todo)
        else:
            while done < len(todo) and time.perf_counter() - start < budget:
                chunk = todo[done:done + SLICE]
                engine.handle_many(chunk, keep_results=False, batch=batch)
                done += len(chunk)
    finally:
        if profile is not None:
            profile.disable()
    return time.perf_counter() - start, done


def bench_db(kind: str, args: argparse.Namespace, rules: crmcore.RuleSet, events: list[Event],
             rows: list[dict[str, Any]]) -> dict[str, Any]:
    url, schema = fresh_database(kind, args)
    store = SqlStore(url, schema=schema)
    desc = f"SQLite {sa.__version__ and __import__('sqlite3').sqlite_version} file {args.sqlite} (WAL, synchronous=NORMAL)" \
        if kind == "sqlite" else f"{pg_settings(url)}, schema {schema}"
    print(f"\n== {kind}: {desc}")
    pressure = cpu_pressure()
    if pressure is not None and pressure > 5:
        print(f"  warning: the machine is busy (CPU pressure {pressure:.0f}% over 10 s): absolute figures will be low")

    styles = {style: run_floor(store.engine, schema, rows, args.floor_rounds, style) for style in ("executemany", "values")}
    for style, seconds in styles.items():
        print(f"  floor ({style:<11}) {len(rows) / seconds:>9,.0f} events/s  {1e6 * seconds / len(rows):8.1f} us/event")
    floor = min(styles.values())  # the faster of the two is the floor
    floor_rate = len(rows) / floor
    print(f"  floor   {floor_rate:>9,.0f} events/s  {1e6 * floor / len(rows):8.1f} us/event  "
          f"({len(rows):,} rows, batches of {FLOOR_BATCH:,} as executemany or insert().values([...]), "
          f"one transaction each; the faster, best of {args.floor_rounds})")

    engine = Engine(rules, store, NullNotifier())
    counting = Counting(store.engine)
    limit = None if args.engine_events in ("all", "auto") else int(args.engine_events)
    budget = args.budget if args.engine_events == "auto" else None
    profile = cProfile.Profile() if args.profile else None
    counting.on = True
    seconds, done = run_engine(engine, events, limit, budget, profile, args.batch)
    counting.on = False
    dead = store.dead_letters()
    if dead:
        raise SystemExit(f"{len(dead)} events were dead-lettered, the first: {dead[0]}")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(store.t.events)).scalar()
    assert stored == done, (stored, done)
    engine_rate = done / seconds
    prefix = done < len(events)
    mix = Counter(e.type for e in events[:done])
    print(f"  engine  {engine_rate:>9,.0f} events/s  {1e6 * seconds / done:8.1f} us/event  "
          f"({done:,} events in {seconds:,.1f} s{'' if not prefix else ', A PREFIX'})")
    if prefix:
        why = f"the --budget of {args.budget:.0f} s ran out" if budget is not None else "--engine-events"
        print(f"  NOTE: the engine ran on the first {done:,} of {len(events):,} events only ({why}); "
              f"at this rate all would take {len(events) / engine_rate / 60:,.0f} min. Prefix mix: "
              + ", ".join(f"{t} {c:,}" for t, c in mix.most_common()))
    ratio = engine_rate / floor_rate
    total = counting.total()
    print(f"  engine / floor: {ratio:.3f}x (goal >= 0.3x)")
    memory_rate = None
    if not args.no_memory:
        memory = Engine(rules, MemoryStore(), NullNotifier())
        memory_seconds, _ = run_engine(memory, events, done, None, None)
        memory_rate = done / memory_seconds
        del memory
        print(f"  ceiling: the same {done:,} events on a MemoryStore {memory_rate:,.0f} events/s "
              f"({1e6 * memory_seconds / done:.1f} us/event) = {memory_rate / floor_rate:.3f}x the floor: "
              f"no SQL store can beat this ratio without making the engine itself faster")
        print(f"  persistence: engine on the store / engine on a MemoryStore = {engine_rate / memory_rate:.3f}x "
              f"(what the store costs over the engine's own work; see docs/performance.md)")
        bound = (1 / floor_rate) / (1 / memory_rate + 1 / floor_rate)
        print(f"  bound: a store that wrote only the event rows would still take the engine's own work "
              f"plus the floor's: engine / floor <= {bound:.3f}x")
    print(f"  per event: {total / done:.1f} statements ({counting.rows / done:.1f} rows), "
          f"{counting.commits / done:.2f} commits")
    kinds = by_kind(counting.statements)
    print("  statements per event by kind:")
    for name, count in kinds.most_common(args.kinds):
        print(f"    {count / done:6.2f}  {name}")
    if len(kinds) > args.kinds:
        rest = sum(c for _, c in kinds.most_common()[args.kinds:])
        print(f"    {rest / done:6.2f}  ({len(kinds) - args.kinds} other kinds)")
    if profile is not None:
        path = Path(f"{args.profile}.{kind}")
        profile.dump_stats(path)
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(args.profile_lines)
        print(f"  cProfile ({path}):\n{out.getvalue()}")
    store.close()
    return {"kind": kind, "floor": floor_rate, "engine": engine_rate, "ratio": ratio, "events": done,
            "prefix": prefix, "statements": total / done, "memory": memory_rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--registrations", type=int, default=50_000,
                        help="client_registered events; 4x as many activity events follow (default 50,000)")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--engine-events", default="auto",
                        help="events the engine handles: a number (a prefix), 'all', or 'auto' (default): "
                             "slices of 1,000 until --budget seconds have passed")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds for the engine with --engine-events auto")
    parser.add_argument("--floor-rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None,
                        help="events per transaction in handle_many (default: the store's, 500 on SQLite, 1 on PostgreSQL)")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--rules", type=Path, default=RULES_DIR)
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL URL (default $CRMCORE_BENCH_PG or %(default)s)")
    parser.add_argument("--schema", default=PG_SCHEMA, help="PostgreSQL schema, dropped and created again (default %(default)s)")
    parser.add_argument("--sqlite", type=Path, default=SQLITE_PATH, help="SQLite file, removed first (default %(default)s)")
    parser.add_argument("--kinds", type=int, default=25, help="statement kinds to list")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the ceiling: the engine on a MemoryStore for the same events")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the engine run; stats to PATH.sqlite / PATH.postgresql")
    parser.add_argument("--profile-lines", type=int, default=30)
    args = parser.parse_args(argv)
    if args.registrations < 1:
        parser.error("--registrations must be at least 1")
    if args.engine_events not in ("all", "auto") and not args.engine_events.isdigit():
        parser.error("--engine-events: a number, 'all' or 'auto'")

    rules = crmcore.load_rules(args.rules)
    print(f"crmcore {crmcore.__version__}, SQLAlchemy {sa.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    raw = make_stream(args.registrations, args.seed)
    events = [parse_event(data, rules) for data in raw]
    rows = floor_rows(events)
    mix = Counter(e.type for e in events)
    print(f"{len(events):,} events (seed {args.seed}, rules {args.rules}): "
          + ", ".join(f"{t} {c:,}" for t, c in mix.most_common()) + "; parsed before timing")

    results = [bench_db(kind, args, rules, events, rows)
               for kind in (("sqlite", "postgresql") if args.db == "both" else (args.db,))]
    print("\nsummary (events/s):")
    for r in results:
        note = f"  (engine on the first {r['events']:,} events)" if r["prefix"] else ""
        print(f"  {r['kind']:<10} engine {r['engine']:>8,.0f}  floor {r['floor']:>8,.0f}  ratio {r['ratio']:.3f}x "
              f"(goal 0.3x)  {r['statements']:.1f} statements/event"
              + ("" if r["memory"] is None else f"  [MemoryStore {r['memory']:,.0f}: {r['memory'] / r['floor']:.3f}x"
                 f" the floor; engine / MemoryStore {r['engine'] / r['memory']:.3f}x]")
              + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
