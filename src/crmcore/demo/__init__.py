"""``crmcore demo``: the whole product on a synthetic broker, end to end.

:func:`run` generates the broker's events (:mod:`crmcore.demo.generate`), processes them
with the demo rules (``crmcore/demo/rules``: the example broker of ``examples/rules`` with
capacities for thousands of clients) on a SQL store — a fresh SQLite file by default —,
scans at the end of the period, and prints what a desk manager looks at.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from crmcore.demo.generate import END, events
from crmcore.engine import BatchSummary, Engine
from crmcore.rules.loader import load_rules
from crmcore.rules.ruleset import RuleSet
from crmcore.storage.sql import SqlStore

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_DB", "END", "MONTH", "RULES", "Demo", "demo_rules", "render", "run"]

RULES = Path(__file__).parent / "rules"
DEFAULT_DB = "sqlite:///crmcore-demo.db"
DEFAULT_CLIENTS = 2_000
"""Sized to finish in about two minutes on two cores with today's SQL store."""


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


def _with_callers(engine: Engine, stream: Iterable[dict[str, Any]], chunk: int = 200) -> Iterator[list[dict[str, Any]]]:
    """The stream in chunks for ``handle_many``; a contact ends a chunk, so that the agent
    who calls is the one holding the client once the events before it are handled (a call
    to a client nobody holds is dropped)."""
    pending: list[dict[str, Any]] = []
    for event in stream:
        if event["type"] == "contact":
            if pending:
                yield pending
                pending = []
            assignment = engine.store.assignment(event["client_id"])
            if assignment is None:
                continue
            event["agent_id"] = assignment.agent_id
        pending.append(event)
        if len(pending) >= chunk:
            yield pending
            pending = []
    if pending:
        yield pending


def run(clients: int = DEFAULT_CLIENTS, db: str = DEFAULT_DB, *, seed: int = 7, days: int = 90,
        progress: TextIO | None = None) -> Demo:
    """Generate, process and scan; ``db`` is emptied first when it is a SQLite file."""
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        path = Path(db.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    rules = demo_rules()
    store = SqlStore(db)
    engine = Engine(rules, store=store)
    started = time.perf_counter()
    total = BatchSummary()
    count = 0
    last_shown = 0.0
    for chunk in _with_callers(engine, events(clients, days=days, seed=seed)):
        summary = engine.handle_many(chunk, keep_results=False)
        total.handled += summary.handled
        total.duplicates += summary.duplicates
        total.dead_lettered += summary.dead_lettered
        count += len(chunk)
        now = time.perf_counter()
        if progress is not None and now - last_shown > 0.5:
            last_shown = now
            progress.write(f"\r  processing events: {count:,} ({count / (now - started):,.0f}/s)")
            progress.flush()
    if progress is not None:
        progress.write("\n")
    engine.scan(END)
    return Demo(store, engine, total, count, time.perf_counter() - started)


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
