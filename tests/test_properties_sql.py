"""The SQL compiler gives the interpreter's answers, nulls included, on SQLite and PostgreSQL.

Timestamps and durations are compared exactly: SQL's BIGINT microseconds against the
interpreter's ``timedelta`` in microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from crmcore.rules import ast
from crmcore.rules.interpreter import evaluate, truthy
from crmcore.rules.optimizer import is_constant
from crmcore.rules.schema import CLIENT_FIELDS
from crmcore.rules.sql import (
    ALWAYS,
    NEVER,
    SqlUnsupported,
    TableResolver,
    compile_condition,
    compile_expression,
    install_sqlite_functions,
    micros,
    sql_type,
)
from tests.strategies import (
    LISTS,
    client_rows,
    condition_texts,
    expression_texts,
    nows,
    scope_for,
    stamp,
    typed,
    typed_text,
)

TABLE = "crmcore_prop_clients"
NOW = stamp(datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC))
LARGEST = 1e15  # larger intermediate numbers risk bigint overflow: keep examples below it
LARGEST_MICROS = 10**18  # bigint microseconds end at 9.2e18 (292,000 years)


def _table(metadata: sa.MetaData) -> sa.Table:
    columns = [
        sa.Column(name, sa.DateTime(timezone=True) if t.base == "timestamp" else sql_type(t), nullable=t.nullable)
        for name, t in CLIENT_FIELDS.items()
    ]
    return sa.Table(TABLE, metadata, sa.Column("row_no", sa.Integer, primary_key=True), *columns)


@pytest.fixture
def clients(sql_engine: Engine, sql_tables: dict[str, tuple[Engine, sa.Table]]) -> tuple[Engine, sa.Table]:
    key = sql_engine.dialect.name
    if key not in sql_tables:
        table = _table(sa.MetaData())
        table.drop(sql_engine, checkfirst=True)
        table.create(sql_engine)
        install_sqlite_functions(sql_engine)
        sql_tables[key] = (sql_engine, table)
    return sql_tables[key]


def resolver_for(table: sa.Table) -> TableResolver:
    return TableResolver({f"client.{name}": table.c[name] for name in CLIENT_FIELDS})


def row(**changes: Any) -> dict[str, Any]:
    """A client with every nullable field null, changed as given."""
    base: dict[str, Any] = {name: None for name, t in CLIENT_FIELDS.items() if t.nullable}
    base.update(
        id="c1", registered_at=datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC), country="DE",
        phone_verified=False, stage="registered", balance=0.0, email_opens=0, email_clicks=0, status="new",
    )
    base.update(changes)
    return base


def too_large(node: ast.Node, scope: Any) -> bool:
    """Whether any part of the expression reaches magnitudes where bigint/float8 could overflow.

    Python's own limit on durations (999,999,999 days) raises OverflowError: too large as well.
    """
    try:
        for part in reversed(list(node.walk())):  # children before their parents
            if isinstance(part, ast.ListLit):
                continue
            value = evaluate(part, scope)
            if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > LARGEST:
                return True
            if isinstance(value, timedelta) and abs(micros(value)) > LARGEST_MICROS:
                return True
    except OverflowError:
        return True
    return False


def _is_time(node: ast.Node) -> bool:
    return node.type is not None and node.type.base in ("timestamp", "duration")


def uses_time_arithmetic(node: ast.Node) -> bool:
    for part in node.walk():
        if isinstance(part, ast.BinOp | ast.Neg) and any(_is_time(n) for n in (part, *part.children())):
            return True
        if isinstance(part, ast.Call) and part.func in ("days_since", "hours_since", "days_between"):
            return True
    return False


def same(got: Any, expected: Any, node: ast.Node) -> bool:
    assert node.type is not None
    if got is None or expected is None:
        return got is None and expected is None
    if node.type.base == "bool":
        return bool(got) == bool(expected)
    if node.type.base in ("timestamp", "duration"):  # exact microseconds
        return isinstance(expected, timedelta) and type(got) is int and got == micros(expected)
    if isinstance(expected, float) or isinstance(got, float):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == expected)


def _insert(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    conn.execute(table.insert(), [{"row_no": i, **r} for i, r in enumerate(rows)])


SETTINGS = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)


BEFORE_1970 = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
MICRO = timedelta(microseconds=1)

# Half the expressions are timestamps or durations (half the conditions compare them), so that
# time arithmetic is exercised a lot.
TIME_TEXTS = st.integers(1, 3).flatmap(
    lambda depth: st.sampled_from(["timestamp", "duration"]).flatmap(lambda base: typed_text(base, depth, True))
)
TIME_CONDITIONS = st.tuples(
    st.integers(1, 3).flatmap(lambda depth: typed_text("duration", depth, True)),
    st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
    typed_text("duration", 1, True),
).map(" ".join)


@SETTINGS
@given(text=st.one_of(expression_texts(exact_time=True), TIME_TEXTS), client=client_rows(), now=nows())
@example(text="client.ftd_amount + 1", client=row(), now=NOW)
@example(text="client.region", client=row(), now=NOW)
@example(text="client.balance / 0", client=row(balance=3.0), now=NOW)
@example(text="client.email_opens % 0", client=row(email_opens=7), now=NOW)
@example(text="client.email_opens % 3", client=row(email_opens=-7), now=NOW)
@example(text="client.email_opens % (-3)", client=row(email_opens=7), now=NOW)
@example(text="client.email_opens / 2", client=row(email_opens=7), now=NOW)
@example(text="days_since(client.registered_at)", client=row(), now=NOW)
@example(text="hours_since(client.ftd_at)", client=row(), now=NOW)
@example(text="client.kyc_submitted_at - client.registered_at", client=row(
    kyc_submitted_at=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC)), now=NOW)
@example(text="days_between(client.registered_at, now - 30d)", client=row(), now=NOW)
@example(text="days_since(client.kyc_submitted_at)", client=row(
    kyc_submitted_at=datetime(2025, 5, 31, 12, 0, 0, 250_001, tzinfo=UTC)), now=NOW)
@example(text="hours_since(client.registered_at)", client=row(), now=NOW + MICRO)
@example(text="client.registered_at", client=row(registered_at=BEFORE_1970), now=NOW)
@example(text="now - client.registered_at", client=row(registered_at=BEFORE_1970), now=NOW)
@example(text="days_since(client.registered_at)", client=row(registered_at=BEFORE_1970), now=NOW)
@example(text="client.registered_at + 0.5s", client=row(registered_at=BEFORE_1970), now=NOW)
@example(text="(client.kyc_submitted_at - client.registered_at) * client.email_opens", client=row(
    kyc_submitted_at=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC), email_opens=-3), now=NOW)
@example(text="3 * (now - client.registered_at)", client=row(), now=NOW)
@example(text="(now - client.registered_at) / 7d", client=row(), now=NOW)
@example(text="(now - client.registered_at) / (client.registered_at - client.registered_at)", client=row(), now=NOW)
@example(text="24h * 1.5", client=row(), now=NOW)
@example(text="24h / 7", client=row(), now=NOW)
@example(text="0.000001s * 2.5", client=row(), now=NOW)
@example(text="-abs(client.registered_at - now)", client=row(), now=NOW)
@example(text="max(client.ftd_at, now)", client=row(ftd_at=datetime(2030, 1, 1, tzinfo=UTC)), now=NOW)
@example(text="coalesce(client.ftd_at, now)", client=row(), now=NOW)
@example(text="round(2.5)", client=row(), now=NOW)
@example(text="round(client.balance)", client=row(balance=2.5), now=NOW)
@example(text="round(client.balance)", client=row(balance=-2.5), now=NOW)
@example(text="round(client.balance)", client=row(balance=0.49999999999999994), now=NOW)
@example(text="round(client.ftd_amount)", client=row(ftd_amount=-0.49999999999999994), now=NOW)
@example(text='startswith(client.country, "")', client=row(country=""), now=NOW)
@example(text='endswith(client.country, "")', client=row(country="DE"), now=NOW)
@example(text='contains(client.region, "")', client=row(), now=NOW)
@example(text='endswith(client.country, "xDE")', client=row(country="DE"), now=NOW)
@example(text="min(client.country, client.status)", client=row(country="a", status="B"), now=NOW)
@example(text='max(client.country, "z")', client=row(country="é"), now=NOW)
@example(text="min(client.ftd_amount, 1)", client=row(), now=NOW)
@example(text="max(client.balance, client.ftd_amount)", client=row(balance=5.0), now=NOW)
@example(text="lower(client.country)", client=row(country="ÉA\u00dfZ"), now=NOW)
@example(text="len(client.country)", client=row(country="é\U0001f600"), now=NOW)
@example(text="coalesce(client.region, client.language, client.country)", client=row(), now=NOW)
@example(text="if client.ftd_amount > 0 then 1 else 2.5", client=row(), now=NOW)
def test_sql_value_equals_interpreter_value(
    clients: tuple[Engine, sa.Table], text: str, client: dict[str, Any], now: timedelta
) -> None:
    engine, table = clients
    node = typed(text)
    assert node is not None, text
    scope = scope_for(client, now)
    if too_large(node, scope):
        reject()
    if uses_time_arithmetic(node):
        event("time arithmetic")
    expected = evaluate(node, scope)
    expression = compile_expression(node, resolver_for(table), now=now, lists=LISTS)
    with engine.connect() as conn, conn.begin() as transaction:
        _insert(conn, table, [client])
        got = conn.execute(sa.select(expression).select_from(table)).scalar_one()
        transaction.rollback()
    assert same(got, expected, node), f"{text}: SQL gave {got!r}, the interpreter {expected!r}"


@SETTINGS
@given(text=st.one_of(condition_texts(exact_time=True), TIME_CONDITIONS), batch=st.lists(client_rows(), min_size=1, max_size=6), now=nows())
@example(text="not (client.ftd_amount < 5)", batch=[row(), row(ftd_amount=4.0), row(ftd_amount=6.0)], now=NOW)
@example(text="client.ftd_amount == client.ftd_amount", batch=[row(), row(ftd_amount=1.0)], now=NOW)
@example(text="client.region != client.language", batch=[row(), row(region="a"), row(region="a", language="b")], now=NOW)
@example(text="client.region == null", batch=[row(), row(region="a")], now=NOW)
@example(text="not (client.region in TIER1)", batch=[row(), row(region="DE"), row(region="FR")], now=NOW)
@example(text="client.region not in []", batch=[row(), row(region="DE")], now=NOW)
@example(text='client.country < "B"', batch=[row(country="a"), row(country="A"), row(country="é")], now=NOW)
@example(text='client.country > "z"', batch=[row(country="é"), row(country="zz")], now=NOW)
@example(text='client.country matches "E$"', batch=[row(country="DE"), row(country="DE\n"), row(country="DE\n\n")], now=NOW)
@example(text='client.country matches "^.$"', batch=[row(country="\n"), row(country="a"), row(country="ab")], now=NOW)
@example(text='not startswith(client.region, "a")', batch=[row(), row(region="ab"), row(region="b")], now=NOW)
@example(text="client.last_login_at > now - 7d", batch=[row(), row(last_login_at=datetime(2025, 5, 30, tzinfo=UTC))], now=NOW)
@example(text="client.phone_verified", batch=[row(), row(phone_verified=True)], now=NOW)
@example(text="1 / 0 == null", batch=[row()], now=NOW)
@example(  # exactly 24 hours, microsecond parts differing between the fields: only the last row is out
    text="client.kyc_submitted_at - client.registered_at <= 24h",
    batch=[row(kyc_submitted_at=datetime(2024, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)),
           row(registered_at=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
               kyc_submitted_at=datetime(2024, 3, 2, 0, 0, 0, 1, tzinfo=UTC)),
           row(registered_at=datetime(2024, 3, 1, 0, 0, 0, 999_999, tzinfo=UTC),
               kyc_submitted_at=datetime(2024, 3, 2, 0, 0, 0, 999_998, tzinfo=UTC)),
           row(kyc_submitted_at=datetime(2024, 3, 2, 0, 0, 0, 0, tzinfo=UTC))],
    now=NOW,
)
@example(text="client.registered_at < now - 20000d", batch=[row(), row(registered_at=BEFORE_1970)], now=NOW)
@example(text="days_since(client.registered_at) >= 1", batch=[
    row(registered_at=datetime(2025, 5, 31, 12, 0, 0, 250_000, tzinfo=UTC)),
    row(registered_at=datetime(2025, 5, 31, 12, 0, 0, 250_001, tzinfo=UTC))], now=NOW)
def test_condition_selects_exactly_the_rows_the_interpreter_accepts(
    clients: tuple[Engine, sa.Table], text: str, batch: list[dict[str, Any]], now: timedelta
) -> None:
    engine, table = clients
    node = typed(text)
    assert node is not None, text
    if any(too_large(node, scope_for(client, now)) for client in batch):
        reject()
    if uses_time_arithmetic(node):
        event("time arithmetic")
    expected = {i for i, client in enumerate(batch) if truthy(evaluate(node, scope_for(client, now)))}
    condition = compile_condition(node, resolver_for(table), now=now, lists=LISTS)
    query = sa.select(table.c.row_no)
    values: list[Any] = []
    with engine.connect() as conn, conn.begin() as transaction:
        _insert(conn, table, batch)
        if condition is NEVER:
            query = query.where(sa.false())
        elif condition is not ALWAYS:
            assert isinstance(condition, sa.ColumnElement)
            query = query.where(condition)
            values = list(conn.execute(sa.select(condition).select_from(table)).scalars())
        selected = set(conn.execute(query).scalars())
        transaction.rollback()
    assert selected == expected, f"{text}: SQL selected {sorted(selected)}, the interpreter {sorted(expected)}"
    assert None not in values, f"{text}: the condition is NULL for some row"


def _scales_a_duration_by_a_variable(node: ast.Node) -> bool:
    """``d * number`` or ``d / number`` (either side) that does not fold to a constant."""
    return any(
        isinstance(part, ast.BinOp) and part.op in ("*", "/") and not is_constant(part)
        and any(n.type is not None and n.type.base == "duration" for n in (part.left, part.right))
        and not all(n.type is not None and n.type.base == "duration" for n in (part.left, part.right))
        for part in node.walk()
    )


@SETTINGS
@given(text=expression_texts())
def test_sql_refuses_only_duration_scaling_it_cannot_round_like_python(text: str) -> None:
    """With every form of duration arithmetic: compiled, or refused (E400) at a scaled duration."""
    node = typed(text)
    assert node is not None, text
    table = _table(sa.MetaData())
    try:
        compile_expression(node, resolver_for(table), now=NOW, lists=LISTS)
    except SqlUnsupported as refused:
        event("refused")
        assert refused.code == "E400"
        assert "cannot be computed exactly in SQL" in refused.construct, refused.construct
        assert isinstance(refused.node, ast.BinOp) and _scales_a_duration_by_a_variable(refused.node), text
    else:
        event("compiled")
