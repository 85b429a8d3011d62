"""The KPIs of SPEC §6: names, periods, groupings, and the arithmetic both back ends share.

A back end (:mod:`crmcore.kpi.sql` in the database, :mod:`crmcore.kpi.reference` in plain
Python) reduces the store to :class:`Figures` per group: counts, exact ``Decimal`` sums,
durations in integer microseconds, medians and p90s. :func:`finish` turns figures into the
KPI rows the caller sees (rates, means and divisions), the same way for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.rules import model
from crmcore.rules.diagnostics import CrmError

__all__ = [
    "COST_GROUPINGS", "DAY_MICROS", "GROUPINGS", "LOWER_IS_BETTER", "METRICS", "Figures", "KpiError",
    "Period", "Row", "campaign_share", "check_grouping", "check_metrics", "families", "finish",
    "group_order", "headcounts",
]

METRICS: tuple[str, ...] = tuple(model.KPI_METRICS)
"""Every KPI of SPEC §6, in the spec's order."""

GROUPINGS: tuple[str, ...] = ("agent", "team", "desk", "source", "country", "ib", "campaign")
"""What KPIs group by: the credited assignment's agent, the agent's manager (team) and the
assignment's desk; the client's source, country, IB and campaign."""

DAY_MICROS = 86_400_000_000
LOWER_IS_BETTER = frozenset({"avg_time_to_ftd_days", "churn_rate", "cpa"})

Row = dict[str, Any]


class KpiError(CrmError, ValueError):
    """A KPI request that cannot be answered: an unknown metric or grouping, an empty period."""


@dataclass(frozen=True)
class Period:
    """A half-open UTC period ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                object.__setattr__(self, name, getattr(self, name).replace(tzinfo=UTC))
        if self.end <= self.start:
            raise KpiError(f"empty period: --to {self.end.isoformat()} is not after --from {self.start.isoformat()}")

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def exactly(self, unit: str) -> bool:
        """Whether this is exactly one calendar ``day``, ``week`` (Monday to Monday) or
        ``month`` (UTC): such a period takes a target of that unit as it is, and its
        previous period is the calendar unit before."""
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        if start != start.replace(hour=0, minute=0, second=0, microsecond=0):
            return False
        if unit == "day":
            return end - start == timedelta(days=1)
        if unit == "week":
            return start.weekday() == 0 and end - start == timedelta(days=7)
        return start.day == 1 and end == _next_month(start)

    def previous(self) -> Period:
        """The period just before this one, churn's reference: the calendar month before
        for a calendar month (SPEC §6: "for a month: M−1 against M"), else the same length."""
        if self.exactly("month"):
            start = self.start.astimezone(UTC)
            return Period(_next_month(start, -1), self.start)
        return Period(self.start - self.length, self.start)


def _next_month(first: datetime, step: int = 1) -> datetime:
    """The first day of the month ``step`` months after ``first``'s (a first of a month, UTC)."""
    index = first.year * 12 + first.month - 1 + step
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def check_metrics(metrics: Iterable[str] | None) -> tuple[str, ...]:
    """The metrics asked for (all by default), each known."""
    if metrics is None:
        return METRICS
    chosen = tuple(metrics)
    for name in chosen:
        if name not in METRICS:
            raise KpiError(f"unknown metric {name!r} (one of: {', '.join(METRICS)})")
    return chosen


def check_grouping(by: str | None) -> str | None:
    if by is not None and by not in GROUPINGS:
        raise KpiError(f"unknown grouping {by!r} (one of: {', '.join(GROUPINGS)})")
    return by


@dataclass
class Figures:
    """What a back end found for one group. Each field belongs to one KPI family."""

    registrations: int = 0  # clients registered in P (credited by registration routing)
    converted: int = 0  # of them, with an FTD up to as-of
    ftd_count: int = 0  # clients with ftd_at in P (credited to the FTD's agent)
    ftd_micros: int = 0  # sum of ftd_at - registered_at over them
    ftd_median_micros: Decimal | None = None  # exact: the mean of the two middles is a half at most
    ftd_p90_micros: int | None = None
    deposits: Decimal = Decimal(0)  # completed deposits in P
    withdrawals: Decimal = Decimal(0)  # completed withdrawals in P
    revenue: Decimal = Decimal(0)  # trade revenue in P
    clv_revenue: Decimal = Decimal(0)  # lifetime (to as-of) revenue of the clients with ftd_at in P
    clv_net_deposits: Decimal = Decimal(0)
    active: int = 0  # funded clients with a trade in P
    churn_base: int = 0  # active in the period before P
    churned: int = 0  # of them, not active in P
    reactivation_base: int = 0  # funded before P, no trade in the 30 days before P
    reactivated: int = 0  # of them, trading in P
    sla_assignments: int = 0  # assignments in P to desks with a first-contact SLA
    sla_met: int = 0  # of them, contacted by the agent in time
    cost: Decimal = Decimal(0)  # campaign cost in P (source and campaign groupings only)
    seen: set[str] = field(default_factory=set)  # the families that found something

    def mark(self, family: str) -> None:
        self.seen.add(family)


COST_GROUPINGS = (None, "source", "campaign")


def campaign_share(amount: Decimal, first_day: date, end_day: date, period: Period) -> Decimal:
    """The part of a campaign cost over the days ``[first_day, end_day)`` that falls in
    ``period``, in proportion to time (whole days when the period is made of days)."""
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC)
    inside = min(end, period.end) - max(start, period.start)
    if inside <= timedelta(0):
        return Decimal(0)
    if inside == end - start:
        return amount
    whole = (end - start) // timedelta(microseconds=1)
    return amount * Decimal(inside // timedelta(microseconds=1)) / Decimal(whole)


def headcounts(agents: Mapping[str, model.Agent], by: str | None) -> dict[Any, int]:
    """Active agents of role ``agent`` per group of ``by`` (desk, team; ``None`` = all):
    what ``revenue_per_agent`` divides by."""
    counts: dict[Any, int] = {}
    for agent in agents.values():
        if agent.role != "agent" or not agent.active:
            continue
        key = agent.desk if by == "desk" else agent.manager if by == "team" else None
        counts[key] = counts.get(key, 0) + 1
    return counts


def group_order(key: Any) -> tuple[bool, str]:
    """Groups in a stable order: by key, the ``None`` group (never assigned) last."""
    return (key is None, "" if key is None else str(key))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _days(micros: Decimal | int | None, count: int = 1) -> float | None:
    if micros is None or count == 0:
        return None
    return float(Decimal(micros) / count / DAY_MICROS)


_FAMILY: Mapping[str, str] = {  # the query family each KPI comes from (one query per family)
    "registrations": "registered", "ftd_conversion_rate": "registered", "ftd_count": "ftd",
    "avg_time_to_ftd_days": "ftd", "clv": "ftd", "clv_net_deposits": "ftd", "net_deposits": "money",
    "revenue": "money", "revenue_per_agent": "money", "active_clients": "active",
    "churn_rate": "retention", "reactivation_rate": "retention", "cpa": "cost",
    "first_contact_sla_rate": "sla",
}


def families(metrics: Sequence[str]) -> set[str]:
    """The query families that ``metrics`` need (``cpa`` divides by the FTD family's count)."""
    wanted = {_FAMILY[m] for m in metrics}
    if "cpa" in metrics:
        wanted.add("ftd")
    return wanted


def finish(
    figures: Mapping[Any, Figures], metrics: Sequence[str], by: str | None,
    agents: Mapping[str, model.Agent],
) -> list[Row]:
    """KPI rows from each group's figures: one per group that any asked family found
    something for (one row without grouping), ordered by :func:`group_order`."""
    wanted = families(metrics)
    heads = headcounts(agents, by if by in ("desk", "team") else None)
    keys = [k for k, f in figures.items() if f.seen & wanted] if by is not None else [None]
    rows = []
    for key in sorted(keys, key=group_order):
        f = figures.get(key, Figures())
        row: Row = {by: key} if by is not None else {}
        for metric in metrics:
            if metric == "registrations":
                row[metric] = f.registrations
            elif metric == "ftd_count":
                row[metric] = f.ftd_count
            elif metric == "ftd_conversion_rate":
                row[metric] = _rate(f.converted, f.registrations)
            elif metric == "avg_time_to_ftd_days":
                row[metric] = _days(f.ftd_micros, f.ftd_count)
                row["median_time_to_ftd_days"] = _days(f.ftd_median_micros)
                row["p90_time_to_ftd_days"] = _days(f.ftd_p90_micros)
            elif metric == "net_deposits":
                row[metric] = f.deposits - f.withdrawals
            elif metric == "revenue":
                row[metric] = f.revenue
            elif metric == "revenue_per_agent":
                row[metric] = _per_agent(f.revenue, key, by, heads)
            elif metric == "clv":
                row[metric] = f.clv_revenue / f.ftd_count if f.ftd_count else None
            elif metric == "clv_net_deposits":
                row[metric] = f.clv_net_deposits / f.ftd_count if f.ftd_count else None
            elif metric == "active_clients":
                row[metric] = f.active
            elif metric == "churn_rate":
                row[metric] = _rate(f.churned, f.churn_base)
            elif metric == "reactivation_rate":
                row[metric] = _rate(f.reactivated, f.reactivation_base)
            elif metric == "cpa":
                row[metric] = f.cost / f.ftd_count if by in COST_GROUPINGS and f.ftd_count else None
            elif metric == "first_contact_sla_rate":
                row[metric] = _rate(f.sla_met, f.sla_assignments)
        rows.append(row)
    return rows


def _per_agent(revenue: Decimal, key: Any, by: str | None, heads: Mapping[Any, int]) -> Decimal | None:
    if by == "agent":
        return revenue if key is not None else None
    if by in ("desk", "team"):
        count = heads.get(key, 0) if key is not None else 0
    else:  # the whole book (or a slice of it by client field) over every agent
        count = heads.get(None, 0)
    return revenue / count if count else None
