"""The SQL KPIs agree with the plain-Python reference on generated histories: counts and
Decimal sums exactly, rates and days to 1e-9."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crmcore import SqlStore, kpi
from crmcore.kpi.capacity import capacity
from crmcore.kpi.funnel import STAGES, funnel
from crmcore.kpi.leaderboard import leaderboard
from crmcore.storage import MemoryStore, Store
from tests.conftest import PG_URL_ENV, make_store, no_postgres
from tests.kpi_history import generate, replay, rules

GROUPINGS = [None, *kpi.GROUPINGS]
PERIODS = [
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
    (datetime(2026, 2, 10, 12, tzinfo=UTC), datetime(2026, 2, 17, 12, tzinfo=UTC)),
    (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC)),
]

COHORTS = [None, "week", "month"]
AS_OFS = [None, datetime(2026, 2, 15, tzinfo=UTC), datetime(2026, 3, 3, 12, tzinfo=UTC)]


def assert_rows_agree(actual: list[dict[str, Any]], expected: list[dict[str, Any]], context: str) -> None:
    assert [sorted(r) for r in actual] == [sorted(r) for r in expected], context
    assert len(actual) == len(expected), context
    for got, want in zip(actual, expected, strict=True):
        for name, value in want.items():
            other = got[name]
            if isinstance(value, float) and isinstance(other, float):
                assert math.isclose(other, value, rel_tol=1e-9, abs_tol=1e-9), (context, name, other, value)
            else:
                assert type(other) is type(value) or {type(other), type(value)} <= {int, Decimal}, (context, name)
                assert other == value, (context, name, other, value)


def compare(store: Store, reference: Store, start: datetime, end: datetime, by: str | None) -> None:
    expected = kpi.compute(reference, start, end, by=by)
    assert_rows_agree(kpi.compute(store, start, end, by=by), expected, f"{store!r} by {by} over {start}..{end}")
    assert_rows_agree(kpi.compute(store, start, end, by=by, reference=True), expected, f"{store!r} reference")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    """One seeded history on every store kind, each in a database of its own (``make_store``
    empties the shared test database, which other tests of the session use)."""
    steps = generate(seed=6, clients=70)
    stores: dict[str, Store] = {"memory": replay(steps, MemoryStore()).store}
    folder = tmp_path_factory.mktemp("kpi-seeded")
    stores["sqlite"] = replay(steps, SqlStore(f"sqlite:///{folder}/seeded.db")).store
    url = os.environ.get(PG_URL_ENV)
    schema = f"crm_kpi_seeded_{os.getpid()}"
    engine = sa.create_engine(url) if url else None
    if engine is not None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        stores["postgresql"] = replay(steps, SqlStore(engine, schema=schema)).store
    yield stores
    for kind in ("sqlite", "postgresql"):
        store = stores.get(kind)
        if isinstance(store, SqlStore):
            store.close()
    if engine is not None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("start", "end"), PERIODS)
def test_sql_and_reference_agree_on_a_realistic_history(
    seeded: dict[str, Store], kind: str, start: datetime, end: datetime
) -> None:
    if kind not in seeded:  # only PostgreSQL can be missing: a failure under CI
        no_postgres("the PostgreSQL KPI agreement tests")
    for by in GROUPINGS:
        compare(seeded[kind], seeded["memory"], start, end, by)


def test_the_realistic_history_exercises_every_kpi(seeded: dict[str, Store]) -> None:
    """A comparison is only as good as its data: every figure is non-trivial somewhere."""
    rows = [kpi.compute(seeded["memory"], start, end)[0] for start, end in PERIODS]
    for name in kpi.METRICS:
        assert any(row[name] not in (None, 0) for row in rows), name
        assert any(0 < (row[name] or 0) < 1 for row in rows) or not name.endswith("rate"), name
    handovers = [a for c in seeded["memory"].clients() for a in seeded["memory"].assignments(c["id"])
                 if a.end_reason is not None]
    assert {a.end_reason for a in handovers} >= {"handover", "agent_inactive", "sla_breach"}


def test_the_funnel_never_widens_even_where_a_deposit_came_before_kyc(seeded: dict[str, Store]) -> None:
    memory = seeded["memory"]
    clients = memory.clients()
    assert any(c["ftd_at"] and c["kyc_submitted_at"] and c["ftd_at"] < c["kyc_submitted_at"] for c in clients)
    assert any(c["ftd_at"] and not c["kyc_submitted_at"] for c in clients)
    start, end = PERIODS[3]
    for by, cohort, as_of in itertools.product(GROUPINGS, COHORTS, AS_OFS):
        for row in funnel(memory, start, end, by, cohort, as_of):
            counts = [row[stage] for stage in STAGES]
            assert counts == sorted(counts, reverse=True), (by, cohort, as_of, row)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    clients=st.integers(0, 14),
    offset=st.integers(-5, 100),
    days=st.integers(1, 45),
    hours=st.integers(0, 23),
    by=st.sampled_from(GROUPINGS),
    cohort=st.sampled_from(COHORTS),
)
@example(seed=100, clients=12, offset=53, days=42, hours=13, by="ib", cohort="month")  # campaign costs
# prorated into rounded shares must be summed in one order by both (found by hypothesis on PostgreSQL)
def test_sql_and_reference_agree_on_generated_histories(
    kind: str, seed: int, clients: int, offset: int, days: int, hours: int, by: str | None, cohort: str | None
) -> None:
    store = make_store(kind)
    steps = generate(seed=seed, clients=clients, days=60)
    replay(steps, store)
    memory = replay(steps, MemoryStore()).store
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=offset, hours=hours)
    end = start + timedelta(days=days)
    compare(store, memory, start, end, by)
    compare(store, memory, start, end, None)
    assert_rows_agree(funnel(store, start, end, by, cohort), funnel(memory, start, end, by, cohort), "funnel")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_funnel_leaderboard_and_capacity_agree_with_the_reference(seeded: dict[str, Store], kind: str) -> None:
    if kind not in seeded:  # only PostgreSQL can be missing: a failure under CI
        no_postgres("the PostgreSQL KPI agreement tests")
    store, memory = seeded[kind], seeded["memory"]
    start, end = PERIODS[3]
    for by, cohort, as_of in itertools.product(GROUPINGS, COHORTS, AS_OFS):
        assert_rows_agree(funnel(store, start, end, by, cohort, as_of), funnel(memory, start, end, by, cohort, as_of),
                          f"funnel {by} {cohort} {as_of}")
    targets = rules().targets
    for level in ("agent", "team", "desk"):
        for metric in kpi.METRICS:
            assert_rows_agree(
                leaderboard(store, start, end, metric, level, targets=targets),
                leaderboard(memory, start, end, metric, level, targets=targets), f"leaderboard {metric} {level}",
            )
    for as_of in AS_OFS:
        assert_rows_agree(capacity(store, as_of), capacity(memory, as_of), f"capacity {as_of}")
