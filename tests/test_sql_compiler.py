"""The SQL compiler, behaviour by behaviour, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from crmcore.rules import ast
from crmcore.rules.checker import check_text
from crmcore.rules.diagnostics import Code, Origin
from crmcore.rules.interpreter import Scope, evaluate
from crmcore.rules.schema import CLIENT_FIELDS, Env
from crmcore.rules.sql import (
    ALWAYS,
    NEVER,
    SqlUnsupported,
    TableResolver,
    compile_condition,
    compile_expression,
    epoch_micros,
    install_sqlite_functions,
    micros,
    sql_type,
)
from crmcore.rules.sqlregex import RegexRefused, to_postgres
from crmcore.rules.types import STRING, list_of
from crmcore.rules.unparse import string_text
from tests.strategies import PATTERNS, stamp

ENV = Env(lists={"TIER1": list_of(STRING), "EMPTY": list_of(STRING)})
LISTS = {"TIER1": ("DE", "AT", "CH"), "EMPTY": ()}
NOW = stamp(datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC))
REGISTERED = stamp(datetime(2025, 5, 1, tzinfo=UTC))
DAY = timedelta(days=1)
TABLE = "crmcore_sql_compiler_clients"
# On PostgreSQL the text columns use an ICU collation, where 'a' < 'B': the compiler must not care.
TEXT = sa.String().with_variant(sa.String(collation="en-US-x-icu"), "postgresql")


def _column(name: str) -> sa.Column[Any]:
    t = CLIENT_FIELDS[name]
    if t.base == "timestamp":
        return sa.Column(name, sa.DateTime(timezone=True))
    return sa.Column(name, TEXT if t.base == "string" else sql_type(t))


@pytest.fixture
def clients(sql_engine: Engine, sql_tables: dict[str, tuple[Engine, sa.Table]]) -> Iterator[tuple[Engine, sa.Table]]:
    name = sql_engine.dialect.name
    if name not in sql_tables:
        table = sa.Table(TABLE, sa.MetaData(), sa.Column("row_no", sa.Integer, primary_key=True),
                         *(_column(field) for field in CLIENT_FIELDS))
        table.drop(sql_engine, checkfirst=True)
        table.create(sql_engine)
        install_sqlite_functions(sql_engine)
        sql_tables[name] = (sql_engine, table)
    table = sql_tables[name][1]
    yield sql_engine, table
    with sql_engine.begin() as conn:
        conn.execute(table.delete())


def client(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {name: None for name in CLIENT_FIELDS}
    record.update(
        id="c1", registered_at=datetime(2025, 5, 1, tzinfo=UTC), country="DE", phone_verified=False,
        stage="registered", balance=0.0, email_opens=0, email_clicks=0, status="new",
    )
    record.update(changes)
    return record


def resolver(table: sa.Table) -> TableResolver:
    return TableResolver({f"client.{name}": table.c[name] for name in CLIENT_FIELDS})


def sql_values(clients: tuple[Engine, sa.Table], text: str, rows: list[dict[str, Any]]) -> list[Any]:
    """The compiled expression's value for each row, in order."""
    engine, table = clients
    node = check_text(text, ENV)
    expression = compile_expression(node, resolver(table), now=NOW, lists=LISTS)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"row_no": i, **r} for i, r in enumerate(rows)])
        values = list(conn.execute(sa.select(expression).select_from(table).order_by(table.c.row_no)).scalars())
        conn.execute(table.delete())
    return values


def normalised(value: Any) -> Any:
    """SQL's 0/1 as bools; the interpreter's stamps and durations as SQL's integer microseconds."""
    if isinstance(value, timedelta):
        return micros(value)
    return bool(value) if isinstance(value, int) and value in (0, 1) and not isinstance(value, bool) else value


# --- constant conditions -----------------------------------------------------------------------

def condition(text: str, env: Env = ENV, **kw: Any) -> Any:
    table = sa.table("clients", *(sa.column(name) for name in CLIENT_FIELDS))
    resolver = TableResolver({f"client.{name}": table.c[name] for name in CLIENT_FIELDS})
    return compile_condition(check_text(text, env), resolver, now=NOW, lists=LISTS, **kw)


@pytest.mark.parametrize(
    "text",
    ["1 < 2", "null == null", "1 / 0 == null", "not (1 / 0 > 0)", "true or client.balance > 0",
     "client.country not in []", "client.country not in EMPTY", "client.balance != null",
     "if 1 > 0 then true else client.phone_verified"],
)
def test_a_condition_that_always_holds_folds_to_always(text: str) -> None:
    assert condition(text) is ALWAYS


@pytest.mark.parametrize(
    "text",
    ["1 > 2", "null", "1 / 0 > 0", "1 / 0 == 1 / 0", '"DE" in []', "false and client.balance > 0",
     "client.country in []", "client.country in EMPTY", "client.region not in EMPTY and false",
     "client.country == null", 'client.ftd_amount == 5 % 0'],
)
def test_a_condition_that_never_holds_folds_to_never(text: str) -> None:
    assert condition(text) is NEVER


def test_a_condition_on_a_nullable_field_does_not_fold() -> None:
    assert condition("client.region not in []") not in (ALWAYS, NEVER)


# --- what SQL cannot express -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "env", "at"),
    [
        ('"en" in agent.languages', ENV.with_agent(), "agent.languages"),
        ("len(agent.countries) > 1", ENV.with_agent(), "agent.countries"),
        ("deposits.count(30d) > 2", ENV, "deposits.count"),
        ('client.country matches "(?P<x>a)"', ENV, '"(?P'),
        ('client.country matches "\\\\bDE"', ENV, '"\\'),
        ("client.balance > 0 and trading.equity > 0", ENV, "trading.equity"),
    ],
)
def test_an_unsupported_construct_raises_e400_at_its_position(text: str, env: Env, at: str) -> None:
    with pytest.raises(SqlUnsupported) as info:
        condition(text, env, origin=Origin.standalone(text, "rules.yaml"))
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.code, diagnostic.path, diagnostic.line) == (Code.SQL_UNSUPPORTED, "rules.yaml", 1)
    assert diagnostic.column == text.index(at) + 1
    assert diagnostic.source_line == text
    assert "^" in info.value.render()


def test_an_unsupported_construct_without_origin_still_has_its_column() -> None:
    with pytest.raises(SqlUnsupported) as info:
        condition("client.balance > 0 or deposits.sum(7d) > 0")
    assert (info.value.code, info.value.line, info.value.column) == ("E400", 1, 23)


def test_now_is_required_when_the_expression_reads_the_clock() -> None:
    table = sa.table("clients", sa.column("registered_at"))
    with pytest.raises(SqlUnsupported, match="clock"):
        compile_condition(check_text("days_since(client.registered_at) > 3"),
                          TableResolver({"client.registered_at": table.c.registered_at}))


def test_a_list_used_as_a_value_is_unsupported() -> None:
    with pytest.raises(SqlUnsupported, match="list"):
        condition('(if client.phone_verified then ["a"] else ["b"]) == ["a"]')


# --- regex -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("pattern", "postgres"),
    [
        ("^DE$", "^DE(?=\\n?$)"),
        ("a.b", "a[^\\n]b"),
        ("(?i)^de", "(?i)^de"),
        ("\\d{2,3}", "\\d{2,3}"),
        ("x{,3}?", "x{0,3}?"),
        ("[^\\s\\d]+", "[^\\s\\d]+"),
        ("(?:ab|c)d", "(?:ab|c)d"),
        ("\\.\\$\\(", "\\.\\$\\("),
        ("[a-z_-]", "[a-z_-]"),
        ("", ""),
    ],
)
def test_a_regex_inside_the_subset_is_translated(pattern: str, postgres: str) -> None:
    assert to_postgres(pattern) == postgres


@pytest.mark.parametrize(
    "pattern",
    ["\\bword", "\\Aabc", "abc\\Z", "(a)\\1", "(?P<n>a)", "(?=a)", "(?<=a)b", "(?s).", "(?m)^a", "a(?i)b",
     "[[:alpha:]]", "[\\D]", "a*+", "a{300}", "a{x}", "]", "[]a]", "[a-\\d]", "[a--]", "^*", "\\é", "\\x41",
     "(?i)[Z-a]", "a{2}{3}"],
)
def test_a_regex_outside_the_subset_is_refused(pattern: str) -> None:
    with pytest.raises(RegexRefused):
        to_postgres(pattern)


SUBJECTS = [chr(c) for c in range(1, 128)] + [
    "", "DE", "de", "DE\n", "DE\n\n", "\nDE", "a\nb", "ab", "aXb", "x@y.com", "x@y.com\n", "X@Y.COM",
    "é", "É", "ß", "\u0663", "\u00a0", "\u2028", "\u212a", "\u017f", "\u0130", "ab_cd", "abcd", "123",
    "ΩΩ", "\U0001f600", "k", "K", "s", "S", "cd", "abab c",
]
ACCEPTED = (*PATTERNS, "^DE$", "(?i)^de", "(?i)k", "(?i)s", "(?i)[a-z]+$", "\\d{2,3}", "[^\\s\\d]+", "^\\w+$",
            "^[\\w.]+@\\w+\\.com$", "[^a]", "(?i)[^a]", "^\\S*$", "^\\D+$", "a|", "()", "(a$)*", "$", "^", "\\n$",
            "[\\]\\\\-]", "[\\^]", "[é-ü]", "(?i)[0-9_]")


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_matches_agrees_with_python_on_every_subject(clients: tuple[Engine, sa.Table], pattern: str) -> None:
    rows = [client(country=s) for s in SUBJECTS]
    got = sql_values(clients, f"client.country matches {string_text(pattern)}", rows)
    compiled = re.compile(pattern, re.ASCII)
    expected = [compiled.search(s) is not None for s in SUBJECTS]
    wrong = [(s, g) for s, g, e in zip(SUBJECTS, got, expected, strict=True) if bool(g) != e]
    assert not wrong, f"{pattern!r} disagrees with Python on {wrong}"


def test_the_sqlite_regex_function_is_null_safe(sqlite_engine: Engine) -> None:
    install_sqlite_functions(sqlite_engine)
    install_sqlite_functions(sqlite_engine)  # idempotent
    with sqlite_engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT crmcore_regexp_search('a', NULL), crmcore_regexp_search(NULL, 'a'),"
            " crmcore_regexp_search('^a$', 'a'), crmcore_regexp_search('\\d', '\u0663')"
        )).one()
    assert tuple(row) == (None, None, 1, 0)


# --- every function and operator, on both databases ---------------------------------------------

CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("lower(client.country)", {"country": "ÉAz"}, "Éaz"),
    ("upper(client.country)", {"country": "éaß"}, "éAß"),
    ("len(client.country)", {"country": "é\U0001f600"}, 2),
    ("len(TIER1)", {}, 3),
    ("coalesce(client.region, client.language, client.country)", {"language": "fr"}, "fr"),
    ("coalesce(client.ftd_amount, 1)", {}, 1),
    ("abs(client.balance)", {"balance": -2.5}, 2.5),
    ("abs(client.ftd_at - now)", {"ftd_at": datetime(2025, 6, 2, 12, 0, 0, 250_000, tzinfo=UTC)}, 86_400_000_000),
    ("abs(client.ftd_at - now)", {"ftd_at": datetime(2025, 5, 31, 12, 0, 0, 250_001, tzinfo=UTC)}, 86_399_999_999),
    ("min(client.ftd_amount, 1)", {}, None),
    ("max(client.balance, client.ftd_amount)", {"balance": 3.0}, None),
    ("min(client.balance, client.email_opens)", {"balance": 3.0, "email_opens": 2}, 2),
    ("max(client.country, client.status)", {"country": "a", "status": "B"}, "a"),
    ("min(client.country, client.status)", {"country": "é", "status": "z"}, "z"),
    ("min(client.ftd_at, now)", {"ftd_at": datetime(2030, 1, 1, tzinfo=UTC)}, micros(NOW)),
    ("max(client.ftd_at, now)", {"ftd_at": datetime(2030, 1, 1, tzinfo=UTC)}, micros(stamp(datetime(2030, 1, 1)))),
    ("round(client.balance)", {"balance": 2.5}, 3),
    ("round(client.balance)", {"balance": -2.5}, -3),
    ("round(client.balance)", {"balance": 0.49999999999999994}, 0),
    ("round(client.balance)", {"balance": -1.4}, -1),
    ("round(client.balance)", {"balance": 4503599627370497.0}, 4503599627370497),
    ("round(client.email_opens)", {"email_opens": 7}, 7),
    ("round(client.ftd_amount)", {}, None),
    ('startswith(client.country, "")', {"country": ""}, True),
    ('startswith(client.country, "DEx")', {"country": "DE"}, False),
    ('startswith(client.region, "D")', {}, None),
    ('endswith(client.country, "")', {"country": "DE"}, True),
    ('endswith(client.country, "xDE")', {"country": "DE"}, False),
    ('endswith(client.country, "E")', {"country": "DE"}, True),
    ("endswith(client.country, client.region)", {}, None),
    ('contains(client.country, "")', {"country": ""}, True),
    ('contains(client.country, "é")', {"country": "aéb"}, True),
    ('contains(client.region, "")', {}, None),
    ("days_since(client.registered_at)", {}, (NOW - REGISTERED) / DAY),
    ("hours_since(client.registered_at)", {}, (NOW - REGISTERED) / timedelta(hours=1)),
    ("days_between(client.registered_at, now)", {}, (NOW - REGISTERED) / DAY),
    ("days_since(client.ftd_at)", {}, None),
    ("days_since(client.ftd_at)", {"ftd_at": datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)},
     (NOW - stamp(datetime(1969, 12, 31, 23, 59, 59, 999_999))) / DAY),
    ("client.ftd_at", {"ftd_at": datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)}, -1),
    ("client.ftd_at - client.registered_at", {"ftd_at": datetime(2025, 5, 2, 0, 0, 0, 1, tzinfo=UTC)}, 86_400_000_001),
    ("(client.ftd_at - client.registered_at) * 3", {"ftd_at": datetime(2025, 5, 1, 0, 0, 0, 1, tzinfo=UTC)}, 3),
    ("client.email_opens * (client.ftd_at - client.registered_at)",
     {"ftd_at": datetime(2025, 5, 1, 0, 0, 0, 7, tzinfo=UTC), "email_opens": -2}, -14),
    ("(client.ftd_at - client.registered_at) * 2.0", {"ftd_at": datetime(2025, 5, 1, 0, 0, 0, 7, tzinfo=UTC)}, 14),
    ("(client.ftd_at - client.registered_at) / 0.000001s", {"ftd_at": datetime(2025, 5, 1, 0, 0, 0, 7, tzinfo=UTC)}, 7.0),
    ("(now - client.registered_at) / 0s", {}, None),
    ("(now - client.registered_at) / 0", {}, None),
    ("(now - client.registered_at) * (1 / 0)", {}, None),
    ("24h * 1.5", {}, 129_600_000_000),
    ("0.000001s * 2.5", {}, 2),  # Python rounds 2.5 microseconds half to even
    ("0.000001s * 3.5", {}, 4),
    ("1s / 3", {}, 333_333),
    ("-(now - client.registered_at)", {}, -micros(NOW - REGISTERED)),
    ("coalesce(client.ftd_at, now)", {}, micros(NOW)),
    ("if client.phone_verified then 1h else 0.5s", {}, 500_000),
    ("client.email_opens % 3", {"email_opens": -7}, -1),
    ("client.email_opens % (-3)", {"email_opens": 7}, 1),
    ("client.email_opens % 0", {"email_opens": 7}, None),
    ("client.email_opens / 2", {"email_opens": 7}, 3.5),
    ("client.balance / 0", {"balance": 1.0}, None),
    ("client.ftd_amount * 2", {}, None),
    ("-client.email_opens", {"email_opens": 4}, -4),
    ("client.registered_at + 1d - now", {}, -2_635_200_250_000),
    ("if client.ftd_amount > 0 then 1 else 2", {}, 2),
    ("if client.phone_verified then client.country else client.region", {"phone_verified": True}, "DE"),
    ("client.country in TIER1", {"country": "AT"}, True),
    ("client.region not in TIER1", {}, False),
    ("client.region in TIER1 or client.region not in TIER1", {}, False),
    ('client.country < "B"', {"country": "a"}, False),
    ('client.country > "z"', {"country": "é"}, True),
    ("client.phone_verified == (client.balance > 0)", {"phone_verified": True, "balance": 1.0}, True),
    ("client.phone_verified != true", {}, True),
    ("not (client.ftd_amount < 5)", {}, True),
    ("client.region == client.language", {}, False),
    ("client.region != client.language", {}, False),
    ('client.country matches "E$"', {"country": "DE\n"}, True),
]


@pytest.mark.parametrize(("text", "changes", "expected"), CASES)
def test_each_function_and_operator_gives_the_interpreters_answer(
    clients: tuple[Engine, sa.Table], text: str, changes: dict[str, Any], expected: Any
) -> None:
    record = client(**changes)
    node = check_text(text, ENV)
    interpreted = evaluate(node, Scope(client=record, now=NOW, lists=LISTS))
    assert normalised(interpreted) == expected
    (got,) = sql_values(clients, text, [record])
    assert normalised(got) == expected  # exactly, floats included
    if expected is not None and node.type is not None and node.type.base in ("timestamp", "duration"):
        assert type(got) is int  # microseconds, never a float


def test_a_condition_is_never_null(clients: tuple[Engine, sa.Table]) -> None:
    engine, table = clients
    texts = ["client.ftd_amount < 5", "startswith(client.region, 'a')", "client.region in TIER1",
             "client.region matches 'a'", "coalesce(endswith(client.region, 'a'), false) or client.ftd_amount > 1"]
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"row_no": 0, **client()}])
        for text in texts:
            sql = compile_condition(check_text(text, ENV), resolver(table), now=NOW, lists=LISTS)
            assert isinstance(sql, sa.ColumnElement)
            assert conn.execute(sa.select(sql)).scalar_one() is not None, text
        conn.execute(table.delete())


# --- time ---------------------------------------------------------------------------------------

MOMENTS = [
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2029, 12, 31, 12, 30, 0, 1, tzinfo=UTC),
    datetime(2025, 3, 30, 1, 0, 0, 123_457, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_epoch_micros_equals_the_python_stamp_exactly(clients: tuple[Engine, sa.Table], moment: datetime) -> None:
    engine, table = clients
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"row_no": 0, **client(ftd_at=moment)}])
        got = conn.execute(sa.select(epoch_micros(table.c.ftd_at))).scalar_one()
        conn.execute(table.delete())
    assert type(got) is int
    assert got == micros(stamp(moment)) == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_epoch_micros_of_an_offset_timestamp_on_postgresql(pg_engine: Engine) -> None:
    moment = datetime(2025, 1, 1, 3, 0, 0, 5, tzinfo=timezone(timedelta(hours=3)))
    with pg_engine.connect() as conn:
        aware = sa.literal(moment, sa.DateTime(timezone=True))
        naive = sa.literal(moment.replace(tzinfo=None), sa.DateTime())
        got = conn.execute(sa.select(epoch_micros(aware), epoch_micros(naive))).one()
    assert tuple(got) == (micros(stamp(moment)), micros(stamp(moment.replace(tzinfo=None))))


@pytest.mark.parametrize(
    "now",
    [NOW, datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC), datetime(2025, 6, 1, 12, 0, 0, 250_000),
     datetime(2025, 6, 1, 14, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))],
)
def test_now_may_be_a_stamp_or_a_datetime(clients: tuple[Engine, sa.Table], now: Any) -> None:
    engine, table = clients
    node = check_text("now - client.registered_at", ENV)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"row_no": 0, **client()}])
        got = conn.execute(sa.select(compile_expression(node, resolver(table), now=now)).select_from(table)).scalar_one()
        conn.execute(table.delete())
    assert got == micros(NOW - REGISTERED)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("(now - client.registered_at) * 1.5 > 1d", "(now"),
        ("1.5 * (now - client.registered_at) > 1d", "1.5"),
        ("client.registered_at + (now - client.registered_at) / 2 > now", "(now"),
        ("(now - client.registered_at) / client.balance > 1d", "(now"),
        ("(now - client.registered_at) * client.balance > 1d", "(now"),
    ],
)
def test_scaling_a_duration_by_a_number_is_refused_with_e400(text: str, at: str) -> None:
    with pytest.raises(SqlUnsupported) as info:
        condition(text, origin=Origin.standalone(text, "rules.yaml"))
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.code, diagnostic.column) == (Code.SQL_UNSUPPORTED, text.index(at) + 1)
    assert "a duration by a number cannot be computed exactly in SQL; write the duration directly" in diagnostic.message


def test_a_constant_scaled_duration_is_folded_with_pythons_rounding() -> None:
    table = sa.table("clients", sa.column("registered_at"))
    sql = compile_condition(check_text("client.registered_at > now - 24h * 1.5 + 0.000001s * 2.5"),
                            TableResolver({"client.registered_at": table.c.registered_at}), now=NOW)
    assert isinstance(sql, sa.ColumnElement)
    params = sql.compile().params
    assert set(params.values()) >= {129_600_000_000, 2}  # 36 hours; 2.5 us rounded half to even


def test_days_since_is_one_double_division_of_exact_microseconds() -> None:
    table = sa.table("clients", sa.column("registered_at"))
    sql = compile_expression(check_text("days_since(client.registered_at)"),
                             TableResolver({"client.registered_at": table.c.registered_at}), now=NOW)
    for dialect in (sa.create_engine("sqlite://").dialect, sa.create_engine("postgresql+psycopg://").dialect):
        text = str(sql.compile(dialect=dialect))
        assert "CAST(" in text and " - clients.registered_at AS" in text, text


def test_a_numeric_column_is_read_as_a_float() -> None:
    table = sa.table("accounts", sa.column("amount", sa.Numeric(12, 2)))
    node = check_text("client.ftd_amount / 3")
    sql = compile_expression(node, TableResolver({"client.ftd_amount": table.c.amount}))
    assert "CAST(accounts.amount AS DOUBLE" in str(sql.compile(dialect=sa.create_engine("sqlite://").dialect))


def test_names_of_the_expression_are_read_through_the_resolver_only() -> None:
    seen: list[str] = []

    class Recording:
        def column(self, name: ast.Name) -> Any:
            seen.append(name.dotted)
            return sa.literal_column("1", sa.BigInteger())

        def window(self, node: ast.Window, now: timedelta) -> Any:
            seen.append(f"{node.source}.{node.metric}")
            return sa.literal_column("0", sa.BigInteger())

    compile_condition(check_text("client.email_opens + deposits.count(7d) > 1"), Recording(), now=NOW)
    assert seen == ["client.email_opens", "deposits.count"]


# --- random patterns: what the translator accepts, PostgreSQL matches as Python does ------------

_REGEX_ATOMS = ["a", "b", "A", "1", "é", " ", ".", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\n", "\\.",
                "[ab]", "[^a]", "[a-c]", "[\\d_]", "[^\\n]", "^", "$", "(?:a|b)", "()"]
_REGEX_REPEATS = ["", "", "*", "+", "?", "{1,2}", "*?", "{2}", "{,2}", "{0,}"]


def _regex_sequences(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    piece = st.tuples(st.one_of(st.sampled_from(_REGEX_ATOMS), inner.map(lambda x: f"({x})")),
                      st.sampled_from(_REGEX_REPEATS)).map("".join)
    branch = st.lists(piece, max_size=3).map("".join)
    return st.lists(branch, min_size=1, max_size=2).map("|".join)


random_patterns = st.tuples(
    st.sampled_from(["", "(?i)"]),
    st.recursive(st.sampled_from(_REGEX_ATOMS), _regex_sequences, max_leaves=6),
).map("".join)

_LETTERS = ["a", "A", "b", "\n", "1", "_", "é", " "]
SHORT_STRINGS = [""] + [a + b + c for a in _LETTERS for b in ["", *_LETTERS] for c in ["", "a", "\n"]]


@settings(max_examples=150, deadline=None)
@given(pattern=random_patterns)
def test_a_random_pattern_is_refused_or_matches_exactly_as_python(pg_engine: Engine, pattern: str) -> None:
    try:
        compiled = re.compile(pattern, re.ASCII)
        translated = to_postgres(pattern)
    except (re.error, RegexRefused):
        return
    with pg_engine.connect() as conn:
        rows = conn.execute(
            sa.text('SELECT s, (s COLLATE "C") ~ :pattern FROM unnest(CAST(:subjects AS text[])) AS t(s)'),
            {"pattern": translated, "subjects": SHORT_STRINGS},
        ).all()
    wrong = [s for s, got in rows if got != (compiled.search(s) is not None)]
    assert not wrong, f"{pattern!r} -> {translated!r} disagrees with Python on {wrong[:5]}"
