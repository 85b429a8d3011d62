"""What the engine keeps: assignments, pool entries, decisions, dead letters, queue items.

Frozen values; a store replaces them, never mutates them. Times are aware UTC datetimes.
``as_dict()`` gives the JSON-ready form (``crmcore run --decisions``, ``explain``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from crmcore.notify.notification import Notification
from crmcore.routing.router import RoutingResult, Step
from crmcore.rules.ruleset import Evaluation
from crmcore.serialize import jsonable

__all__ = [
    "Assignment", "DeadLetter", "Decision", "EndReason", "PoolEntry", "QueueItem", "jsonable",
    "step_dict",
]

EndReason = Literal["handover", "agent_inactive", "sla_breach", "reassigned"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """A client held by an agent from ``assigned_at`` until ``ended_at`` (open while ``None``).

    The history of a client's assignments is the basis of KPI attribution: an event at ``t``
    belongs to the assignment with ``assigned_at <= t < ended_at`` — except the FTD, which
    belongs to the assignment it ended (``ended_by`` is the FTD event's id, SPEC §11).
    ``stage`` is the routing stage whose rules made it (``registration`` or ``ftd``; a claim
    from the pool keeps the pool's stage): re-routing uses the same rules.
    """

    client_id: str
    agent_id: str
    desk: str
    stage: str
    rule: str | None
    strategy: str | None  # round_robin | least_loaded | weighted | claim | manual | None (assign.agent)
    assigned_at: datetime
    event_id: str  # the event (or scan, or claim) that decided it
    rule_version: str
    trace: tuple[Step, ...] = ()
    sla_due_at: datetime | None = None
    contacted_at: datetime | None = None  # first contact by this agent
    breached_at: datetime | None = None  # when a scan found the SLA missed
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    ended_by: str | None = None

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def agent(self) -> str:
        """The agent's id (``agent_id``)."""
        return self.agent_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id, "agent_id": self.agent_id, "desk": self.desk,
            "stage": self.stage, "rule": self.rule, "strategy": self.strategy,
            "assigned_at": jsonable(self.assigned_at), "event_id": self.event_id,
            "rule_version": self.rule_version, "sla_due_at": jsonable(self.sla_due_at),
            "contacted_at": jsonable(self.contacted_at), "breached_at": jsonable(self.breached_at),
            "ended_at": jsonable(self.ended_at), "end_reason": self.end_reason,
            "ended_by": self.ended_by,
        }


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """A client waiting in a desk's pool for an agent to claim them.

    ``reason``: ``pooled`` (a ``pool`` rule) or ``unassigned`` (nobody could be assigned).
    """

    client_id: str
    desk: str
    stage: str
    reason: Literal["pooled", "unassigned"]
    since: datetime
    event_id: str
    rule: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id, "desk": self.desk, "stage": self.stage,
            "reason": self.reason, "since": jsonable(self.since), "event_id": self.event_id,
            "rule": self.rule,
        }


Cause = Literal["event", "agent_inactive", "sla_breach", "claim", "scan"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one client on one occasion, and why.

    ``cause``: ``event`` (the client's own event), ``agent_inactive`` (their agent was made
    inactive), ``sla_breach`` (a scan found the first-contact SLA missed) or ``claim``.
    ``routing`` is set when routing ran (registration, FTD, re-routing) with its ``stage``.
    ``rule_version`` is the sha256 of the rule set that decided.
    """

    event_id: str
    client_id: str
    at: datetime
    cause: Cause
    rule_version: str
    scores: Mapping[str, float] = field(default_factory=dict)
    bands: Mapping[str, str | None] = field(default_factory=dict)
    stage: str | None = None  # the routing stage, when routing ran
    routing: RoutingResult | None = None
    sla_breach: Literal["alert", "reassign"] | None = None
    assignment: Assignment | None = None  # the assignment this decision made
    triggers: tuple[str, ...] = ()  # the condition triggers that hold after it
    notifications: tuple[Notification, ...] = ()
    evaluation: Evaluation | None = field(default=None, repr=False, compare=False)
    fired: tuple[str, ...] = ()  # the triggers that fired (cooldowns allowing)
    saved_breakdown: Mapping[str, Mapping[str, float]] | None = field(default=None, repr=False, compare=False)

    @property
    def breakdown(self) -> dict[str, dict[str, float]]:
        """Per score, the points of each rule that held: worked out from the evaluation when
        read (off the hot path), or as a SQL store saved it."""
        if self.evaluation is not None:
            return self.evaluation.breakdown
        return {score: dict(points) for score, points in (self.saved_breakdown or {}).items()}

    def as_dict(self) -> dict[str, Any]:
        routing = self.routing
        return {
            "event_id": self.event_id,
            "client_id": self.client_id,
            "at": jsonable(self.at),
            "cause": self.cause,
            "rule_version": self.rule_version,
            "scores": jsonable(dict(self.scores)),
            "bands": dict(self.bands),
            "breakdown": jsonable(self.breakdown),
            "routing": None if routing is None else routing_dict(self.stage, routing),
            "sla_breach": self.sla_breach,
            "assignment": None if self.assignment is None else self.assignment.as_dict(),
            "triggers": list(self.triggers),
            "fired": list(self.fired),
            "notifications": [
                {"id": n.id, "kind": n.kind, "recipient": n.recipient} for n in self.notifications
            ],
        }


def routing_dict(stage: str | None, routing: RoutingResult) -> dict[str, Any]:
    return {
        "stage": stage,
        "outcome": routing.outcome,
        "rule": routing.rule,
        "desk": routing.desk,
        "agent": routing.agent,
        "strategy": routing.strategy,
        "trace": [step_dict(step) for step in routing.trace],
    }


def step_dict(step: Step) -> dict[str, Any]:
    """One routing step as JSON: the rule, what came of it, the agent, who was excluded and why."""
    out: dict[str, Any] = {"rule": step.rule, "outcome": step.outcome}
    if step.agent is not None:
        out["agent"] = step.agent
    if step.excluded:
        out["excluded"] = {agent: str(reason) for agent, reason in step.excluded.items()}
    return out


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that could not be handled, kept with the reason; nothing of it was applied.

    ``event_id`` is ``None`` when the input had no usable id; ``line`` is set for JSON Lines.
    """

    event_id: str | None
    raw: str
    reason: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One open reason to act on a client, in a queue (filled by triggers, SPEC §2).

    One item per client per queue; ``desk`` and ``agent_id`` are the client's at the time the
    item was opened or last updated, for permission checks and task lists.
    """

    client_id: str
    queue: str
    trigger: str
    priority: float
    actions: tuple[str, ...]
    opened_at: datetime
    desk: str | None
    agent_id: str | None
    updated_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id, "queue": self.queue, "trigger": self.trigger,
            "priority": self.priority, "actions": list(self.actions),
            "opened_at": jsonable(self.opened_at), "updated_at": jsonable(self.updated_at),
            "resolved_at": jsonable(self.resolved_at), "desk": self.desk, "agent_id": self.agent_id,
        }
