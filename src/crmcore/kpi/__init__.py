"""KPIs, funnel, leaderboards, targets and capacity planning (SPEC §6).

```python
from crmcore import kpi
rows = kpi.compute(store, start, end, ["ftd_count", "net_deposits"], by="agent")
# [{"agent": "a1", "ftd_count": 3, "net_deposits": Decimal("1250.50")}, ...]
```

A :class:`~crmcore.storage.sql.SqlStore` is reported on in SQL (:mod:`crmcore.kpi.sql`), any
other store by the plain-Python reference (:mod:`crmcore.kpi.reference`); both give the same
rows. See docs/kpis.md for every definition with a worked example.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from crmcore.kpi.definitions import (
    GROUPINGS,
    METRICS,
    Figures,
    KpiError,
    Period,
    Row,
    check_grouping,
    check_metrics,
    finish,
)
from crmcore.storage.base import Store

__all__ = [
    "GROUPINGS", "METRICS", "KpiError", "Period", "Row", "as_of_default", "check_grouping", "check_metrics",
    "compute", "figures",
]


def as_of_default(store: Store, as_of: datetime | None) -> datetime:
    """``as_of``, or the time of the latest event in the store (SPEC §11)."""
    if as_of is not None:
        return as_of
    latest = store.latest_event_at()
    if latest is None:
        raise KpiError("the store has no events: give --as-of")
    return latest


def figures(
    store: Store, metrics: Iterable[str] | None, start: datetime, end: datetime,
    by: str | None = None, as_of: datetime | None = None, *, reference: bool = False,
) -> dict[object, Figures]:
    """Each group's raw figures (counts, exact sums) before rates and divisions; in SQL for a
    SqlStore unless ``reference``."""
    from crmcore.kpi import reference as python
    from crmcore.storage.sql import SqlStore

    chosen, period = check_metrics(metrics), Period(start, end)
    moment = as_of_default(store, as_of)
    if isinstance(store, SqlStore) and not reference:
        from crmcore.kpi import sql

        return sql.figures(store, chosen, period, moment, check_grouping(by))
    return python.figures(store, chosen, period, moment, check_grouping(by))


def compute(
    store: Store, start: datetime, end: datetime, metrics: Iterable[str] | None = None,
    by: str | None = None, as_of: datetime | None = None, *, reference: bool = False,
) -> list[Row]:
    """The KPIs ``metrics`` (default: all of SPEC §6) over ``[start, end)``, one row per group
    of ``by`` (``agent``, ``team``, ``desk``, ``source``, ``country``, ``ib``, ``campaign``;
    ``None``: one row). Counts are ints, money exact ``Decimal``s, rates and days floats
    (``None`` where undefined, e.g. a rate over nobody). ``as_of`` (default: the latest event)
    bounds conversion, lifetime value and contacts. ``reference=True`` forces the plain-Python
    implementation (tests compare the two)."""
    chosen = check_metrics(metrics)
    found = figures(store, chosen, start, end, by, as_of, reference=reference)
    return finish(found, chosen, by, store.agents())
