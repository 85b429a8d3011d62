"""Records to JSON text and back, exactly: what a SQL store keeps in its JSON columns.

JSON has no datetime, duration or decimal, so they travel tagged:
``{"$t": "2026-03-02T09:00:00+00:00"}``, ``{"$td": 1800000000}`` (µs) and ``{"$d": "250.50"}``
(crmcore's records never hold one-key dicts with such keys); everything else is plain JSON (tuples come back as lists, except
where a record's reader turns them back). Each record type has a ``*_to`` / ``*_from`` pair.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.notify.notification import Notification
from crmcore.routing.eligibility import Exclusion
from crmcore.routing.router import RoutingResult, RoutingState, Step
from crmcore.storage.records import Assignment, Decision

__all__ = [
    "assignment_from", "assignment_to", "decision_from", "decision_to", "dumps", "loads",
    "notification_from", "notification_to", "trace_from", "trace_to",
]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$td": value // timedelta(microseconds=1)}
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$t" in obj:
            return datetime.fromisoformat(obj["$t"])
        if "$d" in obj:
            return Decimal(obj["$d"])
        if "$td" in obj:
            return timedelta(microseconds=obj["$td"])
    return obj


def dumps(value: Any) -> str:
    """JSON text with datetimes and Decimals tagged (compact, keys in insertion order)."""
    return json.dumps(value, default=_default, separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    return json.loads(text, object_hook=_hook)


# --- records ------------------------------------------------------------------------------------


def trace_to(trace: tuple[Step, ...]) -> list[Any]:
    return [[s.rule, s.outcome, s.agent, {a: str(r) for a, r in s.excluded.items()}] for s in trace]


def trace_from(data: list[Any]) -> tuple[Step, ...]:
    return tuple(
        Step(rule, outcome, agent, {a: Exclusion(r) for a, r in excluded.items()})
        for rule, outcome, agent, excluded in data
    )


def routing_to(result: RoutingResult | None) -> Any:
    if result is None:
        return None
    return [result.outcome, result.rule, result.desk, result.agent, result.strategy, trace_to(result.trace)]


def routing_from(data: Any) -> RoutingResult | None:
    if data is None:
        return None
    outcome, rule, desk, agent, strategy, trace = data
    return RoutingResult(outcome, rule, desk, agent, strategy, trace_from(trace))


def notification_to(n: Notification) -> dict[str, Any]:
    return {f.name: getattr(n, f.name) for f in fields(n)} | {"payload": dict(n.payload)}


def notification_from(data: Mapping[str, Any]) -> Notification:
    return Notification(**data)


def assignment_to(a: Assignment) -> dict[str, Any]:
    return {f.name: getattr(a, f.name) for f in fields(a)} | {"trace": trace_to(a.trace)}


def assignment_from(data: Mapping[str, Any]) -> Assignment:
    fields = dict(data)
    fields["trace"] = trace_from(fields["trace"])
    return Assignment(**fields)


def decision_to(d: Decision) -> dict[str, Any]:
    """Everything of a decision, its breakdown worked out (the evaluation does not travel)."""
    return {
        "event_id": d.event_id, "client_id": d.client_id, "at": d.at, "cause": d.cause,
        "rule_version": d.rule_version, "scores": dict(d.scores), "bands": dict(d.bands),
        "stage": d.stage, "routing": routing_to(d.routing), "sla_breach": d.sla_breach,
        "assignment": None if d.assignment is None else assignment_to(d.assignment),
        "triggers": list(d.triggers),
        "fired": list(d.fired),
        "notifications": [notification_to(n) for n in d.notifications],
        "breakdown": d.breakdown,
    }


def decision_from(data: Mapping[str, Any]) -> Decision:
    assignment = data["assignment"]
    return Decision(
        data["event_id"], data["client_id"], data["at"], data["cause"], data["rule_version"],
        data["scores"], data["bands"], data["stage"], routing_from(data["routing"]),
        data["sla_breach"], None if assignment is None else assignment_from(assignment),
        tuple(data["triggers"]), tuple(notification_from(n) for n in data["notifications"]),
        fired=tuple(data.get("fired", ())), saved_breakdown=data["breakdown"],
    )


def routing_state_to(state: RoutingState) -> dict[str, tuple[str | None, dict[str, float]]]:
    """Per desk: the round-robin pointer and the weighted current values."""
    desks = set(state.pointers) | set(state.current)
    return {desk: (state.pointers.get(desk), dict(state.current.get(desk, {}))) for desk in desks}
