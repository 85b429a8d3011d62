"""Benchmark: every KPI by agent for a month, ``crmcore.kpi`` against hand-written SQL.

    python bench/kpi_bench.py                                  # 100,000 clients, 1,000,000 events, both databases
    python bench/kpi_bench.py --db sqlite --clients 10000 --events 100000   # a smaller run
    python bench/kpi_bench.py --pg-url postgresql+psycopg://postgres@127.0.0.1:55433/postgres
    python bench/kpi_bench.py --keep /tmp/kpi-bench --families   # keep the data for the next run; time each family

The data set is written straight into a SqlStore's tables (the engine would take hours for a
million events): a seeded broker of 40 sales agents (4 teams) and 10 retention agents;
clients registering over 180 days from 2026-01-01, each assigned to a sales agent by
registration (SLA 2 h, contacted in time or late or never), 8 % reassigned after an SLA
breach, 55 % making an FTD (the sales assignment ends with a ``handover`` ended by the FTD
event, a retention assignment starts), then trades with revenue, deposits (some failed),
withdrawals (completed, requested, failed) and contacts up to 120 days after the FTD, failed
deposits and KYC events for the others, and monthly campaign costs. Event rows carry what
the KPI queries read; their ``data`` JSON is only filled for campaign costs.

Timed, best of ``--repeat`` rounds, on the same database in the same run:

- **crmcore**: ``kpi.compute(store, April, by="agent")`` — all 14 KPIs, rates and divisions
  included (one query per family);
- **floor**: the same figures from hand-written SQL text (one statement per family, the same
  attribution rules, the dialect's own time arithmetic; exact sums: NUMERIC on PostgreSQL,
  the ``crmcore_decimal_sum`` aggregate on SQLite, where amounts are decimal text).

Before timing, the script checks that both give exactly the same figures for every agent.
Goal: crmcore ≤ 2× the floor. Results: docs/performance.md ("KPIs").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from crmcore import SqlStore, kpi
from crmcore.kpi.definitions import Figures
from crmcore.rules import model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START, END = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
SALES = [f"s{i:02d}" for i in range(40)]
RETENTION = [f"r{i:02d}" for i in range(10)]
SOURCES = ["google", "facebook", "affiliate", "organic", "tiktok"]


def naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def build(store: SqlStore, clients: int, events: int, seed: int) -> datetime:
    """Write the data set; returns the latest event time (the report's as-of)."""
    rng = random.Random(seed)
    with store.unit_of_work():
        store.put_desk(model.Desk(id="sales", sla=model.Sla(first_contact="2h")))
        store.put_desk(model.Desk(id="retention", kind="retention"))
        for i, agent in enumerate(SALES):
            store.put_agent(model.Agent(id=agent, desk="sales", manager=f"m{i % 4}", capacity=4000))
        for i in range(4):
            store.put_agent(model.Agent(id=f"m{i}", desk="sales", role="manager"))
        for agent in RETENTION:
            store.put_agent(model.Agent(id=agent, desk="retention", manager="m9", capacity=10000))
        store.put_agent(model.Agent(id="m9", desk="retention", role="manager"))
    funded_share = 0.55
    extra = max(0, events - clients - int(clients * funded_share))
    per_funded = extra / max(1, clients * funded_share)
    client_rows: list[dict[str, Any]] = []
    assignment_rows: list[dict[str, Any]] = []
    event_rows: list[tuple[Any, ...]] = []  # (at, id, type, client_id, status, amount, revenue, data)

    def event(at: datetime, eid: str, kind: str, cid: str | None, status: str | None = None,
              amount: str | None = None, revenue: str | None = None, data: str = "{}") -> None:
        event_rows.append((at, eid, kind, cid, status, amount, revenue, data))

    for i in range(clients):
        cid = f"c{i:06d}"
        registered = T0 + timedelta(seconds=rng.randrange(180 * 86400))
        source = rng.choice(SOURCES)
        event(registered, f"reg-{cid}", "client_registered", cid)
        agent = SALES[i % len(SALES)]
        contacted = registered + timedelta(minutes=rng.randrange(0, 300)) if rng.random() < 0.7 else None
        history = [{"agent_id": agent, "desk": "sales", "stage": "registration", "assigned_at": registered,
                    "event_id": f"reg-{cid}", "sla_due_at": registered + timedelta(hours=2), "contacted_at": contacted}]
        if rng.random() < 0.08:  # SLA breach: reassigned by a scan
            at = registered + timedelta(hours=2, minutes=1)
            history[-1].update(ended_at=at, end_reason="sla_breach", ended_by=f"scan-{cid}")
            history.append({"agent_id": SALES[(i + 7) % len(SALES)], "desk": "sales", "stage": "registration",
                            "assigned_at": at, "event_id": f"scan-{cid}", "sla_due_at": at + timedelta(hours=2),
                            "contacted_at": at + timedelta(minutes=30) if rng.random() < 0.5 else None})
        kyc = registered + timedelta(hours=rng.randrange(1, 96)) if rng.random() < 0.7 else None
        if kyc:
            event(kyc, f"{cid}-k", "kyc_submitted", cid)
        ftd_at = ftd_amount = None
        if rng.random() < funded_share:
            ftd_at = registered + timedelta(seconds=int(rng.expovariate(1 / (5 * 86400))) + 3600)
            ftd_amount = f"{rng.randrange(100, 5000)}.{rng.randrange(100):02d}"
            fid = f"{cid}-d0"
            event(ftd_at, fid, "deposit", cid, "completed", ftd_amount)
            history[-1].update(ended_at=ftd_at, end_reason="handover", ended_by=fid)
            history.append({"agent_id": RETENTION[i % len(RETENTION)], "desk": "retention", "stage": "ftd",
                            "assigned_at": ftd_at, "event_id": fid, "sla_due_at": None, "contacted_at": None})
            count = int(per_funded * 2 * rng.random() + 0.5)
            t = ftd_at
            for n in range(count):
                t = t + timedelta(seconds=rng.randrange(1, int(120 * 86400 / max(1, count)) + 2))
                roll = rng.random()
                eid = f"{cid}-{n + 1}"
                if roll < 0.70:
                    event(t, eid, "trade", cid, None, None,
                          None if rng.random() < 0.05 else f"{rng.randrange(0, 300)}.{rng.randrange(100):02d}")
                elif roll < 0.82:
                    event(t, eid, "deposit", cid, "failed" if rng.random() < 0.1 else "completed",
                          f"{rng.randrange(50, 3000)}.{rng.randrange(100):02d}")
                elif roll < 0.92:
                    event(t, eid, "withdrawal", cid, rng.choice(["completed", "completed", "requested", "failed"]),
                          f"{rng.randrange(20, 900)}.{rng.randrange(100):02d}")
                else:
                    event(t, eid, "contact", cid)
        elif rng.random() < 0.1:
            event(registered + timedelta(hours=5), f"{cid}-f", "deposit", cid, "failed", "250")
        for a in history:
            assignment_rows.append({"client_id": cid, "strategy": "round_robin", "rule": "r", "rule_version": "v",
                                    "trace": "[]", "breached_at": None, "ended_at": None, "end_reason": None,
                                    "ended_by": None, **a})
        client_rows.append({
            "seq": i + 1, "id": cid, "registered_at": registered, "country": rng.choice(["DE", "GB", "FR", "ES", "IT"]),
            "source": source, "campaign": f"{source}-{rng.randrange(3)}",
            "ib_id": f"IB{rng.randrange(20)}" if rng.random() < 0.1 else None,
            "stage": "funded" if ftd_at else "kyc_submitted" if kyc else "registered",
            "kyc_submitted_at": kyc, "ftd_at": ftd_at, "ftd_amount": ftd_amount,
            "desk_id": history[-1]["desk"], "agent_id": history[-1]["agent_id"], "extra": "{}",
        })
    for month in range(1, 8):
        for source in SOURCES:
            data = json.dumps({"id": f"cost-{source}-{month}", "type": "campaign_cost", "source": source,
                               "campaign": f"{source}-0", "amount": f"{rng.randrange(5000, 90000)}.00",
                               "period_start": f"2026-{month:02d}-01", "period_end": f"2026-{month + 1:02d}-01"})
            event(datetime(2026, month, 1, tzinfo=UTC), f"cost-{source}-{month}", "campaign_cost", None, data=data)
    event_rows.sort(key=lambda row: row[0])
    t = store.t
    columns = ("seq", "id", "type", "client_id", "at", "status", "amount", "revenue", "data")
    rows = [dict(zip(columns, (n + 1, eid, kind, cid, at, status, amount, revenue, data), strict=True))
            for n, (at, eid, kind, cid, status, amount, revenue, data) in enumerate(event_rows)]
    with store.engine.begin() as conn:
        for table, batch in ((t.clients, client_rows), (t.assignments, assignment_rows), (t.events, rows)):
            for k in range(0, len(batch), 20_000):
                conn.execute(sa.insert(table), batch[k:k + 20_000])
    with store.engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    print(f"  {len(client_rows):,} clients, {len(rows):,} events, {len(assignment_rows):,} assignments", flush=True)
    return event_rows[-1][0]


# --- the floor: the same figures from hand-written SQL ------------------------------------------

def floor_statements(dialect: str, names: dict[str, str]) -> dict[str, str]:
    if dialect == "sqlite":
        dsum = "crmcore_decimal_sum"
        micros = ("(CAST(strftime('%s', substr({0}, 1, 19)) AS INTEGER) * 1000000"
                  " + CAST(substr(substr({0}, 21) || '000000', 1, 6) AS INTEGER))")
        took = f"({micros.format('c.ftd_at')} - {micros.format('c.registered_at')})"
    else:
        dsum = "sum"
        took = "CAST(EXTRACT(EPOCH FROM c.ftd_at - c.registered_at) * 1000000 AS BIGINT)"
    n = names
    holding = ("(SELECT max(h.seq) FROM {a} h WHERE h.client_id = {cid} AND h.assigned_at <= {at} "
               "AND (h.ended_at IS NULL OR h.ended_at > {at}){more})")
    event_credit = (f"coalesce((SELECT max(x.seq) FROM {n['a']} x WHERE x.client_id = e.client_id AND x.ended_by = e.id), "
                    + holding.format(a=n["a"], cid="e.client_id", at="e.at", more=" AND h.event_id <> e.id") + ")")
    return {
        "registered": f"""
            SELECT a.agent_id AS k, count(*) AS registrations,
                   sum(CASE WHEN c.ftd_at IS NOT NULL AND c.ftd_at <= :as_of THEN 1 ELSE 0 END) AS converted
            FROM {n['c']} c
            LEFT JOIN {n['a']} a ON a.seq = (SELECT min(r.seq) FROM {n['a']} r JOIN {n['e']} re ON re.id = r.event_id
                                              WHERE r.client_id = c.id AND re.type = 'client_registered')
            WHERE c.registered_at >= :start AND c.registered_at < :end
            GROUP BY a.agent_id""",
        "ftd": f"""
            SELECT k, count(*) AS ftd_count, sum(took) AS took,
                   sum(CASE WHEN rn IN ((n + 1) / 2, (n + 2) / 2) THEN took END) AS middle_sum,
                   sum(CASE WHEN rn IN ((n + 1) / 2, (n + 2) / 2) THEN 1 ELSE 0 END) AS middle_count,
                   max(CASE WHEN rn = (9 * n + 9) / 10 THEN took END) AS p90,
                   {dsum}(revenue) AS revenue, {dsum}(deposits) AS deposits, {dsum}(withdrawals) AS withdrawals
            FROM (
              SELECT a.agent_id AS k, {took} AS took, life.revenue, life.deposits, life.withdrawals,
                     row_number() OVER (PARTITION BY a.agent_id ORDER BY {took}) AS rn,
                     count(*) OVER (PARTITION BY a.agent_id) AS n
              FROM {n['c']} c
              LEFT JOIN (
                SELECT e.client_id,
                       {dsum}(CASE WHEN e.type = 'trade' THEN e.revenue END) AS revenue,
                       {dsum}(CASE WHEN e.type = 'deposit' AND e.status = 'completed' THEN e.amount END) AS deposits,
                       {dsum}(CASE WHEN e.type = 'withdrawal' AND e.status = 'completed' THEN e.amount END) AS withdrawals
                FROM {n['e']} e
                WHERE e.client_id IN (SELECT id FROM {n['c']} WHERE ftd_at >= :start AND ftd_at < :end)
                  AND e.at <= :as_of AND e.type IN ('trade', 'deposit', 'withdrawal')
                GROUP BY e.client_id) life ON life.client_id = c.id
              LEFT JOIN {n['a']} a ON a.seq = coalesce(
                (SELECT max(x.seq) FROM {n['a']} x WHERE x.client_id = c.id AND x.end_reason = 'handover'),
                {holding.format(a=n['a'], cid='c.id', at='c.ftd_at', more=" AND (h.stage <> 'ftd' OR h.assigned_at <> c.ftd_at)")})
              WHERE c.ftd_at >= :start AND c.ftd_at < :end) ranked
            GROUP BY k""",
        "money": f"""
            SELECT a.agent_id AS k,
                   {dsum}(CASE WHEN e.type = 'deposit' THEN e.amount END) AS deposits,
                   {dsum}(CASE WHEN e.type = 'withdrawal' THEN e.amount END) AS withdrawals,
                   {dsum}(CASE WHEN e.type = 'trade' THEN e.revenue END) AS revenue
            FROM {n['e']} e LEFT JOIN {n['a']} a ON a.seq = {event_credit}
            WHERE e.at >= :start AND e.at < :end
              AND (e.type = 'trade' OR (e.type IN ('deposit', 'withdrawal') AND e.status = 'completed'))
            GROUP BY a.agent_id""",
        "active": f"""
            SELECT a.agent_id AS k, count(*) AS active
            FROM (SELECT client_id, min(seq) AS seq FROM {n['e']}
                  WHERE type = 'trade' AND at >= :start AND at < :end GROUP BY client_id) f
            JOIN {n['c']} c ON c.id = f.client_id
            JOIN {n['e']} e ON e.seq = f.seq
            LEFT JOIN {n['a']} a ON a.seq = {event_credit}
            WHERE c.ftd_at IS NOT NULL AND c.ftd_at < :end
            GROUP BY a.agent_id""",
        "retention": f"""
            SELECT a.agent_id AS k,
                   sum(was_active) AS churn_base, sum(CASE WHEN was_active = 1 AND now_active = 0 THEN 1 ELSE 0 END) AS churned,
                   sum(1 - recent) AS reactivation_base,
                   sum(CASE WHEN recent = 0 AND now_active = 1 THEN 1 ELSE 0 END) AS reactivated
            FROM (SELECT c.id,
                    CASE WHEN EXISTS (SELECT 1 FROM {n['e']} t WHERE t.client_id = c.id AND t.type = 'trade'
                         AND t.at >= :before AND t.at < :start) THEN 1 ELSE 0 END AS was_active,
                    CASE WHEN EXISTS (SELECT 1 FROM {n['e']} t WHERE t.client_id = c.id AND t.type = 'trade'
                         AND t.at >= :idle AND t.at < :start) THEN 1 ELSE 0 END AS recent,
                    CASE WHEN EXISTS (SELECT 1 FROM {n['e']} t WHERE t.client_id = c.id AND t.type = 'trade'
                         AND t.at >= :start AND t.at < :end) THEN 1 ELSE 0 END AS now_active
                  FROM {n['c']} c WHERE c.ftd_at IS NOT NULL AND c.ftd_at < :start) f
            LEFT JOIN {n['a']} a ON a.seq = {holding.format(a=n['a'], cid='f.id', at=':start', more='')}
            WHERE was_active = 1 OR recent = 0
            GROUP BY a.agent_id""",
        "sla": f"""
            SELECT agent_id AS k, count(*) AS sla_assignments,
                   sum(CASE WHEN contacted_at IS NOT NULL AND contacted_at <= sla_due_at AND contacted_at <= :as_of
                       THEN 1 ELSE 0 END) AS sla_met
            FROM {n['a']} WHERE sla_due_at IS NOT NULL AND assigned_at >= :start AND assigned_at < :end
            GROUP BY agent_id""",
    }


def floor_figures(store: SqlStore, statements: dict[str, str], as_of: datetime) -> dict[Any, Figures]:
    sqlite = store.engine.dialect.name == "sqlite"

    def bind(t: datetime) -> Any:
        return naive(t).isoformat(sep=" ", timespec="microseconds") if sqlite else naive(t)

    params = {"start": bind(START), "end": bind(END), "as_of": bind(as_of),
              "before": bind(START - (END - START)), "idle": bind(START - timedelta(days=30))}
    def money(value: Any) -> Decimal:
        return Decimal(value) if value is not None else Decimal(0)

    found: dict[Any, Figures] = {}

    def group(key: Any) -> Figures:
        return found.setdefault(key, Figures())

    with store.engine.connect() as conn:
        for row in conn.execute(sa.text(statements["registered"]), params):
            f = group(row.k)
            f.registrations, f.converted = row.registrations, int(row.converted)
        for row in conn.execute(sa.text(statements["ftd"]), params):
            f = group(row.k)
            f.ftd_count, f.ftd_micros, f.ftd_p90_micros = row.ftd_count, int(row.took), int(row.p90)
            f.ftd_median_micros = Decimal(int(row.middle_sum)) / int(row.middle_count)
            f.clv_revenue = money(row.revenue)
            f.clv_net_deposits = money(row.deposits) - money(row.withdrawals)
        for row in conn.execute(sa.text(statements["money"]), params):
            f = group(row.k)
            f.deposits, f.withdrawals, f.revenue = money(row.deposits), money(row.withdrawals), money(row.revenue)
        for row in conn.execute(sa.text(statements["active"]), params):
            group(row.k).active = row.active
        for row in conn.execute(sa.text(statements["retention"]), params):
            f = group(row.k)
            f.churn_base, f.churned = int(row.churn_base), int(row.churned)
            f.reactivation_base, f.reactivated = int(row.reactivation_base), int(row.reactivated)
        for row in conn.execute(sa.text(statements["sla"]), params):
            f = group(row.k)
            f.sla_assignments, f.sla_met = row.sla_assignments, int(row.sla_met)
    return found


def comparable(found: dict[Any, Figures]) -> dict[Any, tuple[Any, ...]]:
    return {k: (f.registrations, f.converted, f.ftd_count, f.ftd_micros, f.ftd_median_micros, f.ftd_p90_micros,
                f.deposits, f.withdrawals, f.revenue, f.clv_revenue, f.clv_net_deposits, f.active, f.churn_base,
                f.churned, f.reactivation_base, f.reactivated, f.sla_assignments, f.sla_met)
            for k, f in found.items()}


def best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


FAMILY_METRICS = {
    "registered": ["registrations", "ftd_conversion_rate"],
    "ftd": ["ftd_count", "avg_time_to_ftd_days", "clv", "clv_net_deposits"],
    "money": ["net_deposits", "revenue"],
    "active": ["active_clients"],
    "retention": ["churn_rate", "reactivation_rate"],
    "sla": ["first_contact_sla_rate"],
}


def bench(name: str, store: SqlStore, args: argparse.Namespace) -> None:
    if store.latest_event_at() is None:
        print(f"{name}: building the data set", flush=True)
        started = time.perf_counter()
        as_of = build(store, args.clients, args.events, args.seed)
        print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
    else:
        as_of = store.latest_event_at()
        print(f"{name}: reusing the data set there", flush=True)
    assert as_of is not None
    schema = f'"{store.schema}".' if store.schema else ""
    names = {k: f"{schema}{store.prefix}{table}" for k, table in (("c", "clients"), ("e", "events"), ("a", "assignments"))}
    statements = floor_statements(store.engine.dialect.name, names)
    ours = comparable(kpi.figures(store, None, START, END, "agent", as_of))
    theirs = comparable(floor_figures(store, statements, as_of))
    assert set(ours) == set(theirs), (set(ours) ^ set(theirs))
    for key in ours:
        assert ours[key] == theirs[key], (key, ours[key], theirs[key])
    print(f"  crmcore and the hand-written SQL agree on {len(ours)} groups", flush=True)
    ours_time, rows = best(lambda: kpi.compute(store, START, END, by="agent", as_of=as_of), args.repeat)
    floor_time, _ = best(lambda: floor_figures(store, statements, as_of), args.repeat)
    print(f"  all KPIs by agent, April 2026 ({len(rows)} rows): crmcore {ours_time:.2f} s, "
          f"hand-written SQL {floor_time:.2f} s, ratio {ours_time / floor_time:.2f}x (goal <= 2x)", flush=True)
    if args.views:
        from crmcore.kpi.capacity import capacity
        from crmcore.kpi.funnel import funnel
        from crmcore.kpi.leaderboard import leaderboard

        quarter = datetime(2026, 1, 1, tzinfo=UTC), START
        took, rows = best(lambda: funnel(store, *quarter, by="agent", cohort="week", as_of=as_of), args.repeat)
        print(f"  funnel by agent and week, Q1 2026 ({len(rows)} rows): {took:.2f} s", flush=True)
        took, rows = best(lambda: leaderboard(store, START, END, "net_deposits", as_of=as_of), args.repeat)
        print(f"  leaderboard by net deposits, April: {took:.2f} s", flush=True)
        took, rows = best(lambda: capacity(store, as_of=END), args.repeat)
        print(f"  capacity of {len(rows)} desks: {took:.2f} s", flush=True)
    if args.families:
        for family, metrics in FAMILY_METRICS.items():
            mine, _ = best(lambda m=metrics: kpi.figures(store, m, START, END, "agent", as_of), args.repeat)
            only = {family: statements[family]}
            hand, _ = best(lambda o=only: _one_statement(store, o, as_of), args.repeat)
            print(f"    {family:<10} crmcore {mine:6.2f} s   hand-written {hand:6.2f} s", flush=True)


def _one_statement(store: SqlStore, only: dict[str, str], as_of: datetime) -> None:
    sqlite = store.engine.dialect.name == "sqlite"

    def bind(t: datetime) -> Any:
        return naive(t).isoformat(sep=" ", timespec="microseconds") if sqlite else naive(t)

    params = {"start": bind(START), "end": bind(END), "as_of": bind(as_of),
              "before": bind(START - (END - START)), "idle": bind(START - timedelta(days=30))}
    with store.engine.connect() as conn:
        for statement in only.values():
            conn.execute(sa.text(statement), params).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--pg-url", default=os.environ.get("CRMCORE_TEST_PG_URL", ""))
    parser.add_argument("--families", action="store_true", help="also time each query family on its own")
    parser.add_argument("--views", action="store_true", help="also time the funnel, a leaderboard and capacity")
    parser.add_argument("--keep", metavar="DIR", help="keep the data (SQLite file in DIR, PostgreSQL schema kpi_bench) "
                        "and reuse it when there")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        folder = args.keep or tempfile.mkdtemp(prefix="kpi-bench-")
        bench("SQLite", SqlStore(f"sqlite:///{folder}/crm.db"), args)
    if args.db in ("postgresql", "both"):
        if not args.pg_url:
            sys.exit("PostgreSQL: give --pg-url or set CRMCORE_TEST_PG_URL")
        engine = sa.create_engine(args.pg_url)
        with engine.begin() as conn:
            if not args.keep:
                conn.exec_driver_sql("DROP SCHEMA IF EXISTS kpi_bench CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS kpi_bench")
        try:
            bench("PostgreSQL", SqlStore(engine, schema="kpi_bench"), args)
        finally:
            if not args.keep:
                with engine.begin() as conn:
                    conn.exec_driver_sql("DROP SCHEMA IF EXISTS kpi_bench CASCADE")


if __name__ == "__main__":
    main()
