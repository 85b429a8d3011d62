"""``crmcore demo``: the whole product on a synthetic broker, end to end.

:func:`run` generates the broker's events (:mod:`crmcore.demo.generate`), processes them
with the demo rules (``crmcore/demo/rules``: the example broker of ``examples/rules`` with
capacities for thousands of clients and 25 people: 20 agents, 4 managers, the head of sales;
some agents work set hours, every desk has agents who are always on) on a SQL store — a
fresh SQLite file by default —, in one ``handle_many`` (on SQLite 500 events per transaction;
each contact's caller is looked up as the event is taken, inside the batch), scans at the end
of the period, and prints what a desk manager looks at.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from crmcore.demo.generate import END, events
from crmcore.engine import BatchSummary, Engine, Result
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.loader import load_rules
from crmcore.rules.ruleset import RuleSet
from crmcore.storage.base import no_sqlite_schema
from crmcore.storage.schema import tables
from crmcore.storage.sql import SqlStore

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_DB", "END", "MONTH", "RULES", "Demo", "DemoError", "demo_rules", "render", "run"]

RULES = Path(__file__).parent / "rules"
DEFAULT_DB = "sqlite:///crmcore-demo.db"
DEFAULT_CLIENTS = 2_000
"""Sized to finish well under two minutes on two cores, slow ones too: 40,005 events, 39–42 s
on one 2-core VM and 67 s on a slower one, where 3,000 clients took 109 s (docs/performance.md)."""


def demo_rules() -> RuleSet:
    return load_rules(RULES)


@dataclass
class Demo:
    """What a run did: the store (for reports), the summary and the timings."""

    store: SqlStore
    engine: Engine
    summary: BatchSummary
    events: int
    seconds: float


def _with_callers(engine: Engine, stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The stream with each contact's caller: the agent holding the client once the events
    before it are handled (``handle_many(..., read_ahead=False)`` takes events one at a time,
    so the read sees them, inside a batch too); a call to a client nobody holds is dropped."""
    for event in stream:
        if event["type"] == "contact":
            assignment = engine.store.assignment(event["client_id"])
            if assignment is None:
                continue
            event["agent_id"] = assignment.agent_id
        yield event


class DemoError(CrmError):
    """A database the demo must not write into."""


_MARK = "demo"
"""The key of the ``meta`` table (``crm_meta``) that says a database is the demo's own (so it may be emptied)."""


def _made_by_demo(path: Path, prefix: str) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            table = '"' + f"{prefix}meta".replace('"', '""') + '"'
            return connection.execute(f"SELECT 1 FROM {table} WHERE key = ?", (_MARK,)).fetchone() is not None
    except sqlite3.Error:
        return False


def _fresh(db: str, *, force: bool, schema: str | None, prefix: str) -> None:
    """Get ``db`` ready for a run: a SQLite file of an earlier demo (or any, with ``force``) is
    removed; a file that is something else, or another database that holds events, is
    refused — the demo never empties what it did not make. A prefix or schema the store
    would refuse is refused before anything is removed."""
    tables(prefix=prefix)  # StoreConfigError for a prefix of the wrong form
    if schema is not None and db.startswith("sqlite"):
        raise no_sqlite_schema(schema)  # a fresh file has none ATTACHed
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        path = Path(db.removeprefix("sqlite:///"))
        if path.exists() and path.stat().st_size and not force and not _made_by_demo(path, prefix):
            raise DemoError(f"{path}: not a database the demo made, and the demo starts from an empty one: "
                            "give another --db, or --force to replace this file")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with contextlib.closing(SqlStore(db, schema=schema, prefix=prefix)) as store:
        used = store.latest_event_at() is not None
    if used:
        raise DemoError(f"{db}: holds events already; the demo needs an empty database (it never empties one)")


def run(clients: int = DEFAULT_CLIENTS, db: str = DEFAULT_DB, *, seed: int = 7, days: int = 90,
        progress: TextIO | None = None, force: bool = False, schema: str | None = None, prefix: str = "crm_") -> Demo:
    """Generate, process and scan into ``db`` (crmcore's tables in ``schema``, named
    ``prefix + name``, as :class:`SqlStore`): a fresh SQLite file by default (a file an
    earlier demo made is replaced; any other is refused unless ``force``), or an empty
    database of another kind. Raises :class:`DemoError` for a database it must not use."""
    _fresh(db, force=force, schema=schema, prefix=prefix)
    rules = demo_rules()
    store = SqlStore(db, schema=schema, prefix=prefix)
    try:
        with store.engine.begin() as connection:  # the mark that lets a later demo replace it
            connection.execute(sa.insert(store.t.meta).values(key=_MARK, value=f"crmcore demo, seed {seed}"))
        return _process(store, rules, clients, days=days, seed=seed, progress=progress)
    except BaseException:  # the caller gets no store to close
        store.close()
        raise


def _process(store: SqlStore, rules: RuleSet, clients: int, *, days: int, seed: int, progress: TextIO | None) -> Demo:
    """Generate the broker's events and handle them into ``store`` (one ``handle_many``, a
    progress bar on ``progress``), then scan at the end of the period."""
    engine = Engine(rules, store=store)
    started = time.perf_counter()
    count = 0
    last_shown = started  # the first line after half a second
    taken = ""  # the time of the latest event taken: where the simulated clock stands

    def timed(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal taken
        for event in stream:
            taken = event["at"]
            yield event

    def counted(result: Result) -> None:
        nonlocal count, last_shown
        count += 1
        now = time.perf_counter()
        if progress is not None and now - last_shown > 0.5:
            last_shown = now
            progress.write("\r" + _progress_line(taken, days, count, now - started))
            progress.flush()

    total = engine.handle_many(timed(_with_callers(engine, events(clients, days=days, seed=seed))),
                               keep_results=False, progress=counted, read_ahead=False)
    if progress is not None:  # the last line: every event handled
        progress.write("\r" + _progress_line(taken, days, count, time.perf_counter() - started) + "\n")
    engine.scan(END)
    return Demo(store, engine, total, count, time.perf_counter() - started)


def _progress_line(at: str, days: int, count: int, seconds: float, width: int = 30) -> str:
    """A progress bar by the simulated clock: how far into the ``days`` before ``END`` the
    events handled so far reach (the stream is in time order)."""
    day = (datetime.fromisoformat(at.replace("Z", "+00:00")) - END).total_seconds() / 86400 + days
    share = min(max(day / days, 0.0), 1.0)
    filled = round(share * width)
    return (f"  [{'#' * filled}{'.' * (width - filled)}] {share:4.0%}  day {min(int(day) + 1, days)}/{days}  "
            f"{count:,} events ({count / seconds if seconds else 0:,.0f}/s)")


MONTH = (datetime(2026, 2, 1, tzinfo=UTC), END)
"""The last whole month of the demo: KPIs, leaderboard (month targets apply as they are)."""


def render(demo: Demo, out: TextIO) -> None:
    """The terminal summary: processing, clients per stage and desk, the retention queues' tops."""
    store = demo.store
    s = demo.summary
    out.write(f"processed {demo.events:,} events in {demo.seconds:.0f} s: handled {s.handled:,}, "
              f"duplicates {s.duplicates:,}, dead-lettered {s.dead_lettered:,}\n\n")
    desks: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for client in store.clients():
        desks[client.get("desk_id") or "(none)"] += 1
        stages[client.get("stage") or "registered"] += 1
    out.write("clients by stage: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stages.items())) + "\n")
    out.write("clients by desk:  " + ", ".join(f"{k} {v:,}" for k, v in sorted(desks.items())) + "\n\n")
    items = store.queue_items()
    by_queue: dict[str, list[Any]] = {}
    for item in items:
        by_queue.setdefault(item.queue, []).append(item)
    out.write(f"retention and sales queues at {END:%Y-%m-%d} ({len(items):,} open items):\n")
    for queue, queued in sorted(by_queue.items()):
        out.write(f"  {queue} ({len(queued):,} open)\n")
        for item in queued[:3]:
            out.write(f"    {item.priority:>9.1f}  {item.client_id}  {item.trigger:<26} agent {item.agent_id or '-':<6} "
                      f"{'; '.join(item.actions[:1])}\n")
