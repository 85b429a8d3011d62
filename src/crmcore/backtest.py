"""What a rule change would have done: replay events under two rule sets and compare.

``backtest(old, new, events)`` runs each event through two engines, each on its own
MemoryStore (nothing of the host's is touched), with the event's own time as ``now`` (the
engine never reads the clock, so a replay decides exactly as live would have), and reports:

- **assignments** per desk and agent (registration routing, FTD hand-overs, re-routing);
- **bands**: each score's band distribution over the clients, from their last decision;
- **triggers fired**, per trigger (on: triggers and condition triggers, cooldowns allowing);
- **SLA breaches**, alerts and reassignments, as the scans found them;
- **routes that differ**: every client whose routing went otherwise (a different outcome,
  rule, desk or agent at any routing step, in order), with both routing traces.

Scans run as a host's periodic ``scan`` would (``scan_every``, default a day): at every
boundary of the interval (multiples of it from 1970-01-01 UTC, so ``1d`` is midnight UTC)
that the event times cross, before the first event at or after it, and once at the latest
event's time (unless a scan just ran then). Their decisions are tallied like the events'.

Events are read and validated once when both rule sets have the same client schema (else
once for each), and both engines take each event in turn: a backtest costs about what two
plain runs (scanning at the same times) cost, less the second parse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from crmcore.engine import Engine, Result
from crmcore.events import BadEvent, Event, EventError, parse_event, read_events
from crmcore.routing.router import RoutingResult
from crmcore.rules.model import duration_seconds
from crmcore.rules.ruleset import RuleSet
from crmcore.storage.memory import MemoryStore
from crmcore.storage.records import Decision, routing_dict

__all__ = ["Backtest", "Replay", "RouteChange", "backtest", "scan_interval"]


@dataclass
class Replay:
    """One rule set's run over the events."""

    version: str
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    assignments: Counter[tuple[str, str]] = field(default_factory=Counter)  # (desk, agent)
    fired: Counter[str] = field(default_factory=Counter)
    sla_breaches: Counter[str] = field(default_factory=Counter)  # "alert" / "reassign"
    bands: dict[str, dict[str, str | None]] = field(default_factory=dict)  # client -> score -> band
    routes: dict[str, list[_Routed]] = field(default_factory=dict)  # client -> routing steps in order

    def see(self, result: Result) -> None:
        if result.duplicate:
            self.duplicates += 1
        elif result.dead_lettered:
            self.dead_lettered += 1
        else:
            self.handled += 1
        self.tally(result.decisions)

    def tally(self, decisions: Iterable[Decision]) -> None:
        """An event's or a scan's decisions."""
        for decision in decisions:
            self._decision(decision)

    def _decision(self, decision: Decision) -> None:
        if decision.assignment is not None:
            self.assignments[(decision.assignment.desk, decision.assignment.agent_id)] += 1
        self.fired.update(decision.fired)
        if decision.sla_breach is not None:
            self.sla_breaches[decision.sla_breach] += 1
        if decision.bands:
            self.bands[decision.client_id] = dict(decision.bands)
        if decision.routing is not None:  # kept as it is: made JSON only for the clients that differ
            self.routes.setdefault(decision.client_id, []).append((decision.event_id, decision.stage, decision.routing))

    def band_counts(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for bands in self.bands.values():
            for score, band in bands.items():
                counts.setdefault(score, Counter())[band or "-"] += 1
        return counts

    def desk_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (desk, _), n in self.assignments.items():
            counts[desk] += n
        return counts


_Routed = tuple[str, str | None, RoutingResult]  # (event id, routing stage, routing)


def _compared(step: _Routed) -> tuple[Any, ...]:
    """What makes two routing steps the same: stage, outcome, rule, desk and agent."""
    _, stage, routing = step
    return stage, routing.outcome, routing.rule, routing.desk, routing.agent


def _step_dict(step: _Routed) -> dict[str, Any]:
    event_id, stage, routing = step
    return {"event_id": event_id, **routing_dict(stage, routing)}


@dataclass(frozen=True)
class RouteChange:
    """A client routed otherwise: both runs' routing steps, each with its trace."""

    client_id: str
    old: list[dict[str, Any]]
    new: list[dict[str, Any]]

    def summary(self, steps: list[dict[str, Any]]) -> str:
        if not steps:
            return "not routed"
        return "; ".join(
            f"{s['stage']}: {s['outcome']}" + (f" by {s['rule']}" if s["rule"] else "")
            + (f" to {s['desk']}" if s["desk"] else "") + (f"/{s['agent']}" if s["agent"] else "")
            for s in steps
        )


@dataclass
class Backtest:
    """The two replays and what differs between them (see the module docstring)."""

    old: Replay
    new: Replay
    events: int = 0
    scan_every: timedelta | None = None  # None: no scans ran
    scans: int = 0

    def route_changes(self) -> list[RouteChange]:
        changes = []
        for client_id in sorted(self.old.routes.keys() | self.new.routes.keys()):
            old, new = self.old.routes.get(client_id, []), self.new.routes.get(client_id, [])
            if [_compared(step) for step in old] != [_compared(step) for step in new]:
                changes.append(RouteChange(client_id, [_step_dict(step) for step in old], [_step_dict(step) for step in new]))
        return changes

    def as_dict(self) -> dict[str, Any]:
        old_bands, new_bands = self.old.band_counts(), self.new.band_counts()
        return {
            "events": self.events,
            "scans": {"every": _interval_text(self.scan_every), "count": self.scans},
            "old": {"version": self.old.version, "handled": self.old.handled, "duplicates": self.old.duplicates,
                    "dead_lettered": self.old.dead_lettered},
            "new": {"version": self.new.version, "handled": self.new.handled, "duplicates": self.new.duplicates,
                    "dead_lettered": self.new.dead_lettered},
            "assignments": {
                "by_desk": _compare(self.old.desk_counts(), self.new.desk_counts()),
                "by_agent": [
                    {"desk": desk, "agent": agent, **row}
                    for (desk, agent), row in _compare_rows(self.old.assignments, self.new.assignments)
                ],
            },
            "bands": {score: _compare(old_bands.get(score, Counter()), new_bands.get(score, Counter()))
                      for score in sorted(old_bands.keys() | new_bands.keys())},
            "triggers_fired": _compare(self.old.fired, self.new.fired),
            "sla_breaches": _compare(self.old.sla_breaches, self.new.sla_breaches),
            "route_changes": [{"client_id": c.client_id, "old": c.old, "new": c.new} for c in self.route_changes()],
        }

    def render(self, *, traces: bool = True, limit: int = 50) -> str:
        """The report as text, changes first-class: rows whose count moved are marked ``*``."""
        data = self.as_dict()
        lines = [
            f"backtest over {self.events:,} events: old {self.old.version[:12]} -> new {self.new.version[:12]}",
            f"  old: handled {self.old.handled:,}, duplicates {self.old.duplicates:,}, dead-lettered {self.old.dead_lettered:,}",
            f"  new: handled {self.new.handled:,}, duplicates {self.new.duplicates:,}, dead-lettered {self.new.dead_lettered:,}",
            f"  scans: {self.scans:,}" + (f" (every {_interval_text(self.scan_every)} and at the last event)"
                                           if self.scan_every else " (--scan-every 0)"),
            "",
            "assignments by desk and agent (old -> new):",
        ]
        by_agent: dict[str, list[dict[str, Any]]] = {}
        for row in data["assignments"]["by_agent"]:
            by_agent.setdefault(row["desk"], []).append(row)
        for desk, row in data["assignments"]["by_desk"].items():
            lines.append(_row(desk, row, 2))
            lines.extend(_row(agent_row["agent"], agent_row, 4) for agent_row in by_agent.get(desk, []))
        lines += ["", "bands (clients, by their last decision):"]
        for score, rows in data["bands"].items():
            lines.append(f"  {score}")
            lines.extend(_row(band, row, 4) for band, row in rows.items())
        lines += ["", "triggers fired:"]
        lines.extend(_row(name, row, 2) for name, row in data["triggers_fired"].items())
        if not data["triggers_fired"]:
            lines.append("  (none)")
        lines += ["", "SLA breaches (scans):"]
        lines.extend(_row(mode, row, 2) for mode, row in data["sla_breaches"].items())
        if not data["sla_breaches"]:
            lines.append("  (none)")
        changes = self.route_changes()
        lines += ["", f"clients whose route differs: {len(changes):,}"]
        for change in changes[:limit]:
            lines.append(f"  {change.client_id}")
            lines.append(f"    old: {change.summary(change.old)}")
            lines.append(f"    new: {change.summary(change.new)}")
            if traces:
                for label, steps in (("old", change.old), ("new", change.new)):
                    for step in steps:
                        lines.append(f"      {label} {step['stage']} trace: " + ", ".join(_step(s) for s in step["trace"]))
        if len(changes) > limit:
            lines.append(f"  ... and {len(changes) - limit:,} more (--format json lists them all)")
        return "\n".join(lines) + "\n"


def _compare(old: Mapping[Any, int], new: Mapping[Any, int]) -> dict[Any, dict[str, int]]:
    return {key: {"old": old.get(key, 0), "new": new.get(key, 0), "change": new.get(key, 0) - old.get(key, 0)}
            for key in sorted(old.keys() | new.keys(), key=str)}


def _compare_rows(old: Mapping[Any, int], new: Mapping[Any, int]) -> Iterator[tuple[Any, dict[str, int]]]:
    yield from _compare(old, new).items()


def _row(name: str, row: Mapping[str, int], indent: int) -> str:
    mark = "*" if row["change"] else " "
    return f"{' ' * indent}{name:<{30 - indent}} {row['old']:>8,} -> {row['new']:>8,}  {row['change']:>+8,} {mark}".rstrip()


def _step(step: Mapping[str, Any]) -> str:
    text = f"{step['rule']} {step['outcome']}"
    if step.get("agent"):
        text += f" {step['agent']}"
    if step.get("excluded"):
        text += " (excluded " + ", ".join(f"{a}: {why}" for a, why in step["excluded"].items()) + ")"
    return text


def backtest(
    old: RuleSet, new: RuleSet, events: str | Path | Iterable[str] | Iterable[Mapping[str, Any] | Event | BadEvent],
    *, scan_every: str | timedelta | None = "1d",
) -> Backtest:
    """Replay ``events`` (a JSON Lines path or lines, or event mappings / parsed events) under
    ``old`` and ``new`` on fresh MemoryStores and compare the two runs. ``scan_every``: the
    scan interval (``"1d"``, ``"6h"``, a timedelta; ``None``, ``"0"`` or ``"none"``: no scans)."""
    every = scan_interval(scan_every)
    old_engine, new_engine = Engine(old, store=MemoryStore()), Engine(new, store=MemoryStore())
    report = Backtest(Replay(old.version), Replay(new.version), scan_every=every)
    for chunk, scan_at in _steps(_pairs(old, new, events), every, _at):  # in step: bounded memory
        if chunk:
            report.events += len(chunk)
            old_engine.handle_many([o for o, _ in chunk], keep_results=False, progress=report.old.see)
            new_engine.handle_many([n for _, n in chunk], keep_results=False, progress=report.new.see)
        if scan_at is not None:
            report.scans += 1
            report.old.tally(old_engine.scan(scan_at))
            report.new.tally(new_engine.scan(scan_at))
    return report


def scan_interval(every: str | timedelta | None) -> timedelta | None:
    """A scan interval: a duration as rules write them (``"1d"``, ``"6h"``) or a timedelta;
    ``None`` (no scans) for ``None``, ``"0"``, ``"none"`` or zero. ValueError otherwise."""
    if isinstance(every, str):
        text = every.strip()
        every = None if text.lower() in ("0", "none") else timedelta(seconds=duration_seconds(text))
    if every is not None and every < timedelta(0):
        raise ValueError(f"'{every}' is negative: give a positive interval, or 0 for no scans")
    return every or None


def _interval_text(every: timedelta | None) -> str | None:
    if every is None:
        return None
    seconds = every.total_seconds()
    unit, size = next((u, n) for u, n in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
                      if seconds % n == 0 or n == 1)
    return f"{seconds / size:g}{unit}"


_CHUNK = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")


def _steps(
    items: Iterable[_T], every: timedelta | None, time_of: Callable[[_T], datetime | None]
) -> Iterator[tuple[list[_T], datetime | None]]:
    """The items in chunks of at most ``_CHUNK``, each with the scan due after it (or None):
    every interval boundary the event times cross (before the first event at or after it)
    and, at the end, the latest event's time unless a scan already ran then."""
    chunk: list[_T] = []
    latest: datetime | None = None  # the latest event time so far (times may go back)
    scanned: datetime | None = None  # the last scan's time
    for item in items:
        at = time_of(item) if every is not None else None
        if at is not None and (latest is None or at > latest):
            if latest is not None:
                assert every is not None
                boundary = _EPOCH + ((latest - _EPOCH) // every + 1) * every  # the first after latest
                while boundary <= at:
                    yield chunk, boundary
                    chunk, scanned = [], boundary
                    boundary += every
            latest = at
        chunk.append(item)
        if len(chunk) >= _CHUNK:
            yield chunk, None
            chunk = []
    yield chunk, latest if latest != scanned else None


def _at(pair: tuple[Any, Any]) -> datetime | None:
    """The event's time, as either rule set read it (None: neither could)."""
    for event in pair:
        if not isinstance(event, BadEvent | Mapping):
            return event.at  # type: ignore[no-any-return]
    return None


def _pairs(
    old: RuleSet, new: RuleSet, events: str | Path | Iterable[Any]
) -> Iterator[tuple[Any, Any]]:
    """Each event as each rule set reads it: parsed once when their client schemas agree."""
    same = dict(old.client_types) == dict(new.client_types)
    if isinstance(events, str | Path) or _is_lines(events):
        if same:
            for line in read_events(events, old):
                yield line, line
        else:
            yield from zip(read_events(events, old), read_events(events, new), strict=True)
        return
    for event in events:
        if isinstance(event, Mapping):  # validated here, to know its time; a bad one stays a mapping
            parsed = _parsed(event, old)
            yield parsed, parsed if same else _parsed(event, new)
        else:
            yield event, event


def _parsed(event: Mapping[str, Any], rules: RuleSet) -> Event | Mapping[str, Any]:
    """The event as ``rules`` reads it, or the mapping itself for the engine to dead-letter."""
    try:
        return parse_event(event, rules)
    except EventError:
        return event


def _is_lines(events: Iterable[Any]) -> bool:
    return isinstance(events, list | tuple) and bool(events) and isinstance(events[0], str)
