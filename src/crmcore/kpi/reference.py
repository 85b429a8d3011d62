"""The KPIs in plain Python over any :class:`~crmcore.storage.Store`: slow and obvious.

This is what a MemoryStore reports with, and what the SQL back end is tested against: it
reads only the protocol's methods (``events()``, ``clients()``, ``assignments(id)``,
``agents()``) and follows SPEC §6/§11 one client and one event at a time. It shares no
query logic with :mod:`crmcore.kpi.sql`; only the final arithmetic (:func:`finish`).

Attribution, as both back ends define it (docs/kpis.md):
- an event is credited to the assignment it ended (the FTD and its hand-over), else to the
  one holding the client at the event's time (``assigned_at <= at < ended_at``; the latest
  started when several do);
- a registration to the assignment its own routing made;
- an FTD to the assignment the hand-over ended, else to the one holding the client then;
- churn and reactivation to the one holding the client at the period's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.events import CampaignCost, Event
from crmcore.kpi.definitions import COST_GROUPINGS, Figures, Period, campaign_share, families
from crmcore.rules import model
from crmcore.storage.base import Store
from crmcore.storage.records import Assignment

__all__ = ["figures"]

_MICRO = timedelta(microseconds=1)


def _holding(history: Sequence[Assignment], at: datetime, made_by: str | None = None) -> Assignment | None:
    """The assignment holding the client at ``at``, not counting one ``made_by`` that event."""
    found = None
    for a in history:
        if a.assigned_at <= at and (a.ended_at is None or a.ended_at > at) and a.event_id != made_by:
            found = a
    return found


def _credited(history: Sequence[Assignment], event: Event) -> Assignment | None:
    ended = [a for a in history if a.ended_by == event.id]
    return ended[-1] if ended else _holding(history, event.at, made_by=event.id)


def _ftd_holder(history: Sequence[Assignment], ftd_at: datetime) -> Assignment | None:
    """Who held the client when the FTD happened: the assignment its hand-over ended, else
    the one holding the client then, but not the one the hand-over made (a client waiting in
    a pool at the FTD is credited to nobody)."""
    handed = [a for a in history if a.end_reason == "handover"]
    if handed:
        return handed[-1]
    found = None
    for a in history:
        if a.stage == "ftd" and a.assigned_at == ftd_at:
            continue
        if a.assigned_at <= ftd_at and (a.ended_at is None or a.ended_at > ftd_at):
            found = a
    return found


class _Groups:
    """Figures per group, keyed as the grouping says (see the module docstring)."""

    def __init__(self, by: str | None, agents: Mapping[str, model.Agent]) -> None:
        self.by, self.agents = by, agents
        self.figures: dict[Any, Figures] = {}

    def of(self, assignment: Assignment | None, client: Mapping[str, Any]) -> Figures:
        by = self.by
        key: Any = None
        if by in ("agent", "desk", "team"):
            if assignment is not None:
                if by == "agent":
                    key = assignment.agent_id
                elif by == "desk":
                    key = assignment.desk
                else:
                    agent = self.agents.get(assignment.agent_id)
                    key = agent.manager if agent is not None else None
        elif by is not None:
            key = client.get({"ib": "ib_id"}.get(by, by))
        found = self.figures.get(key)
        if found is None:
            found = self.figures[key] = Figures()
        return found


def figures(
    store: Store, metrics: Sequence[str], period: Period, as_of: datetime, by: str | None
) -> dict[Any, Figures]:
    """Each group's figures for ``metrics`` over ``period`` (see the module docstring)."""
    wanted = families(metrics)
    start, end = period.start, period.end
    clients = {c["id"]: c for c in store.clients()}
    history = {cid: store.assignments(cid) for cid in clients}
    events = list(store.events())
    per_client: dict[str, list[Any]] = {}
    for e in events:
        cid = getattr(e, "client_id", None)
        if cid is not None:
            per_client.setdefault(cid, []).append(e)
    groups = _Groups(by, store.agents())
    if by is None:
        groups.figures[None] = Figures()
    registration_ids = {e.id for e in events if e.type == "client_registered"}
    durations: dict[int, tuple[Figures, list[int]]] = {}

    for cid, client in clients.items():
        mine, theirs = history[cid], per_client.get(cid, [])
        registered_at, ftd_at = client["registered_at"], client["ftd_at"]
        if "registered" in wanted and start <= registered_at < end:
            by_routing = next((a for a in mine if a.event_id in registration_ids), None)
            f = groups.of(by_routing, client)
            f.mark("registered")
            f.registrations += 1
            if ftd_at is not None and ftd_at <= as_of:
                f.converted += 1
        if "ftd" in wanted and ftd_at is not None and start <= ftd_at < end:
            f = groups.of(_ftd_holder(mine, ftd_at), client)
            f.mark("ftd")
            f.ftd_count += 1
            took = (ftd_at - registered_at) // _MICRO
            f.ftd_micros += took
            durations.setdefault(id(f), (f, []))[1].append(took)
            for e in theirs:
                if e.at > as_of:
                    continue
                if e.type == "trade" and e.revenue is not None:
                    f.clv_revenue += e.revenue
                elif e.type == "deposit" and e.status == "completed":
                    f.clv_net_deposits += e.amount
                elif e.type == "withdrawal" and e.status == "completed":
                    f.clv_net_deposits -= e.amount
        if "retention" in wanted and ftd_at is not None and ftd_at < start:
            trades = [e.at for e in theirs if e.type == "trade"]
            before = period.previous()
            was_active = any(before.start <= t < before.end for t in trades)
            recent = any(start - timedelta(days=30) <= t < start for t in trades)
            now_active = any(start <= t < end for t in trades)
            if was_active or not recent:
                f = groups.of(_holding(mine, start), client)
                f.mark("retention")
                if was_active:
                    f.churn_base += 1
                    f.churned += not now_active
                if not recent:
                    f.reactivation_base += 1
                    f.reactivated += now_active
        if "active" in wanted and ftd_at is not None and ftd_at < end:
            first = next((e for e in theirs if e.type == "trade" and start <= e.at < end), None)
            if first is not None:
                f = groups.of(_credited(mine, first), client)
                f.mark("active")
                f.active += 1
        if "sla" in wanted:
            for a in mine:
                if a.sla_due_at is None or not start <= a.assigned_at < end:
                    continue
                f = groups.of(a, client)
                f.mark("sla")
                f.sla_assignments += 1
                c = a.contacted_at
                f.sla_met += c is not None and c <= a.sla_due_at and c <= as_of
        if "money" in wanted:
            for e in theirs:
                if not start <= e.at < end:
                    continue
                if e.type == "trade" or (e.type in ("deposit", "withdrawal") and e.status == "completed"):
                    f = groups.of(_credited(mine, e), client)
                    f.mark("money")
                    if e.type == "trade":
                        f.revenue += e.revenue or 0
                    elif e.type == "deposit":
                        f.deposits += e.amount
                    else:
                        f.withdrawals += e.amount

    for f, values in durations.values():
        values.sort()
        n = len(values)
        middle = Decimal(values[n // 2]) if n % 2 else Decimal(values[n // 2 - 1] + values[n // 2]) / 2
        f.ftd_median_micros = middle
        f.ftd_p90_micros = values[-(-9 * n // 10) - 1]  # nearest rank: the ceil(0.9 n)-th
    if "cost" in wanted and by in COST_GROUPINGS:
        for e in events:
            if isinstance(e, CampaignCost):
                share = campaign_share(e.amount, e.period_start, e.period_end, period)
                if share:
                    key = e.source if by == "source" else e.campaign if by == "campaign" else None
                    f = groups.figures.setdefault(key, Figures())
                    f.mark("cost")
                    f.cost += share
    return groups.figures
