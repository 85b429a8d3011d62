"""Benchmark: what ``Engine.handle_many`` adds on top of the rules it runs.

    python bench/engine_bench.py                 # 50,000 registrations, best of 3
    python bench/engine_bench.py --n 5           # best of 5 rounds
    python bench/engine_bench.py --events 5000   # quick smoke run

A seeded generator makes ``client_registered`` events as a back office sends them
(JSON-ready dicts: ISO timestamps in UTC and +02:00, optional fields left out or
null, a mix of countries, languages, e-mail domains, sources, IBs and the example
rule set's ``schema`` fields), preceded by ``ib_updated`` events for the IBs the
registrations name (some IBs are never announced: their clients have no ``ib``).
They are parsed once into pydantic models with ``crmcore.events.parse_event``
before anything is timed; the parse cost per event is measured on its own.

Timed, each round (``time.perf_counter``, garbage collection on, as in a host):

- **engine**: ``Engine(rules).handle_many(events, keep_results=False)`` on a fresh
  ``MemoryStore`` with ``examples/rules`` (scores, routing, notifications into the
  outbox, delivered to a ``NullNotifier`` every 1,000 events and at the end). The
  ``ib_updated`` events are handled in the timed run but not counted as events.
- **rules only**: ``rules.evaluate(context)`` for the same leads, the context built
  before timing as the engine builds it (``crmcore.state.new_client(event, rules)``,
  the IB's record, ``trading``, ``now`` = the event's ``at``).

The best of ``--n`` rounds counts; the ratio engine / rules-only is in time per
registration: how many times the cost of the rules alone one registration costs
in the engine. Before timing, the engine's stored scores and bands are checked
against the rules-only evaluation for every client.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import crmcore
from common import cpu_pressure
from crmcore.engine import Engine
from crmcore.events import ClientRegistered, IbUpdated, parse_event
from crmcore.notify.notifiers import NullNotifier
from crmcore.state import new_client
from crmcore.storage.memory import MemoryStore

RULES_DIR = Path(__file__).resolve().parent.parent / "examples" / "rules"

# ----------------------------------------------------------------------- synthetic events

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
BERLIN_SUMMER = timezone(timedelta(hours=2))

# country -> (weight, the languages its clients give, most likely first)
COUNTRIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "DE": (14, ("de", "en")), "AT": (4, ("de",)), "CH": (4, ("de", "fr", "it")),
    "GB": (8, ("en",)), "NL": (3, ("nl", "en")), "SE": (2, ("sv", "en")), "NO": (1, ("no", "en")),
    "DK": (1, ("da", "en")), "LU": (0.5, ("fr", "de")), "FR": (5, ("fr",)), "ES": (6, ("es",)),
    "IT": (6, ("it",)), "PL": (4, ("pl", "en")), "RU": (5, ("ru",)), "UA": (3, ("uk", "ru")),
    "BR": (6, ("pt",)), "ZA": (3, ("en",)), "AE": (3, ("ar", "en")), "TR": (4, ("tr",)),
    "NG": (3, ("en",)), "IN": (5, ("en", "hi")), "MY": (3, ("ms", "en")), "MX": (3, ("es",)),
}
COUNTRY_CODES = list(COUNTRIES)
COUNTRY_WEIGHTS = [COUNTRIES[c][0] for c in COUNTRY_CODES]
MAIL_DOMAINS = ["gmail.com", "GMail.com", "yahoo.com", "yahoo.de", "web.de", "gmx.de", "outlook.com",
                "hotmail.co.uk", "mail.ru", "yandex.ru", "icloud.com", "proton.me", "acme-trading.de",
                "example.co.uk", "firm.com", "bank.ch"]
SOURCES = ["referral", "seo_trading_guides", "webinar", "bonus_affiliate", "giveaway", "google_ads",
           "facebook", "tiktok", "ib_link", "direct"]
SOURCE_WEIGHTS = [6, 8, 4, 10, 5, 20, 15, 6, 10, 16]
CAMPAIGNS = ["bf_2025", "bf_2026", "xmas_2025", "webinar_2026", "spring_push", "gold_rush"]
REGIONS = ["EU", "UK", "CIS", "LATAM", "MEA", "APAC"]
# IBs announced by ib_updated: (id, quality, agent_id). Premium ones are in broker.yaml's PREMIUM_IBS;
# two have their own account manager (routing.yaml's ib_designated_agent), one an unknown agent.
IBS: list[tuple[str, int, str | None]] = [
    ("IB-1001", 92, None), ("IB-1007", 81, None), ("IB-1042", 75, None), ("IB-2001", 55, None),
    ("IB-2002", 40, None), ("IB-2003", 18, None), ("IB-2004", 63, "a07"), ("IB-2005", 30, "a10"),
    ("IB-2006", 70, None), ("IB-2007", 5, "gone-agent"),
]
UNANNOUNCED_IBS = ["IB-9001", "IB-9002"]  # named by registrations, never sent: no ib record
DESIGNATED = ["a01", "a04", "a08", "hos", "a99"]  # client.manager_id (a99: no such agent)


def _iso(rng: random.Random, at: datetime) -> str:
    """The timestamp as a host sends it: ``Z``, ``+00:00`` or a +02:00 local time."""
    roll = rng.random()
    if roll < 0.25:
        return at.astimezone(BERLIN_SUMMER).isoformat()
    if roll < 0.5:
        return at.isoformat()
    return at.isoformat().replace("+00:00", "Z")


def make_events(count: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(ib_updated events, count client_registered events)`` as JSON-ready dicts, in time order."""
    rng = random.Random(seed)
    ib_events = [
        {
            "type": "ib_updated", "id": f"ib-{n:03d}", "at": _iso(rng, START - timedelta(minutes=len(IBS) - n)),
            "ib": {"id": ib_id, "quality": quality, **({"agent_id": agent} if agent else {})},
        }
        for n, (ib_id, quality, agent) in enumerate(IBS)
    ]
    ib_ids = [ib for ib, _, _ in IBS] + UNANNOUNCED_IBS
    ib_weights = [6, 3, 3, 5, 5, 4, 3, 3, 4, 2, 1, 1]
    registrations = []
    at = START
    for i in range(count):
        at += timedelta(seconds=rng.randrange(1, 40), microseconds=rng.randrange(0, 1_000_000, 1000))
        country = rng.choices(COUNTRY_CODES, COUNTRY_WEIGHTS)[0]
        spoken = COUNTRIES[country][1]
        roll = rng.random()
        language = None if roll < 0.08 else "en" if roll < 0.2 else spoken[0] if roll < 0.85 else rng.choice(spoken)
        event: dict[str, Any] = {
            "type": "client_registered",
            "id": f"reg-{i:07d}",
            "at": _iso(rng, at),
            "client_id": f"C{i:07d}",
            "country": country,
        }
        optional: dict[str, Any] = {
            "language": language,
            "email": None if rng.random() < 0.07 else f"lead.{i}@{rng.choice(MAIL_DOMAINS)}",
            "phone_verified": rng.random() < 0.45,
            "ib_id": rng.choices(ib_ids, ib_weights)[0] if rng.random() < 0.3 else None,
            "source": rng.choices(SOURCES, SOURCE_WEIGHTS)[0] if rng.random() < 0.85 else None,
            "campaign": rng.choice(CAMPAIGNS) if rng.random() < 0.45 else None,
            "manager_id": rng.choice(DESIGNATED) if rng.random() < 0.01 else None,
            "region": rng.choice(REGIONS) if rng.random() < 0.3 else None,
            # broker.yaml's schema: none is required (each nullable or with a default)
            "utm_campaign": f"utm_{rng.randrange(40)}" if rng.random() < 0.35 else None,
            "vip": rng.random() < 0.01,
            "declared_income": rng.randrange(5, 400) * 1000 if rng.random() < 0.6 else None,
            "trading_experience": rng.choice([None, "none", "some", "experienced"]),
            "demo_trades": rng.randrange(0, 60) if rng.random() < 0.7 else 0,
        }
        for name, value in optional.items():
            # hosts leave out what they do not know, or send an explicit null / the default
            unknown = value is None or (name == "vip" and value is False) or (name == "demo_trades" and value == 0)
            if unknown and rng.random() < 0.6:
                continue
            event[name] = value
        registrations.append(event)
    return ib_events, registrations


# --------------------------------------------------------------------------------- timing


def run_engine(rules: crmcore.RuleSet, events: Sequence[Any]) -> tuple[float, float, Engine]:
    """One timed ``handle_many`` on a fresh MemoryStore (engine construction not timed):
    ``(seconds, seconds of it in garbage collection, engine)``."""
    engine = Engine(rules, MemoryStore(), NullNotifier())
    in_gc = 0.0
    started = 0.0

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        nonlocal in_gc, started
        if phase == "start":
            started = time.perf_counter()
        else:
            in_gc += time.perf_counter() - started

    gc.collect()
    gc.callbacks.append(gc_timer)
    try:
        start = time.perf_counter()
        engine.handle_many(events, keep_results=False)
        seconds = time.perf_counter() - start
    finally:
        gc.callbacks.remove(gc_timer)
    return seconds, in_gc, engine


def run_rules(rules: crmcore.RuleSet, contexts: Sequence[Mapping[str, Any]]) -> float:
    evaluate = rules.evaluate
    gc.collect()
    start = time.perf_counter()
    for context in contexts:
        evaluate(context)
    return time.perf_counter() - start


def time_parse(rules: crmcore.RuleSet, raw: Sequence[Mapping[str, Any]], repeat: int) -> float:
    """Best time of ``parse_event`` over ``raw``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        for data in raw:
            parse_event(data, rules)
        best = min(best, time.perf_counter() - start)
    return best


def build_contexts(rules: crmcore.RuleSet, ibs: Sequence[IbUpdated],
                   registrations: Sequence[ClientRegistered]) -> list[dict[str, Any]]:
    """The contexts the engine evaluates: the new client record, its IB's record, ``trading``, ``now``."""
    ib_records = {event.ib.id: event.ib.model_dump() for event in ibs}
    contexts = []
    for event in registrations:
        record = new_client(event, rules)
        ib_id = record["ib_id"]
        contexts.append({
            "client": record,
            "ib": ib_records.get(ib_id) if ib_id is not None else None,
            "trading": record["trading"],
            "now": event.at,
        })
    return contexts


def check_same(engine: Engine, rules: crmcore.RuleSet, contexts: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """The engine stored, for every client, the scores and bands the rules alone give; returns
    the routing outcomes and the dead-letter count."""
    store = engine.store
    for context in contexts:
        client_id = context["client"]["id"]
        want = rules.evaluate(context)
        stored = store.scores(client_id)
        if stored is None or dict(stored[0]) != dict(want.scores) or dict(stored[1]) != dict(want.bands):
            raise SystemExit(f"engine and rules disagree on {client_id}: {stored} != {(want.scores, want.bands)}")
    outcomes: Counter[str] = Counter()
    for decision in store.decisions():
        if decision.routing is not None:
            outcomes[decision.routing.outcome] += 1
    dead = store.dead_letters()
    if dead:
        raise SystemExit(f"{len(dead)} events were dead-lettered, the first: {dead[0]}")
    return outcomes


def without_capacity(rules_dir: Path, into: Path) -> Path:
    """Copies of the rule files with every agent's ``capacity`` taken out (no agent is ever full)."""
    for path in sorted(rules_dir.glob("*.y*ml")):
        text = re.sub(r",?\s*capacity: \d+", "", path.read_text(encoding="utf-8"))
        (into / path.name).write_text(text, encoding="utf-8")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000, help="client_registered events (default 50,000)")
    parser.add_argument("--n", type=int, default=3, help="timed rounds; the best run counts (default 3)")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--rules", type=Path, default=RULES_DIR, help="rule folder (default examples/rules)")
    parser.add_argument("--no-capacity", action="store_true",
                        help="take the agents' capacity out of the rules: the desks never fill up, so "
                             "registrations are assigned instead of (after the first ~600) unassigned")
    args = parser.parse_args(argv)
    if args.n < 1 or args.events < 1:
        parser.error("--n and --events must be at least 1")
    if args.no_capacity:
        with tempfile.TemporaryDirectory() as tmp:
            return run(args, crmcore.load_rules(without_capacity(args.rules, Path(tmp))))
    return run(args, crmcore.load_rules(args.rules))


def run(args: argparse.Namespace, rules: crmcore.RuleSet) -> int:
    """Generate, parse, check and time; print the figures."""
    print(f"crmcore {crmcore.__version__}, Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    raw_ibs, raw_registrations = make_events(args.events, args.seed)
    ibs = [parse_event(data, rules) for data in raw_ibs]
    registrations = [parse_event(data, rules) for data in raw_registrations]
    assert all(isinstance(e, IbUpdated) for e in ibs)
    assert all(isinstance(e, ClientRegistered) for e in registrations)
    events = [*ibs, *registrations]
    contexts = build_contexts(rules, ibs, registrations)  # type: ignore[arg-type]
    count = len(registrations)

    parse = time_parse(rules, raw_registrations, args.n)
    print(f"{count:,} client_registered events after {len(ibs)} ib_updated (seed {args.seed}), rules {args.rules}"
          f"{' without capacity' if args.no_capacity else ''}: "
          f"parse_event {1e6 * parse / count:.1f} us/event ({count / parse:,.0f} events/s; not in the timings below)")

    engine_times: list[float] = []
    gc_times: list[float] = []
    rules_times: list[float] = []
    engine: Engine | None = None
    for round_ in range(args.n):
        pressure = cpu_pressure()
        if pressure is not None and pressure > 5:
            print(f"  warning: the machine is busy (CPU pressure {pressure:.0f}% over 10 s): absolute figures will be low")
        if round_ % 2:
            rules_times.append(run_rules(rules, contexts))
            seconds, in_gc, engine = run_engine(rules, events)
        else:
            seconds, in_gc, engine = run_engine(rules, events)
            rules_times.append(run_rules(rules, contexts))
        engine_times.append(seconds)
        gc_times.append(in_gc)
        if round_ < args.n - 1:
            del engine  # the next round starts on a fresh store: free this one first
    assert engine is not None
    outcomes = check_same(engine, rules, contexts)
    store = engine.store
    routed = ", ".join(f"{k} {outcomes.get(k, 0):,}" for k in ("assigned", "pooled", "unassigned", "unrouted"))
    print(f"engine outcomes: {routed}; {len(store.outbox.entries()):,} notifications, "
          f"{store.outbox.pending_count()} pending; scores and bands match rules.evaluate for every client")

    best_engine, best_rules = min(engine_times), min(rules_times)
    paired = statistics.median(e / r for e, r in zip(engine_times, rules_times, strict=True))
    print(f"\nbest of {args.n} rounds ({count:,} registrations; the {len(ibs)} ib_updated events are in the engine's time):")
    in_gc = gc_times[engine_times.index(best_engine)]
    print(f"  engine.handle_many  {count / best_engine:>10,.0f} events/s  {1e6 * best_engine / count:8.1f} us/event"
          f"  ({100 * in_gc / best_engine:.0f}% of it in garbage collection: the store keeps every decision)")
    print(f"  rules.evaluate      {count / best_rules:>10,.0f} events/s  {1e6 * best_rules / count:8.1f} us/event")
    print(f"  engine / rules-only time: {best_engine / best_rules:.1f}x (paired median {paired:.1f}x); "
          f"the engine adds {1e6 * (best_engine - best_rules) / count:.1f} us/event")
    print(f"  parse_event (before the engine, not timed above): {1e6 * parse / count:.1f} us/event, "
          f"{parse / best_engine:.2f}x the engine's time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
