"""Leaderboards and targets (SPEC §6, §11).

Agents (or teams, or desks) ranked by one KPI over a period: best first (highest, except
``avg_time_to_ftd_days``, ``churn_rate`` and ``cpa``, where lowest is best), those without a
figure (a rate over nobody) last, ties by id; ranks are 1, 2, 3, ... without gaps or shared
places, so the order is the same on every run and store. Every active agent of role
``agent`` is listed (every team with one, every desk), even without activity; clients
never assigned are not a competitor.

Target attainment is actual / target where ``targets`` (default: the store's, which the
engine writes from its rule set) names the metric for that level (``per``); a target with a ``desk`` applies to that desk's agents (or that desk) only, and
wins over one without. A
period of exactly one calendar month (ISO week, UTC day) uses a ``month`` (``week``,
``day``) target as it is; any other period scales the target by its length in days
(month = 30 days, week = 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.kpi.definitions import (
    LOWER_IS_BETTER,
    Figures,
    KpiError,
    Period,
    Row,
    check_metrics,
    families,
    finish,
)
from crmcore.rules import model
from crmcore.storage.base import Store

__all__ = ["LEVELS", "leaderboard", "scaled_target"]

LEVELS = ("agent", "team", "desk")
_DAYS = {"day": 1, "week": 7, "month": 30}


def scaled_target(target: model.Target, period: Period) -> Decimal:
    """The target for ``period``: as given for exactly its unit, else scaled by days."""
    value = Decimal(str(target.value))
    if period.exactly(target.period):
        return value
    days = Decimal(period.length // timedelta(microseconds=1)) / Decimal(86_400_000_000)
    return value * days / _DAYS[target.period]


def leaderboard(
    store: Store, start: datetime, end: datetime, metric: str, by: str = "agent",
    as_of: datetime | None = None, targets: Sequence[model.Target] | None = None,
) -> list[Row]:
    """Rows ``{rank, <by>, <metric>, target, attainment}`` best first (see the module docstring);
    ``targets`` replaces the store's (``()``: none)."""
    from crmcore.kpi import figures

    check_metrics([metric])
    if by not in LEVELS:
        raise KpiError(f"unknown leaderboard level {by!r} (one of: agent, team, desk)")
    period = Period(start, end)
    agents = store.agents()
    if targets is None:
        targets = store.targets()
    found = figures(store, [metric], start, end, by, as_of)
    found.pop(None, None)  # clients never assigned compete with nobody
    table: dict[Any, Figures] = {}
    for key in set(found) | _competitors(agents, store, by):
        table[key] = found.get(key) or Figures()
        table[key].seen |= families([metric])  # listed even without activity
    rows = finish(table, [metric], by, agents)
    lower = metric in LOWER_IS_BETTER

    def order(row: Row) -> tuple[bool, Any, str]:
        value = row[metric]
        if value is None:
            return (True, 0, str(row[by]))
        return (False, value if lower else -value, str(row[by]))

    rows.sort(key=order)
    ranked = []
    for rank, row in enumerate(rows, start=1):
        target = _target(targets, metric, by, row[by], agents)
        scaled = scaled_target(target, period) if target is not None else None
        value = row[metric]
        attainment = float(Decimal(str(value)) / scaled) if scaled and value is not None else None
        ranked.append({"rank": rank, by: row[by], **{k: v for k, v in row.items() if k != by},
                       "target": scaled, "attainment": attainment})
    return ranked


def _competitors(agents: Any, store: Store, by: str) -> set[str]:
    working = [a for a in agents.values() if a.role == "agent" and a.active]
    if by == "agent":
        return {a.id for a in working}
    if by == "team":
        return {a.manager for a in working if a.manager is not None}
    return {a.desk for a in working} | set(store.desks())


def _target(targets: Sequence[model.Target], metric: str, by: str, key: Any, agents: Any) -> model.Target | None:
    desk = agents[key].desk if by == "agent" and key in agents else key if by == "desk" else None
    if by == "team":
        desks = {a.desk for a in agents.values() if a.manager == key}
        desk = next(iter(desks)) if len(desks) == 1 else None
    fitting = [t for t in targets if t.metric == metric and t.per == by and t.desk in (None, desk)]
    # a desk's own target wins over the general one
    return next((t for t in fitting if t.desk is not None), fitting[0] if fitting else None)
