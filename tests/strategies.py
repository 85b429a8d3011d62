"""Hypothesis strategies: random well-typed expressions and random client rows.

Expressions are generated as source text from a small typed grammar over the
client fields of every type (nullable ones included), ``now``, literals,
durations, lists and every operator and function except activity windows, then
type-checked against :data:`ENV`. The same strategies test the Python compiler
and the SQL compiler against the interpreter; with ``exact_time=True`` they leave
out the duration arithmetic SQL refuses (``d * number``, ``d / number`` unless
constant: Python rounds those half to even), so that the SQL property never
discards an expression.

Time is as in :mod:`crmcore.rules.values`: rows hold aware datetimes (the
interpreter reads them as stamps) and :func:`nows` gives stamps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st

from crmcore.rules import ast
from crmcore.rules.checker import check_text
from crmcore.rules.diagnostics import RuleError
from crmcore.rules.interpreter import Scope
from crmcore.rules.schema import CLIENT_FIELDS, Env
from crmcore.rules.types import STRING, Type, list_of
from crmcore.rules.unparse import number_text, string_text
from crmcore.rules.values import to_stamp

LISTS: Mapping[str, tuple[Any, ...]] = {"TIER1": ("DE", "AT", "CH", "é")}
ENV = Env(lists={"TIER1": list_of(STRING)})

# Patterns inside the regex subset every back end agrees on (SQL refuses the rest).
PATTERNS = (
    "", "^D", "E$", "^[A-Z]{2}$", "(?i)de", "a.b", "\\d+", "[^a-z]", "x|y", "(ab)*c", "^$", "\\s",
    "é", "\\w+@\\w+\\.com$", "[a-]", "^.{0,2}$", "(?:a|b)+?z", "\\.", "[\\d_]", "\\W", "a\\n?$",
)

MIN_TIME = datetime(2020, 1, 1)
MAX_TIME = datetime(2030, 1, 1)
# Moments where a microsecond or the sign of the epoch offset matters.
EDGE_TIMES = (
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    datetime(1960, 6, 30, 12, 0, 0, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC),
    datetime(2025, 6, 2, 12, 0, 0, 250_001, tzinfo=UTC),
)

# Strings are drawn from a small alphabet so that equality, prefixes and patterns often hit.
ALPHABET = "aAbBzZdDeE0_ .@\né\u00dfΩ\U0001f600"

SCALAR_TYPES = ("bool", "int", "number", "string", "timestamp", "duration")


def _fields(base: str, *, nullable: bool | None = None) -> list[str]:
    return [
        f"client.{name}"
        for name, t in CLIENT_FIELDS.items()
        if t.base == base and (nullable is None or t.nullable == nullable)
    ]


# --- literals ------------------------------------------------------------------------------

small_ints = st.integers(min_value=0, max_value=100)
few_decimals = st.one_of(
    st.integers(min_value=-100_000, max_value=100_000).map(lambda i: i / 100),
    st.sampled_from([2.5, -2.5, 0.5, 1.5, 0.49999999999999994, 0.1, 0.0]),
)
strings = st.text(alphabet=ALPHABET, max_size=5)

_LITERALS: Mapping[str, st.SearchStrategy[str]] = {
    "bool": st.sampled_from(["true", "false"]),
    "int": small_ints.map(str),
    "number": few_decimals.map(lambda x: number_text(abs(x)) if x >= 0 else f"(-{number_text(-x)})"),
    "string": strings.map(string_text),
    "duration": st.sampled_from(["90s", "15m", "24h", "30d", "2w", "1.5h", "0s", "0.000001s", "0.5s"]),
    "timestamp": st.just("now"),
}


def _leaf(base: str) -> st.SearchStrategy[str]:
    names = _fields(base)
    if base == "timestamp":
        names.append("now")
    choices = [_LITERALS[base]]
    if names:
        choices.append(st.sampled_from(names))
    return st.one_of(*choices)


def _nonnull_leaf(base: str) -> st.SearchStrategy[str]:
    """A list item: the checker refuses list items that may be null."""
    names = _fields(base, nullable=False)
    return st.one_of(_LITERALS[base], *(st.sampled_from(names),) if names else ())


# --- the typed grammar ---------------------------------------------------------------------

def _fmt(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map(lambda xs: template.format(*xs))


@cache
def typed_text(base: str, depth: int, exact_time: bool = False) -> st.SearchStrategy[str]:
    """Source text of an expression of type ``base`` (possibly nullable), nested up to ``depth``.

    ``exact_time``: only duration arithmetic SQL computes exactly (see the module docstring).
    """
    if depth <= 0:
        return _leaf(base)
    sub: Callable[[str], st.SearchStrategy[str]] = lambda b: typed_text(b, depth - 1, exact_time)  # noqa: E731
    cond = _fmt("(if {} then {} else {})", sub("bool"), sub(base), sub(base))
    common = [
        _leaf(base),
        cond,
        _fmt("coalesce({}, {})", sub(base), sub(base)),
    ]
    if base in ("int", "number", "string", "timestamp", "duration"):
        common += [_fmt("min({}, {})", sub(base), sub(base)), _fmt("max({}, {})", sub(base), sub(base))]
    if base == "duration":
        return st.one_of(*common, *_duration_composites(sub, exact_time))
    return st.one_of(*common, *_COMPOSITES[base](sub))


def _int_composites(sub: Callable[[str], st.SearchStrategy[str]]) -> list[st.SearchStrategy[str]]:
    i = sub("int")
    return [
        _fmt("({} + {})", i, i),
        _fmt("({} - {})", i, i),
        _fmt("({} * {})", i, small_ints.map(str)),  # one small factor keeps values inside bigint
        _fmt("({} % {})", i, i),
        _fmt("(-{})", i),
        _fmt("abs({})", i),
        _fmt("({} {} null)", i, st.sampled_from(["+", "-", "*", "%"])),  # a literal null: null (SPEC 3)
        _fmt("(null - {})", i),
        _fmt("min({}, null)", i),
        _fmt("round({})", sub("number")),
        _fmt("len({})", sub("string")),
        st.just("len(TIER1)"),
    ]


def _number_composites(sub: Callable[[str], st.SearchStrategy[str]]) -> list[st.SearchStrategy[str]]:
    n, t, d = sub("number"), sub("timestamp"), sub("duration")
    return [
        sub("int"),
        _fmt("({} + {})", n, n),
        _fmt("({} - {})", n, n),
        _fmt("({} * {})", n, _LITERALS["number"]),
        _fmt("({} / {})", n, n),
        _fmt("({} / null)", n),
        _fmt("(-{})", n),
        _fmt("abs({})", n),
        _fmt("days_since({})", t),
        _fmt("hours_since({})", t),
        _fmt("days_between({}, {})", t, t),
        _fmt("({} / {})", d, d),
    ]


def _string_composites(sub: Callable[[str], st.SearchStrategy[str]]) -> list[st.SearchStrategy[str]]:
    s = sub("string")
    return [_fmt("lower({})", s), _fmt("upper({})", s)]


def _timestamp_composites(sub: Callable[[str], st.SearchStrategy[str]]) -> list[st.SearchStrategy[str]]:
    t, d = sub("timestamp"), sub("duration")
    return [_fmt("({} + {})", t, d), _fmt("({} - {})", t, d), _fmt("({} + {})", d, t), _fmt("({} + null)", t)]


def _duration_composites(
    sub: Callable[[str], st.SearchStrategy[str]], exact_time: bool = False
) -> list[st.SearchStrategy[str]]:
    t, d = sub("timestamp"), sub("duration")
    number_literal, duration_literal = _LITERALS["number"], _LITERALS["duration"]
    composites = [
        _fmt("({} - {})", t, t),
        _fmt("({} + {})", d, d),
        _fmt("({} - {})", d, d),
        _fmt("({} * {})", d, sub("int")),
        _fmt("({} * {})", small_ints.map(str), d),
        _fmt("(-{})", d),
        _fmt("abs({})", d),
        # constant: folded, so SQL gives Python's rounding
        _fmt("({} * {})", duration_literal, number_literal),
        _fmt("({} / {})", duration_literal, st.one_of(number_literal, _LITERALS["int"])),
    ]
    if not exact_time:
        composites += [
            _fmt("({} * {})", d, number_literal),
            _fmt("({} * {})", number_literal, d),
            _fmt("({} / {})", d, sub("number")),
            _fmt("({} / {})", d, sub("int")),
        ]
    return composites


def _list_literal(base: str) -> st.SearchStrategy[str]:
    return st.lists(_nonnull_leaf(base), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")


def _bool_composites(sub: Callable[[str], st.SearchStrategy[str]]) -> list[st.SearchStrategy[str]]:
    b = sub("bool")
    ordered = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
    comparisons = [
        _fmt("({} {} {})", sub(base), ordered, sub(other))
        for base, other in (("int", "number"), ("number", "int"), ("string", "string"),
                            ("timestamp", "timestamp"), ("duration", "duration"), ("number", "number"))
    ]
    nullness = [
        _fmt("({} {} null)", sub(base), st.sampled_from(["==", "!="])) for base in SCALAR_TYPES
    ] + [  # ordered against a literal null: false, and `not` of it true (SPEC 3)
        _fmt("({} {} null)", sub(base), st.sampled_from(["<", "<=", ">", ">="])) for base in ("int", "number", "string", "timestamp")
    ] + [_fmt("(null in {})", _list_literal("int"))]
    membership = [
        _fmt("({} {} {})", sub(base), st.sampled_from(["in", "not in"]), _list_literal(base))
        for base in ("int", "number", "string", "bool")
    ]
    return [
        *comparisons,
        *nullness,
        *membership,
        _fmt("({} == {})", b, b),
        _fmt("({} != {})", b, b),
        _fmt("({} {} TIER1)", sub("string"), st.sampled_from(["in", "not in"])),
        _fmt("({} matches {})", sub("string"), st.sampled_from(PATTERNS).map(string_text)),
        _fmt("{}({}, {})", st.sampled_from(["startswith", "endswith", "contains"]), sub("string"), sub("string")),
        _fmt("({} and {})", b, b),
        _fmt("({} or {})", b, b),
        _fmt("(not {})", b),
    ]


_COMPOSITES: Mapping[str, Callable[[Callable[[str], st.SearchStrategy[str]]], list[st.SearchStrategy[str]]]] = {
    "bool": _bool_composites,
    "int": _int_composites,
    "number": _number_composites,
    "string": _string_composites,
    "timestamp": _timestamp_composites,
}


# --- public strategies -----------------------------------------------------------------------

MAX_DEPTH = 3


def expression_texts(max_depth: int = MAX_DEPTH, *, exact_time: bool = False) -> st.SearchStrategy[str]:
    """Source text of a random expression of any scalar type."""
    return st.integers(0, max_depth).flatmap(
        lambda depth: st.sampled_from(SCALAR_TYPES).flatmap(lambda base: typed_text(base, depth, exact_time))
    )


def condition_texts(max_depth: int = MAX_DEPTH, *, exact_time: bool = False) -> st.SearchStrategy[str]:
    """Source text of a random bool expression."""
    return st.integers(0, max_depth).flatmap(lambda depth: typed_text("bool", depth, exact_time))


def typed(text: str) -> ast.Node | None:
    """The typed AST of ``text`` against :data:`ENV`, or None when the checker refuses it."""
    try:
        return check_text(text, ENV)
    except RuleError:
        return None


def _checked(texts: st.SearchStrategy[str]) -> st.SearchStrategy[ast.Node]:
    return texts.map(typed).filter(lambda node: node is not None)  # type: ignore[return-value]


def expressions(max_depth: int = MAX_DEPTH) -> st.SearchStrategy[ast.Node]:
    """Typed ASTs of random well-typed expressions (any scalar type, nulls possible)."""
    return _checked(expression_texts(max_depth))


def conditions(max_depth: int = MAX_DEPTH) -> st.SearchStrategy[ast.Node]:
    """Typed ASTs of random bool expressions."""
    return _checked(condition_texts(max_depth))


# --- rows ------------------------------------------------------------------------------------

timestamps = st.one_of(
    st.datetimes(min_value=MIN_TIME, max_value=MAX_TIME, timezones=st.just(UTC)),
    st.sampled_from(EDGE_TIMES),
)

_VALUES: Mapping[str, st.SearchStrategy[Any]] = {
    "bool": st.booleans(),
    "int": st.integers(min_value=-1000, max_value=1000),
    "number": few_decimals,
    "string": st.one_of(st.sampled_from(["DE", "AT", "de", "é", "", "a", "B"]), strings),
    "timestamp": timestamps,
}


def _value(t: Type) -> st.SearchStrategy[Any]:
    value = _VALUES[t.base]
    return st.one_of(st.none(), value) if t.nullable else value


def client_rows() -> st.SearchStrategy[dict[str, Any]]:
    """A client record with every built-in field: None for some nullable ones, aware UTC datetimes."""
    return st.fixed_dictionaries({name: _value(t) for name, t in CLIENT_FIELDS.items()})


def nows() -> st.SearchStrategy[timedelta]:
    """A clock reading as a stamp, in the same years as the rows' timestamps."""
    return timestamps.map(stamp)


def stamp(moment: Any) -> timedelta:
    """A clock reading (stamp, aware or naive-UTC datetime, epoch seconds) as a stamp."""
    result = to_stamp(moment)
    assert result is not None
    return result


def scope_for(row: Mapping[str, Any], now: Any) -> Scope:
    """What the interpreter sees for one client row at ``now`` (a stamp, a datetime or epoch seconds)."""
    return Scope(client=dict(row), now=None if now is None else stamp(now), lists=LISTS)


__all__ = [
    "ENV",
    "LISTS",
    "PATTERNS",
    "client_rows",
    "condition_texts",
    "conditions",
    "expression_texts",
    "expressions",
    "nows",
    "scope_for",
    "stamp",
    "typed",
    "typed_text",
]
