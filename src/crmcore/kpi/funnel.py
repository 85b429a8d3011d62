"""The funnel (SPEC §6): registered → kyc_submitted → kyc_approved → funded.

The cohort is the clients registered in the period, split by the week (starting Monday) or
month of their registration and by any grouping (registration routing's agent, team or
desk; the client's source, country, IB or campaign). A client counts at a stage when it
reached that stage or a later one by as-of (the timestamp is set and not later): a deposit
before KYC counts at both KYC stages too, so counts never rise down the funnel. Each stage
has its conversion from the previous stage and from registration, and the time from the
previous stage (median and nearest-rank p90, in days, over the clients with both times by
as-of).

On a SqlStore it is one query (window functions for the medians and p90s); on other
stores, plain Python over the Store protocol (the reference the tests hold the SQL to).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.kpi.definitions import DAY_MICROS, KpiError, Period, Row, check_grouping, group_order
from crmcore.storage.base import Store
from crmcore.storage.records import Assignment

__all__ = ["COHORTS", "STAGES", "funnel"]

STAGES = ("registered", "kyc_submitted", "kyc_approved", "funded")
COHORTS = ("week", "month")
_MICRO = timedelta(microseconds=1)

Member = tuple[Any, datetime, datetime | None, datetime | None, datetime | None]


def cohort_of(at: datetime, cohort: str | None) -> str | None:
    if cohort is None:
        return None
    if cohort == "month":
        return f"{at.year:04d}-{at.month:02d}"
    monday = (at - timedelta(days=at.weekday())).date()
    return monday.isoformat()


def _members(store: Store, period: Period, by: str | None) -> list[Member]:
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


Bucket = tuple[Any, Any, list[int], list[Decimal | None], list[int | None]]


def _buckets_reference(store: Store, period: Period, as_of: datetime, by: str | None, cohort: str | None) -> list[Bucket]:
    """The funnel's figures in plain Python: counts per stage, median and p90 microseconds
    per transition, per cohort and group."""
    groups: dict[tuple[Any, Any], list[Member]] = {}
    for member in _members(store, period, by):
        groups.setdefault((cohort_of(member[1], cohort), member[0]), []).append(member)
    found: list[Bucket] = []
    for (bucket, key), members in groups.items():
        counts: list[int] = []
        medians: list[Decimal | None] = []
        p90s: list[int | None] = []
        for index in range(len(STAGES)):
            counts.append(sum(1 for m in members if any(_set_by(at, as_of) for at in m[index + 1:])))
            if index == 0:
                continue
            took = sorted((m[index + 1] - m[index]) // _MICRO for m in members  # type: ignore[operator]
                          if _set_by(m[index + 1], as_of) and _set_by(m[index], as_of))
            n = len(took)
            if n == 0:
                medians.append(None)
                p90s.append(None)
                continue
            medians.append(Decimal(took[n // 2]) if n % 2 else Decimal(took[n // 2 - 1] + took[n // 2]) / 2)
            p90s.append(took[-(-9 * n // 10) - 1])
        found.append((bucket, key, counts, medians, p90s))
    return found


def _set_by(at: datetime | None, as_of: datetime) -> bool:
    return at is not None and at <= as_of


def funnel(
    store: Store, start: datetime, end: datetime, by: str | None = None,
    cohort: str | None = None, as_of: datetime | None = None, *, reference: bool = False,
) -> list[Row]:
    """One row per cohort and group: each stage's count, ``<stage>_rate`` (from the previous
    stage), ``<stage>_overall`` (from registration), ``<stage>_median_days`` and
    ``<stage>_p90_days`` (time from the previous stage). In SQL for a SqlStore unless
    ``reference``."""
    from crmcore.kpi import as_of_default
    from crmcore.storage.sql import SqlStore

    check_grouping(by)
    if cohort is not None and cohort not in COHORTS:
        raise KpiError(f"unknown cohort {cohort!r} (one of: week, month)")
    period = Period(start, end)
    moment = as_of_default(store, as_of)
    if isinstance(store, SqlStore) and not reference:
        from crmcore.kpi import sql

        buckets = sql.funnel(store, period, moment, by, cohort)
    else:
        buckets = _buckets_reference(store, period, moment, by, cohort)
    if not buckets and by is None and cohort is None:
        buckets = [(None, None, [0, 0, 0, 0], [None] * 3, [None] * 3)]
    rows = []
    for bucket, key, counts, medians, p90s in sorted(buckets, key=lambda b: (group_order(b[0]), group_order(b[1]))):
        row: Row = {}
        if cohort is not None:
            row["cohort"] = bucket
        if by is not None:
            row[by] = key
        for index, stage in enumerate(STAGES):
            row[stage] = counts[index]
            if index == 0:
                continue
            previous = counts[index - 1]
            row[f"{stage}_rate"] = counts[index] / previous if previous else None
            row[f"{stage}_overall"] = counts[index] / counts[0] if counts[0] else None
            row[f"{stage}_median_days"] = _days(medians[index - 1])
            row[f"{stage}_p90_days"] = _days(p90s[index - 1])
        rows.append(row)
    return rows


def _days(micros: Decimal | int | None) -> float | None:
    return None if micros is None else float(Decimal(micros) / DAY_MICROS)
