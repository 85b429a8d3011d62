"""Capacity planning per desk (SPEC §6, §11).

At as-of (default: the latest event): ``open`` clients held by the desk's agents
(assignments open at that time), ``capacity`` the sum of its active agents' capacities
(agents of role ``agent``; ``None`` when none of them has one: unlimited), ``utilisation`` =
open / capacity, ``incoming_per_day`` the clients new to the desk (their first assignment to
it) in the 7 days up to as-of, divided by 7, ``projected_open = open + 30 ×
incoming_per_day``, and ``agents_needed = ceil(projected_open / (0.8 × mean agent
capacity))`` — the agents to stay under 80 % utilisation for the next 30 days at that rate.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.kpi.definitions import KpiError, Row
from crmcore.storage.base import Store

__all__ = ["TARGET_UTILISATION", "capacity"]

TARGET_UTILISATION = Decimal("0.8")
WINDOW_DAYS = 7
HORIZON_DAYS = 30


def _counts_reference(store: Store, as_of: datetime) -> tuple[dict[str, int], dict[str, int]]:
    since = as_of - timedelta(days=WINDOW_DAYS)
    open_now: dict[str, int] = {}
    incoming: dict[str, int] = {}
    for client in store.clients():
        desks_before: set[str] = set()
        for a in store.assignments(client["id"]):
            if a.assigned_at <= as_of and (a.ended_at is None or a.ended_at > as_of):
                open_now[a.desk] = open_now.get(a.desk, 0) + 1
            if a.desk not in desks_before and since < a.assigned_at <= as_of:
                incoming[a.desk] = incoming.get(a.desk, 0) + 1
            desks_before.add(a.desk)
    return open_now, incoming


def capacity(store: Store, as_of: datetime | None = None, desk: str | None = None) -> list[Row]:
    """One row per desk (or only ``desk``), in id order (see the module docstring)."""
    from crmcore.kpi import as_of_default
    from crmcore.storage.sql import SqlStore

    moment = as_of_default(store, as_of)
    desks = sorted(store.desks())
    if desk is not None:
        if desk not in desks:
            raise KpiError(f"unknown desk {desk!r} (one of: {', '.join(desks)})")
        desks = [desk]
    if isinstance(store, SqlStore):
        from crmcore.kpi import sql

        open_now, incoming = sql.capacity_counts(store, moment, WINDOW_DAYS)
    else:
        open_now, incoming = _counts_reference(store, moment)
    agents = store.agents()
    rows = []
    for name in desks:
        working = [a for a in agents.values() if a.desk == name and a.role == "agent" and a.active]
        limits = [a.capacity for a in working if a.capacity is not None]
        total = sum(limits) if limits else None
        held = open_now.get(name, 0)
        per_day = Decimal(incoming.get(name, 0)) / WINDOW_DAYS
        projected = held + HORIZON_DAYS * per_day
        needed: Any = None
        if limits and sum(limits) > 0:
            mean = Decimal(sum(limits)) / len(limits)
            needed = math.ceil(projected / (TARGET_UTILISATION * mean))
        rows.append({
            "desk": name, "agents": len(working), "open": held, "capacity": total,
            "utilisation": held / total if total else None,
            "incoming_per_day": float(per_day), "projected_open": float(projected),
            "agents_needed": needed,
        })
    return rows
