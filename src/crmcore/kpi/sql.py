"""The KPIs in the database: SQLAlchemy Core over a :class:`~crmcore.storage.sql.SqlStore`'s
tables, on SQLite and PostgreSQL.

One query per KPI family (registrations, FTDs, money, active clients, retention, SLA), each
grouping in the database and returning one row per group; campaign costs, a handful of rows,
are prorated in Python. Sums are exact: NUMERIC on PostgreSQL; on SQLite, where amounts
are decimal text, the ``crmcore_decimal_sum`` aggregate (rules/sql.py) adds them as Python ``Decimal``s.
Durations are integer microseconds (:func:`crmcore.rules.sql.epoch_micros`); medians and
p90s come from window functions.

Attribution is the reference's (:mod:`crmcore.kpi.reference`), written as correlated
subqueries that pick one assignment (``seq``) per event or client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmcore.kpi.definitions import COST_GROUPINGS, Figures, Period, campaign_share, families
from crmcore.rules.sql import SQLITE_DECIMAL_SUM, epoch_micros
from crmcore.storage.schema import Money
from crmcore.storage.sql import SqlStore

__all__ = ["capacity_counts", "figures", "funnel"]

SQL = Any  # a SQLAlchemy column expression


def _sum(store: SqlStore, value: SQL) -> SQL:
    """An exact sum of money."""
    if store.engine.dialect.name == "sqlite":
        return getattr(sa.func, SQLITE_DECIMAL_SUM)(value, type_=Money)  # exact: see rules/sql.py
    return sa.func.sum(value, type_=Money)


def _count_if(condition: SQL) -> SQL:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


class _Query:
    """Builds the family queries of one report."""

    def __init__(self, store: SqlStore, period: Period, as_of: datetime, by: str | None) -> None:
        self.store, self.period, self.as_of, self.by = store, period, as_of, by
        self.t = store.t

    # --- attribution: one assignment per event or client ---------------------------------------

    def _holding(self, client_id: SQL, at: SQL, *also: Callable[[Any], SQL]) -> SQL:
        """The assignment holding the client at ``at`` (the latest started, if several), among
        those meeting the ``also`` conditions (built on the assignments' alias)."""
        a = self.t.assignments.alias("held")
        held = [a.c.client_id == client_id, a.c.assigned_at <= at, sa.or_(a.c.ended_at.is_(None), a.c.ended_at > at)]
        return sa.select(sa.func.max(a.c.seq)).where(*held, *(condition(a) for condition in also)).scalar_subquery()

    def _credited_event(self, e: Any) -> SQL:
        """The assignment an event ended (the FTD's hand-over), else the one holding it."""
        a = self.t.assignments.alias("ended")
        ended = sa.select(sa.func.max(a.c.seq)).where(a.c.client_id == e.c.client_id, a.c.ended_by == e.c.id)

        def not_its_own(held: Any) -> SQL:  # not the assignment this event made (a pooled FTD)
            return held.c.event_id != e.c.id

        return sa.func.coalesce(ended.scalar_subquery(), self._holding(e.c.client_id, e.c.at, not_its_own))

    def _credited_registration(self, c: Any) -> SQL:
        a, e = self.t.assignments.alias("routed"), self.t.events.alias("registration")
        return (
            sa.select(sa.func.min(a.c.seq))
            .select_from(a.join(e, e.c.id == a.c.event_id))
            .where(a.c.client_id == c.c.id, e.c.type == "client_registered")
            .scalar_subquery()
        )

    def _credited_ftd(self, c: Any) -> SQL:
        a = self.t.assignments.alias("handed")
        handed = sa.select(sa.func.max(a.c.seq)).where(a.c.client_id == c.c.id, a.c.end_reason == "handover")

        def not_the_handover(held: Any) -> SQL:  # not the assignment the FTD's routing made
            return sa.or_(held.c.stage != "ftd", held.c.assigned_at != c.c.ftd_at)

        return sa.func.coalesce(handed.scalar_subquery(), self._holding(c.c.id, c.c.ftd_at, not_the_handover))

    def _grouped(self, base: Any, c: Any, credit: Callable[[], SQL] | None) -> tuple[Any, SQL | None]:
        """``base`` joined to what the grouping reads, and the group's key (``None`` without one).
        ``credit`` builds the credited assignment's ``seq`` (agent, team and desk groupings);
        ``c`` is the clients' table in ``base``."""
        by = self.by
        if by is None:
            return base, None
        if by in ("source", "country", "ib", "campaign"):
            column = {"ib": "ib_id"}.get(by, by)
            return base, c.c[column]
        assert credit is not None
        a = self.t.assignments.alias("credited")
        joined = base.outerjoin(a, a.c.seq == credit())
        if by == "agent":
            return joined, a.c.agent_id
        if by == "desk":
            return joined, a.c.desk
        g = self.t.agents.alias("credited_agent")
        return joined.outerjoin(g, g.c.id == a.c.agent_id), g.c.manager

    def _select(self, base: Any, c: Any, credit: Callable[[], SQL] | None, *columns: SQL) -> Any:
        joined, key = self._grouped(base, c, credit)
        n = sa.func.count().label("n")
        if key is None:
            return sa.select(sa.literal(None).label("k"), n, *columns).select_from(joined)
        return sa.select(key.label("k"), n, *columns).select_from(joined).group_by(key)

    # --- the families ---------------------------------------------------------------------------

    def registered(self) -> Any:
        c = self.t.clients
        p = self.period
        query = self._select(
            c, c, lambda: self._credited_registration(c),
            sa.func.count().label("registrations"),
            _count_if(sa.and_(c.c.ftd_at.is_not(None), c.c.ftd_at <= self.as_of)).label("converted"),
        )
        return query.where(c.c.registered_at >= p.start, c.c.registered_at < p.end)

    def ftd(self) -> Any:
        """Clients with ftd_at in P: count, time to FTD (sum, median, p90), lifetime money."""
        t, p = self.t, self.period
        c, e = t.clients, t.events
        cohort = sa.and_(c.c.ftd_at >= p.start, c.c.ftd_at < p.end)
        cohort_c = c.alias("cohort")
        lifetime = (
            sa.select(
                e.c.client_id,
                _sum(self.store, sa.case((e.c.type == "trade", e.c.revenue))).label("revenue"),
                _sum(self.store, sa.case((sa.and_(e.c.type == "deposit", e.c.status == "completed"), e.c.amount))).label("deposits"),
                _sum(self.store, sa.case((sa.and_(e.c.type == "withdrawal", e.c.status == "completed"), e.c.amount))).label("withdrawals"),
            )
            .where(
                e.c.client_id.in_(sa.select(cohort_c.c.id).where(cohort_c.c.ftd_at >= p.start, cohort_c.c.ftd_at < p.end)),
                e.c.at <= self.as_of,
                e.c.type.in_(("trade", "deposit", "withdrawal")),
            )
            .group_by(e.c.client_id)
            .subquery("lifetime")
        )
        base = c.outerjoin(lifetime, lifetime.c.client_id == c.c.id)
        joined, key = self._grouped(base, c, lambda: self._credited_ftd(c))
        took = (epoch_micros(c.c.ftd_at) - epoch_micros(c.c.registered_at)).label("took")
        each = (
            sa.select(
                (key if key is not None else sa.literal(None)).label("k"), took,
                lifetime.c.revenue, lifetime.c.deposits, lifetime.c.withdrawals,
                sa.func.row_number().over(partition_by=key, order_by=took).label("rn"),
                sa.func.count().over(partition_by=key).label("n"),
            )
            .select_from(joined)
            .where(cohort)
            .subquery("each")
        )
        middle = sa.or_(each.c.rn == (each.c.n + 1) // 2, each.c.rn == (each.c.n + 2) // 2)
        return sa.select(
            each.c.k, sa.func.count().label("n"), sa.func.count().label("ftd_count"), sa.func.sum(each.c.took).label("took"),
            sa.func.sum(sa.case((middle, each.c.took))).label("middle_sum"),
            _count_if(middle).label("middle_count"),
            sa.func.max(sa.case((each.c.rn == (9 * each.c.n + 9) // 10, each.c.took))).label("p90"),
            _sum(self.store, each.c.revenue).label("revenue"),
            _sum(self.store, each.c.deposits).label("deposits"),
            _sum(self.store, each.c.withdrawals).label("withdrawals"),
        ).group_by(each.c.k)

    def money(self) -> Any:
        e, c, p = self.t.events, self.t.clients, self.period
        completed = e.c.status == "completed"
        base = e.join(c, c.c.id == e.c.client_id) if self.by in ("source", "country", "ib", "campaign") else e
        query = self._select(
            base, c, lambda: self._credited_event(e),
            _sum(self.store, sa.case((sa.and_(e.c.type == "deposit", completed), e.c.amount))).label("deposits"),
            _sum(self.store, sa.case((sa.and_(e.c.type == "withdrawal", completed), e.c.amount))).label("withdrawals"),
            _sum(self.store, sa.case((e.c.type == "trade", e.c.revenue))).label("revenue"),
        )
        return query.where(
            e.c.at >= p.start, e.c.at < p.end,
            sa.or_(e.c.type == "trade", sa.and_(e.c.type.in_(("deposit", "withdrawal")), completed)),
        )

    def active(self) -> Any:
        """Funded clients with a trade in P, credited where their first trade in P is."""
        t, p = self.t, self.period
        c, e = t.clients, t.events
        first = (
            sa.select(e.c.client_id, sa.func.min(e.c.seq).label("seq"))
            .where(e.c.type == "trade", e.c.at >= p.start, e.c.at < p.end)
            .group_by(e.c.client_id)
            .subquery("first_trade")
        )
        trade = e.alias("trade")
        base = (
            c.join(first, first.c.client_id == c.c.id)
            .join(trade, trade.c.seq == first.c.seq)
        )
        query = self._select(
            base, c, lambda: self._credited_event(trade),
            sa.func.count().label("active"),
        )
        return query.where(c.c.ftd_at.is_not(None), c.c.ftd_at < p.end)

    def retention(self) -> Any:
        t, p = self.t, self.period
        c, e = t.clients, t.events

        def traded(start: datetime, end: datetime) -> SQL:
            x = e.alias("traded")
            return sa.exists().where(x.c.client_id == c.c.id, x.c.type == "trade", x.c.at >= start, x.c.at < end)

        before = p.previous()
        was_active = traded(before.start, before.end)
        recent = traded(p.start - timedelta(days=30), p.start)
        now_active = traded(p.start, p.end)
        flags = (
            sa.select(
                c.c.id, c.c.source, c.c.country, c.c.ib_id, c.c.campaign,
                sa.case((was_active, 1), else_=0).label("was_active"),
                sa.case((recent, 1), else_=0).label("recent"),
                sa.case((now_active, 1), else_=0).label("now_active"),
            )
            .where(c.c.ftd_at.is_not(None), c.c.ftd_at < p.start)
            .subquery("flags")
        )
        return self._select(
            flags, flags,
            lambda: self._holding(flags.c.id, sa.literal(p.start, c.c.ftd_at.type)),
            _count_if(flags.c.was_active == 1).label("churn_base"),
            _count_if(sa.and_(flags.c.was_active == 1, flags.c.now_active == 0)).label("churned"),
            _count_if(flags.c.recent == 0).label("reactivation_base"),
            _count_if(sa.and_(flags.c.recent == 0, flags.c.now_active == 1)).label("reactivated"),
        ).where(sa.or_(flags.c.was_active == 1, flags.c.recent == 0))

    def sla(self) -> Any:
        t, p = self.t, self.period
        a, c = t.assignments, t.clients
        g = t.agents
        met = sa.and_(a.c.contacted_at.is_not(None), a.c.contacted_at <= a.c.sla_due_at, a.c.contacted_at <= self.as_of)
        columns = (sa.func.count().label("sla_assignments"), _count_if(met).label("sla_met"))
        n = sa.func.count().label("n")
        by = self.by
        if by in ("agent", "desk", "team"):
            key = a.c.agent_id if by == "agent" else a.c.desk if by == "desk" else g.c.manager
            base = a.outerjoin(g, g.c.id == a.c.agent_id) if by == "team" else a
            query = sa.select(key.label("k"), n, *columns).select_from(base).group_by(key)
        else:
            query = self._select(a.join(c, c.c.id == a.c.client_id), c, None, *columns)  # client fields only
        return query.where(a.c.sla_due_at.is_not(None), a.c.assigned_at >= p.start, a.c.assigned_at < p.end)

    def funnel(self, cohort: str | None) -> Any:
        """Per cohort and group: how many clients registered in P reached each stage or a later
        one by as-of, and per transition the sum and count of the middle durations (median)
        and the nearest-rank p90, by window functions over the durations (nulls ranked last)."""
        c, p, at = self.t.clients, self.period, self.as_of
        joined, key = self._grouped(c, c, lambda: self._credited_registration(c))
        bucket = self._cohort(c.c.registered_at, cohort)
        times = [c.c.registered_at, c.c.kyc_submitted_at, c.c.kyc_approved_at, c.c.ftd_at]
        own = [sa.and_(t.is_not(None), t <= at) for t in times]
        reached = [sa.or_(*own[i:]) for i in range(len(own))]  # a later stage implies this one: never widens
        took = [
            sa.case((sa.and_(own[j], own[j - 1]), epoch_micros(times[j]) - epoch_micros(times[j - 1])))
            for j in (1, 2, 3)
        ]
        parts = [e for e in (bucket, key) if e is not None]
        columns: list[SQL] = [
            (bucket if bucket is not None else sa.literal(None)).label("b"),
            (key if key is not None else sa.literal(None)).label("k"),
            *(sa.case((r, 1), else_=0).label(f"reached{i}") for i, r in enumerate(reached)),
        ]
        for j, d in enumerate(took, start=1):
            columns += [
                d.label(f"took{j}"),
                sa.func.row_number().over(partition_by=parts or None, order_by=[d.is_(None), d]).label(f"rn{j}"),
                sa.func.count(d).over(partition_by=parts or None).label(f"n{j}"),
            ]
        each = (
            sa.select(*columns).select_from(joined)
            .where(c.c.registered_at >= p.start, c.c.registered_at < p.end)
            .subquery("each")
        )
        figures: list[SQL] = [each.c.b, each.c.k, *(sa.func.sum(each.c[f"reached{i}"]).label(f"reached{i}") for i in range(4))]
        for j in (1, 2, 3):
            span, rn, n = each.c[f"took{j}"], each.c[f"rn{j}"], each.c[f"n{j}"]
            middle = sa.and_(span.is_not(None), sa.or_(rn == (n + 1) // 2, rn == (n + 2) // 2))
            figures += [
                sa.func.sum(sa.case((middle, span))).label(f"middle_sum{j}"),
                _count_if(middle).label(f"middle_count{j}"),
                sa.func.max(sa.case((sa.and_(span.is_not(None), rn == (9 * n + 9) // 10), span))).label(f"p90_{j}"),
            ]
        return sa.select(*figures).group_by(each.c.b, each.c.k)

    def _cohort(self, at: SQL, cohort: str | None) -> SQL | None:
        """The week (its Monday, ``2026-02-02``) or month (``2026-02``) of a UTC time, as text."""
        if cohort is None:
            return None
        if self.store.engine.dialect.name == "sqlite":  # the text 'YYYY-MM-DD HH:MM:SS.ffffff'
            if cohort == "month":
                return sa.func.substr(at, 1, 7)
            back = (sa.cast(sa.func.strftime("%w", at), sa.Integer) + 6) % 7  # days since Monday
            return sa.func.date(at, sa.literal("-") + sa.cast(back, sa.String) + sa.literal(" days"))
        if cohort == "month":
            return sa.func.to_char(at, "YYYY-MM")
        return sa.func.to_char(sa.func.date_trunc("week", at), "YYYY-MM-DD")

    def capacity(self, since: datetime) -> tuple[Any, Any]:
        """Open clients per desk at as-of, and clients new to a desk in ``(since, as_of]``."""
        a, at = self.t.assignments, self.as_of
        open_now = (
            sa.select(a.c.desk, sa.func.count().label("open"))
            .where(a.c.assigned_at <= at, sa.or_(a.c.ended_at.is_(None), a.c.ended_at > at))
            .group_by(a.c.desk)
        )
        earlier = a.alias("earlier")
        first_time = ~sa.exists().where(
            earlier.c.client_id == a.c.client_id, earlier.c.desk == a.c.desk, earlier.c.seq < a.c.seq
        )
        incoming = (
            sa.select(a.c.desk, sa.func.count().label("incoming"))
            .where(a.c.assigned_at > since, a.c.assigned_at <= at, first_time)
            .group_by(a.c.desk)
        )
        return open_now, incoming

    def costs(self) -> Any:
        e = self.t.events  # in arrival order, as the reference adds them: a share may be
        # rounded (28 digits), and rounded sums differ in their last digit by order
        return sa.select(e.c.data).where(e.c.type == "campaign_cost").order_by(e.c.seq)


def figures(
    store: SqlStore, metrics: Sequence[str], period: Period, as_of: datetime, by: str | None
) -> dict[Any, Figures]:
    """Each group's figures for ``metrics`` over ``period``, computed in the database."""
    wanted = families(metrics)
    q = _Query(store, period, as_of, by)
    found: dict[Any, Figures] = {}
    if by is None:
        found[None] = Figures()

    def group(key: Any, family: str) -> Figures:
        f = found.get(key)
        if f is None:
            f = found[key] = Figures()
        f.mark(family)
        return f

    with _reading(store) as conn, conn.begin():
        if "registered" in wanted:
            for row in _rows(conn, q.registered()):
                f = group(row.k, "registered")
                f.registrations, f.converted = row.registrations, int(row.converted)
        if "ftd" in wanted:
            for row in _rows(conn, q.ftd()):
                f = group(row.k, "ftd")
                f.ftd_count, f.ftd_micros = row.ftd_count, int(row.took)
                f.ftd_median_micros = Decimal(int(row.middle_sum)) / int(row.middle_count)
                f.ftd_p90_micros = int(row.p90)
                f.clv_revenue = row.revenue or Decimal(0)
                f.clv_net_deposits = (row.deposits or Decimal(0)) - (row.withdrawals or Decimal(0))
        if "money" in wanted:
            for row in _rows(conn, q.money()):
                f = group(row.k, "money")
                f.deposits = row.deposits or Decimal(0)
                f.withdrawals = row.withdrawals or Decimal(0)
                f.revenue = row.revenue or Decimal(0)
        if "active" in wanted:
            for row in _rows(conn, q.active()):
                group(row.k, "active").active = row.active
        if "retention" in wanted:
            for row in _rows(conn, q.retention()):
                f = group(row.k, "retention")
                f.churn_base, f.churned = int(row.churn_base), int(row.churned)
                f.reactivation_base, f.reactivated = int(row.reactivation_base), int(row.reactivated)
        if "sla" in wanted:
            for row in _rows(conn, q.sla()):
                f = group(row.k, "sla")
                f.sla_assignments, f.sla_met = row.sla_assignments, int(row.sla_met)
        if "cost" in wanted and by in COST_GROUPINGS:
            for (data,) in conn.execute(q.costs()):
                cost = json.loads(data)
                share = campaign_share(
                    Decimal(str(cost["amount"])), date.fromisoformat(cost["period_start"]),
                    date.fromisoformat(cost["period_end"]), period,
                )
                if share:
                    key = cost["source"] if by == "source" else cost.get("campaign") if by == "campaign" else None
                    group(key, "cost").cost += share
    return found


def _rows(conn: Connection, query: Any) -> list[Any]:
    """The rows of a family; without grouping, an aggregate over nothing (``n`` = 0) is no row."""
    return [row for row in conn.execute(query) if row.n]


def _reading(store: SqlStore) -> Any:
    """A read-only connection (on SQLite a deferred BEGIN: it never waits for writers)."""
    return store.engine.connect().execution_options(crm_deferred=True)


def funnel(
    store: SqlStore, period: Period, as_of: datetime, by: str | None, cohort: str | None
) -> list[tuple[Any, Any, list[int], list[Decimal | None], list[int | None]]]:
    """Per cohort and group: ``(cohort, key, counts per stage, median and p90 microseconds
    per transition)``."""
    found = []
    with _reading(store) as conn, conn.begin():
        for row in conn.execute(_Query(store, period, as_of, by).funnel(cohort)):
            m = row._mapping
            counts = [int(m[f"reached{i}"]) for i in range(4)]
            medians = [
                Decimal(int(m[f"middle_sum{j}"])) / int(m[f"middle_count{j}"]) if m[f"middle_count{j}"] else None
                for j in (1, 2, 3)
            ]
            p90s = [int(m[f"p90_{j}"]) if m[f"p90_{j}"] is not None else None for j in (1, 2, 3)]
            found.append((row.b, row.k, counts, medians, p90s))
    return found


def capacity_counts(store: SqlStore, as_of: datetime, days: int) -> tuple[dict[str, int], dict[str, int]]:
    """Open clients per desk at ``as_of`` and clients new to each desk in the ``days`` before."""
    period = Period(as_of - timedelta(days=days), as_of)
    open_now, incoming = _Query(store, period, as_of, None).capacity(period.start)
    with _reading(store) as conn, conn.begin():
        return (
            {desk: n for desk, n in conn.execute(open_now)},
            {desk: n for desk, n in conn.execute(incoming)},
        )
