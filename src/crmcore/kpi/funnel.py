"""The funnel (SPEC §6): registered → kyc_submitted → kyc_approved → funded.

The cohort is the clients registered in the period, split by the week (starting Monday) or
month of their registration and by any grouping (registration routing's agent, team or
desk; the client's source, country, IB or campaign). A client counts at a stage when it
reached it by as-of (its timestamp is set and not later); a deposit before KYC counts as
funded without the KYC stages. Each stage has its conversion from the previous stage and
from registration, and the time from the previous stage (median and nearest-rank p90, in
days, over the clients with both times).

On a SqlStore the cohort and its attribution come from one query; the counting is the
same Python for every store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.kpi.definitions import KpiError, Period, Row, check_grouping, group_order
from crmcore.storage.base import Store
from crmcore.storage.records import Assignment

__all__ = ["COHORTS", "STAGES", "funnel", "median_p90"]

STAGES = ("registered", "kyc_submitted", "kyc_approved", "funded")
COHORTS = ("week", "month")
_MICRO = timedelta(microseconds=1)

Member = tuple[Any, datetime, datetime | None, datetime | None, datetime | None]


def median_p90(values: Iterable[int]) -> tuple[float | None, float | None]:
    """Median (the mean of the two middles for an even count) and nearest-rank p90 of
    durations in microseconds, in days."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None, None
    middle = Decimal(ordered[n // 2]) if n % 2 else Decimal(ordered[n // 2 - 1] + ordered[n // 2]) / 2
    p90 = ordered[-(-9 * n // 10) - 1]
    day = Decimal(86_400_000_000)
    return float(middle / day), float(Decimal(p90) / day)


def cohort_of(at: datetime, cohort: str | None) -> str | None:
    if cohort is None:
        return None
    if cohort == "month":
        return f"{at.year:04d}-{at.month:02d}"
    monday = (at - timedelta(days=at.weekday())).date()
    return monday.isoformat()


def _members(store: Store, period: Period, by: str | None) -> list[Member]:
    from crmcore.storage.sql import SqlStore

    if isinstance(store, SqlStore):
        from crmcore.kpi import sql

        return [tuple(row) for row in sql.cohort(store, period, by)]  # type: ignore[misc]
    agents = store.agents()
    registrations = {e.id for e in store.events() if e.type == "client_registered"}
    members: list[Member] = []
    for client in store.clients():
        if not period.start <= client["registered_at"] < period.end:
            continue
        routed: Assignment | None = next(
            (a for a in store.assignments(client["id"]) if a.event_id in registrations), None
        )
        key: Any = None
        if by == "agent":
            key = routed.agent_id if routed else None
        elif by == "desk":
            key = routed.desk if routed else None
        elif by == "team":
            agent = agents.get(routed.agent_id) if routed else None
            key = agent.manager if agent else None
        elif by is not None:
            key = client.get({"ib": "ib_id"}.get(by, by))
        members.append((key, client["registered_at"], client["kyc_submitted_at"],
                        client["kyc_approved_at"], client["ftd_at"]))
    return members


def funnel(
    store: Store, start: datetime, end: datetime, by: str | None = None,
    cohort: str | None = None, as_of: datetime | None = None,
) -> list[Row]:
    """One row per cohort and group: each stage's count, ``<stage>_rate`` (from the previous
    stage), ``<stage>_overall`` (from registration), ``<stage>_median_days`` and
    ``<stage>_p90_days`` (time from the previous stage)."""
    from crmcore.kpi import as_of_default

    check_grouping(by)
    if cohort is not None and cohort not in COHORTS:
        raise KpiError(f"unknown cohort {cohort!r} (one of: week, month)")
    period = Period(start, end)
    moment = as_of_default(store, as_of)
    buckets: dict[tuple[Any, Any], list[Member]] = {}
    for member in _members(store, period, by):
        buckets.setdefault((cohort_of(member[1], cohort), member[0]), []).append(member)
    if not buckets and by is None and cohort is None:
        buckets[(None, None)] = []
    rows = []
    for (bucket, key), members in sorted(buckets.items(), key=lambda kv: (group_order(kv[0][0]), group_order(kv[0][1]))):
        row: Row = {}
        if cohort is not None:
            row["cohort"] = bucket
        if by is not None:
            row[by] = key
        row.update(_stages(members, moment))
        rows.append(row)
    return rows


def _stages(members: list[Member], as_of: datetime) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    counts = []
    for index, stage in enumerate(STAGES):
        reached = [m for m in members if m[index + 1] is not None and m[index + 1] <= as_of]  # type: ignore[operator]
        counts.append(len(reached))
        out[stage] = len(reached)
        if index == 0:
            continue
        previous = counts[index - 1]
        out[f"{stage}_rate"] = len(reached) / previous if previous else None
        out[f"{stage}_overall"] = len(reached) / counts[0] if counts[0] else None
        took = [(m[index + 1] - m[index]) // _MICRO for m in reached if m[index] is not None]  # type: ignore[operator]
        out[f"{stage}_median_days"], out[f"{stage}_p90_days"] = median_p90(took)
    return out
