"""Typed AST -> SQLAlchemy Core clause, with exactly the interpreter's answers (nulls included).

The compiler is a visitor with one ``visit_<Node>`` method per node type. Where
SQLite and PostgreSQL differ, each operation is one small construct whose SQL per
dialect is a row of :data:`DIALECT_SQL` (as sqlglot's ``TRANSFORMS``), not an
``if`` chain. What SQL cannot express exactly raises :class:`SqlUnsupported`
(``E400``) at the construct's position; there is never a silent fall-back.

Run-time conventions are those of :mod:`crmcore.rules.values`, in integers: a
timestamp is a BIGINT of microseconds since the Unix epoch and a duration a
BIGINT of microseconds, so a store's resolver turns its date-time columns into
microseconds with :func:`epoch_micros`, and ``now`` and duration literals are
bound BIGINTs; booleans are 0/1 on SQLite and ``boolean`` on PostgreSQL. Every comparison is two-valued (never NULL), as in the language;
the compiler trusts the checker's types, so a store must never hold NULL in a
field whose type is not nullable.

Exactness, case by case: ``/`` casts both sides to double and ``/ 0``, ``% 0``
are NULL (NULLIF); time arithmetic (``t - t``, ``t ± d``, ``d ± d``, ``d * int``)
is exact bigint arithmetic, and ``days_since``/``hours_since``/``days_between``
and ``d / d`` are one double division of the microsecond counts, which equals
Python's correctly rounded ``int / int`` while the counts stay below 2**53
(285 years); ``d * number`` and ``d / number`` round half to even in Python,
which SQL cannot reproduce simply, so they are refused unless constant (folded); ``round(x)`` is ``trunc(2x) - trunc(x)``, which is half away
from zero with no rounding step of its own (``floor(x + 0.5)`` is wrong for
0.49999999999999994); strings order by code point (``COLLATE "C"`` /
``BINARY``); ``lower``/``upper`` touch ASCII only; ``matches`` calls Python's
``re`` on SQLite and, on PostgreSQL, a translation of the regex subset both
engines agree on (Python's ``$`` also matches before a final newline, so it
becomes ``(?=\n?$)``; ``.`` excludes newlines, so it becomes ``[^\n]``). A
pattern outside that subset is refused on every dialect, so a rule compiles the
same everywhere.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, False_, True_
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from crmcore.rules import ast
from crmcore.rules.diagnostics import Code, Diagnostic, Origin, RuleError
from crmcore.rules.interpreter import regex
from crmcore.rules.optimizer import constant_value, is_constant
from crmcore.rules.sqlregex import RegexRefused, to_postgres
from crmcore.rules.types import Type
from crmcore.rules.values import to_stamp

SQL = ColumnElement[Any]

MICROSECOND: Final = timedelta(microseconds=1)
_MICROS_PER_DAY: Final = 86_400_000_000
_MICROS_PER_HOUR: Final = 3_600_000_000

SQLITE_REGEX_FUNCTION: Final = "crmcore_regexp_search"
SQLITE_DECIMAL_SUM: Final = "crmcore_decimal_sum"
SQLITE_DECIMAL_FLOAT: Final = "crmcore_decimal_float"


class SqlUnsupported(RuleError):
    """A construct SQL cannot express exactly (code ``E400``), at its position in the user's file.

    A resolver may raise it without a node; the compiler then places it at the
    node it was compiling.
    """

    def __init__(self, construct: str, node: ast.Node | None = None, origin: Origin | None = None):
        self.construct = construct
        self.node = node
        index = node.span.start if node is not None else 0
        origin = origin if origin is not None else _blank_origin(node)
        message = f"cannot be compiled to SQL: {construct}"
        super().__init__([Diagnostic.at(Code.SQL_UNSUPPORTED, message, origin.source, origin.file_offset(index))])


def _blank_origin(node: ast.Node | None) -> Origin:
    """Without the source text, positions are still right: column = offset + 1 on line 1."""
    return Origin.standalone(" " * (node.span.end if node is not None else 0))


class Always:
    """A condition true for every row (``compile_condition`` folded it)."""

    def __repr__(self) -> str:
        return "ALWAYS"


class Never:
    """A condition false for every row."""

    def __repr__(self) -> str:
        return "NEVER"


ALWAYS: Final = Always()
NEVER: Final = Never()


class Resolver(Protocol):
    """How the compiler reaches the data: a field as a SQL expression, an activity window as one."""

    def column(self, name: ast.Name) -> SQL:
        """``client.country`` -> SQL; timestamps as BIGINT epoch microseconds (see :func:`epoch_micros`)."""
        ...

    def window(self, node: ast.Window, now: timedelta) -> SQL:
        """``deposits.count(30d)`` at ``now`` (a stamp) -> SQL; may raise :class:`SqlUnsupported`."""
        ...


# --- dialect constructs: one per operation whose SQL differs --------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()

# construct name -> dialect -> template over the rendered arguments {0}, {1}, ...
DIALECT_SQL: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "epoch_micros": {
        # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds (floored, also before
        # 1970) times 10**6 plus the fraction's digits, all integers
        "sqlite": "(CAST(strftime('%s', substr({0}, 1, 19)) AS INTEGER) * 1000000"
        " + CAST(substr(substr({0}, 21) || '000000', 1, 6) AS INTEGER))",
        # EXTRACT gives numeric on PostgreSQL 14+: exact, so the product is an integer
        "postgresql": "CAST(EXTRACT(EPOCH FROM {0}) * 1000000 AS BIGINT)",
    },
    "codepoint": {"sqlite": "(({0}) COLLATE BINARY)", "postgresql": '(({0}) COLLATE "C")'},
    "ascii_lower": {"sqlite": "lower({0})", "postgresql": f"translate({{0}}, '{_UPPER}', '{_LOWER}')"},
    "ascii_upper": {"sqlite": "upper({0})", "postgresql": f"translate({{0}}, '{_LOWER}', '{_UPPER}')"},
    "char_length": {"sqlite": "length({0})", "postgresql": "char_length({0})"},
    "str_position": {"sqlite": "instr({0}, {1})", "postgresql": "strpos({0}, {1})"},
    "str_prefix": {"sqlite": "substr({0}, 1, {1})", "postgresql": "left({0}, {1})"},
    "str_suffix": {"sqlite": "substr({0}, -{1}, {1})", "postgresql": "right({0}, {1})"},
    "trunc_int": {"sqlite": "CAST({0} AS INTEGER)", "postgresql": "CAST(trunc({0}) AS BIGINT)"},
    "least": {"sqlite": "min({0}, {1})", "postgresql": "LEAST({0}, {1})"},
    "greatest": {"sqlite": "max({0}, {1})", "postgresql": "GREATEST({0}, {1})"},
    "regex_search": {
        "sqlite": f"{SQLITE_REGEX_FUNCTION}({{1}}, {{0}})",
        "postgresql": '(({0}) COLLATE "C" ~ {2})',
    },
})


class _DialectConstruct(FunctionElement[Any]):
    """A construct rendered from :data:`DIALECT_SQL`; subclasses name their row and result type."""

    inherit_cache = True


def _render(element: _DialectConstruct, compiler: SQLCompiler, **kw: Any) -> str:
    templates = DIALECT_SQL[element.name]
    template = templates.get(compiler.dialect.name)
    if template is None:
        raise CompileError(f"crmcore has no SQL for '{element.name}' on {compiler.dialect.name}")
    args = [compiler.process(clause, **kw) for clause in element.clauses]
    return template.format(*args)


def _construct(name: str, result: TypeEngine[Any]) -> type[_DialectConstruct]:
    cls = type(name, (_DialectConstruct,), {"name": name, "type": result, "inherit_cache": True})
    compiles(cls)(_render)
    return cls


EpochMicros = _construct("epoch_micros", sa.BigInteger())
CodePoint = _construct("codepoint", sa.String())
AsciiLower = _construct("ascii_lower", sa.String())
AsciiUpper = _construct("ascii_upper", sa.String())
CharLength = _construct("char_length", sa.BigInteger())
StrPosition = _construct("str_position", sa.BigInteger())
StrPrefix = _construct("str_prefix", sa.String())
StrSuffix = _construct("str_suffix", sa.String())
TruncInt = _construct("trunc_int", sa.BigInteger())
Least = _construct("least", sa.Double())
Greatest = _construct("greatest", sa.Double())
RegexSearch = _construct("regex_search", sa.Boolean())


def epoch_micros(column: SQL) -> SQL:
    """A date-time column as BIGINT microseconds since the epoch, equal to ``values.to_stamp`` exactly.

    PostgreSQL (14+): ``timestamptz`` gives absolute microseconds and ``timestamp``
    its nominal (UTC) ones. SQLite: the text SQLAlchemy stores, read as UTC.
    """
    return EpochMicros(column)


def micros(value: timedelta) -> int:
    """A stamp or duration as integer microseconds (exact)."""
    return value // MICROSECOND


def stamp_of(now: datetime | timedelta) -> timedelta:
    """A clock reading as a stamp: a stamp as is, an aware (or naive = UTC) datetime converted."""
    stamp = now if isinstance(now, timedelta) else to_stamp(now)
    if stamp is None:
        raise TypeError("now must be a datetime or a stamp, not None")
    return stamp


def sql_type(t: Type | None) -> TypeEngine[Any]:
    """The SQL type holding values of a language type."""
    base = t.base if t is not None else "null"
    return _SQL_TYPES.get(base, sa.types.NullType())


_SQL_TYPES: Mapping[str, TypeEngine[Any]] = MappingProxyType({
    "bool": sa.Boolean(),
    "int": sa.BigInteger(),
    "number": sa.Double(),
    "duration": sa.BigInteger(),
    "timestamp": sa.BigInteger(),
    "string": sa.String(),
})


def literal(value: Any, t: Type | None = None) -> SQL:
    """A typed SQL literal (typed so that PostgreSQL never guesses ``numeric`` or ``unknown``)."""
    if value is None:
        return sa.null() if t is None or t.base not in _SQL_TYPES else sa.cast(sa.null(), sql_type(t))
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, int):
        return sa.literal(value, sa.BigInteger())
    if isinstance(value, float):
        return sa.literal(value, sa.Double())
    if isinstance(value, str):
        return sa.literal(value, sa.String())
    if isinstance(value, timedelta):  # a stamp or a duration
        return sa.literal(micros(value), sa.BigInteger())
    raise TypeError(f"no SQL literal for {value!r}")


# --- boolean helpers that fold constants (SQLAlchemy's own folding is not observable) -------

def _and(a: SQL, b: SQL) -> SQL:
    if isinstance(a, False_) or isinstance(b, False_):
        return sa.false()
    if isinstance(a, True_):
        return b
    if isinstance(b, True_):
        return a
    return sa.and_(a, b)


def _or(a: SQL, b: SQL) -> SQL:
    if isinstance(a, True_) or isinstance(b, True_):
        return sa.true()
    if isinstance(a, False_):
        return b
    if isinstance(b, False_):
        return a
    return sa.or_(a, b)


def _not(a: SQL) -> SQL:
    if isinstance(a, True_):
        return sa.false()
    if isinstance(a, False_):
        return sa.true()
    return sa.not_(a)


def _float(x: SQL) -> SQL:
    return sa.cast(x, sa.Double())


def _divide(a: SQL, b: SQL) -> SQL:
    # both sides cast: SQLite holds an int-valued number as an integer and would floor-divide
    return _float(a) / sa.func.nullif(_float(b), literal(0.0), type_=sa.Double())


def _modulo(a: SQL, b: SQL) -> SQL:
    return a % sa.func.nullif(b, literal(0))  # SQL's % already has the dividend's sign


ARITHMETIC: Mapping[str, Callable[[SQL, SQL], SQL]] = MappingProxyType({
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "%": _modulo,
})

COMPARISONS: Mapping[str, Callable[[SQL, SQL], SQL]] = MappingProxyType({
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
})

_ORDERING = frozenset({"<", "<=", ">", ">="})
_SINCE: Mapping[str, int] = MappingProxyType({"days_since": _MICROS_PER_DAY, "hours_since": _MICROS_PER_HOUR})


def _nullable(node: ast.Node) -> bool:
    return node.type is None or node.type.nullable


def _is_null_literal(node: ast.Node) -> bool:
    """The literal ``null`` as written: only it makes ``==``/``!=`` a test of nullness."""
    return isinstance(node, ast.Literal) and node.value is None


_LEAVES = (ast.Literal, ast.Duration, ast.Name, ast.Window, ast.ListLit)


# --- functions: name -> SQL over the compiled arguments and their nodes ----------------------

def _fn_round(args: Sequence[SQL], call: ast.Call) -> SQL:
    if call.args[0].type is not None and call.args[0].type.base == "int":
        return args[0]
    # trunc(2x) - trunc(x) is half away from zero exactly: 2x and both truncations are exact
    return TruncInt(literal(2.0) * args[0]) - TruncInt(args[0])


def _fn_minmax(construct: type[_DialectConstruct]) -> Callable[[Sequence[SQL], ast.Call], SQL]:
    def fn(args: Sequence[SQL], call: ast.Call) -> SQL:
        a, b = args
        if _is_string(*call.args):
            a = CodePoint(a)
        result = sa.type_coerce(construct(a, b), sql_type(call.type))
        if not any(_nullable(n) for n in call.args):
            return result
        # PostgreSQL's LEAST/GREATEST skip NULLs; the language's min/max are null then
        return sa.case((sa.or_(args[0].is_(None), args[1].is_(None)), sa.null()), else_=result)

    return fn


def _fn_startswith(args: Sequence[SQL], call: ast.Call) -> SQL:
    s, p = args
    return StrPrefix(s, CharLength(p)) == p


def _fn_endswith(args: Sequence[SQL], call: ast.Call) -> SQL:
    s, p = args
    return StrSuffix(s, CharLength(p)) == p


def _fn_contains(args: Sequence[SQL], call: ast.Call) -> SQL:
    s, p = args
    return StrPosition(s, p) > literal(0)


def _per(micros_sql: SQL, unit: int) -> SQL:
    """Microseconds per unit as a double: int -> double is exact below 2**53, then one IEEE division."""
    return _float(micros_sql) / literal(float(unit))


def _fn_days_between(args: Sequence[SQL], call: ast.Call) -> SQL:
    a, b = args
    return _per(b - a, _MICROS_PER_DAY)


FUNCTIONS: Mapping[str, Callable[[Sequence[SQL], ast.Call], SQL]] = MappingProxyType({
    "days_between": _fn_days_between,
    "lower": lambda args, call: AsciiLower(args[0]),
    "upper": lambda args, call: AsciiUpper(args[0]),
    "len": lambda args, call: CharLength(args[0]),
    "coalesce": lambda args, call: sa.func.coalesce(*args),
    "abs": lambda args, call: sa.func.abs(args[0]),
    "min": _fn_minmax(Least),
    "max": _fn_minmax(Greatest),
    "round": _fn_round,
    "startswith": _fn_startswith,
    "endswith": _fn_endswith,
    "contains": _fn_contains,
})


# --- the compiler ---------------------------------------------------------------------------

class SqlCompiler:
    """Compiles typed expressions against one resolver, clock and set of named lists."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        now: datetime | timedelta | None = None,
        lists: Mapping[str, tuple[Any, ...]] | None = None,
        origin: Origin | None = None,
    ):
        self.resolver = resolver
        self.now = stamp_of(now) if now is not None else None
        self.lists: Mapping[str, tuple[Any, ...]] = lists or {}
        self.origin = origin

    def unsupported(self, construct: str, node: ast.Node) -> SqlUnsupported:
        return SqlUnsupported(construct, node, self.origin)

    def value(self, node: ast.Node) -> SQL:
        """The SQL for a node's value (NULL where the language has null); constants are folded."""
        if not isinstance(node, _LEAVES) and is_constant(node):
            _, value = constant_value(node)
            if value is None or isinstance(value, bool | int | float | str | timedelta):
                return literal(value, node.type)
        method: Callable[[Any], SQL] = getattr(self, f"visit_{type(node).__name__}")
        try:
            return method(node)
        except SqlUnsupported as err:
            if err.node is None:  # raised by the resolver: place it here
                raise self.unsupported(err.construct, node) from None
            raise

    def truth(self, node: ast.Node) -> SQL:
        """A bool expression in boolean position: two-valued, null counts as false."""
        if node.type is not None and node.type.base == "null":
            return sa.false()
        sql = self.value(node)
        if not _nullable(node) or isinstance(sql, True_ | False_):
            return sql
        return sa.func.coalesce(sql, sa.false())

    def _now(self, node: ast.Node) -> SQL:
        if self.now is None:
            raise self.unsupported("'now' needs a clock: compile with now=...", node)
        return literal(self.now)

    # leaves ----------------------------------------------------------------------------------

    def visit_Literal(self, node: ast.Literal) -> SQL:
        return literal(node.value, node.type)

    def visit_Duration(self, node: ast.Duration) -> SQL:
        _, value = constant_value(node)  # the interpreter's timedelta: exact microseconds
        return literal(value, node.type)

    def visit_ListLit(self, node: ast.ListLit) -> SQL:
        raise self.unsupported("a list used as a value (lists may only follow 'in')", node)

    def visit_Name(self, node: ast.Name) -> SQL:
        if node.parts == ("now",):
            return self._now(node)
        if node.type is not None and node.type.base == "list":
            raise self.unsupported(f"the list-valued name '{node.dotted}' used as a value", node)
        sql = self.resolver.column(node)
        if node.type is not None and node.type.base == "number" and not isinstance(sql.type, sa.Float):
            sql = _float(sql)  # a Numeric column would make PostgreSQL do decimal arithmetic
        return sql

    def visit_Window(self, node: ast.Window) -> SQL:
        if self.now is None:
            raise self.unsupported("an activity window needs a clock: compile with now=...", node)
        return self.resolver.window(node, self.now)

    # operators -------------------------------------------------------------------------------

    def visit_Neg(self, node: ast.Neg) -> SQL:
        return -self.value(node.operand)

    def visit_Not(self, node: ast.Not) -> SQL:
        return _not(self.truth(node.operand))

    def visit_BoolOp(self, node: ast.BoolOp) -> SQL:
        combine = _and if node.op == "and" else _or
        return combine(self.truth(node.left), self.truth(node.right))

    def visit_BinOp(self, node: ast.BinOp) -> SQL:
        left, right = _base(node.left), _base(node.right)
        if node.op in ("*", "/") and "duration" in (left, right) and not left == right == "duration":
            return self._scale_duration(node)
        return ARITHMETIC[node.op](self.value(node.left), self.value(node.right))

    def _scale_duration(self, node: ast.BinOp) -> SQL:
        """``d * int``, ``int * d``: a bigint product. Python rounds ``d * number``, ``d / int`` and
        ``d / number`` half to even, which SQL cannot simply reproduce: refused unless the factor
        is a constant that needs no rounding (a whole number to multiply by, or null or 0 to divide by)."""
        duration, factor = (node.left, node.right) if _base(node.left) == "duration" else (node.right, node.left)
        constant, value = constant_value(factor)
        if constant and (value is None or (node.op == "/" and value == 0)):
            return literal(None, node.type)  # null, like the interpreter's division by zero
        if node.op == "*":
            if _base(factor) == "int":
                return self.value(duration) * self.value(factor)
            if constant and isinstance(value, int | float) and float(value).is_integer() and abs(value) < 2**53:
                return self.value(duration) * literal(int(value))
        verb = "multiplying" if node.op == "*" else "dividing"
        raise self.unsupported(
            f"{verb} a duration by a number cannot be computed exactly in SQL; write the duration directly",
            node,
        )

    def visit_Cond(self, node: ast.Cond) -> SQL:
        test = self.truth(node.test)
        then, else_ = self.value(node.then), self.value(node.else_)
        if isinstance(test, True_ | False_):
            return then if isinstance(test, True_) else else_
        return sa.case((test, then), else_=else_)

    def visit_Call(self, node: ast.Call) -> SQL:
        if node.func != "coalesce" and any(_is_constant_null(arg) for arg in node.args):
            return literal(None, node.type)  # every function but coalesce is null on a null argument
        if node.func in _SINCE:
            (arg,) = node.args
            return _per(self._now(node) - self.value(arg), _SINCE[node.func])
        if node.func == "len" and node.args[0].type is not None and node.args[0].type.base == "list":
            return literal(len(self._list_values(node.args[0])))
        args = [self.value(arg) for arg in node.args]
        return FUNCTIONS[node.func](args, node)

    # comparisons: always two-valued ------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare) -> SQL:
        left, right = node.left, node.right
        if node.op in ("==", "!=") and (_is_null_literal(left) or _is_null_literal(right)):
            other = right if _is_null_literal(left) else left
            if _is_null_literal(other):
                return sa.true() if node.op == "==" else sa.false()
            if not _nullable(other):
                return sa.false() if node.op == "==" else sa.true()
            sql = self.value(other)
            return sql.is_(None) if node.op == "==" else sql.is_not(None)
        if node.op in ("in", "not in"):
            return self._membership(node)
        if _is_constant_null(left) or _is_constant_null(right):
            return sa.false()
        a = self.value(left)
        if node.op == "matches":
            return self._two_valued(self._matches(node, a), node)
        b = self.value(right)
        if node.op in _ORDERING and _is_string(left, right):
            a = CodePoint(a)
        return self._two_valued(COMPARISONS[node.op](a, b), node)

    def _two_valued(self, comparison: SQL, node: ast.Compare) -> SQL:
        """NULL -> false: guard nullable fields with IS NOT NULL (index-friendly), else coalesce."""
        operands = [n for n in (node.left, node.right) if _nullable(n) and n.type is not None and n.type.base != "list"]
        if not operands:
            return comparison
        if all(isinstance(n, ast.Name) for n in operands):
            result = comparison
            for n in operands:
                result = _and(result, self.value(n).is_not(None))
            return result
        return sa.func.coalesce(comparison, sa.false())

    def _membership(self, node: ast.Compare) -> SQL:
        right = node.right
        if isinstance(right, ast.ListLit):
            items = [self.value(item) for item in right.items]
        else:
            elem = right.type.elem if right.type is not None else None
            # a non-null value never equals a null item, so nulls can be left out of the list
            items = [literal(v, elem) for v in self._list_values(right) if v is not None]
        if _is_constant_null(node.left):
            return sa.false()
        left = self.value(node.left)
        if not items:  # x in [] is false; x not in [] is true unless x is null
            if node.op == "in" or not _nullable(node.left):
                return sa.false() if node.op == "in" else sa.true()
            return left.is_not(None)
        test = left.in_(items) if node.op == "in" else left.not_in(items)
        return self._two_valued(test, node)

    def _list_values(self, node: ast.Node) -> tuple[Any, ...]:
        if isinstance(node, ast.Name) and len(node.parts) == 1 and node.parts[0] in self.lists:
            values = tuple(self.lists[node.parts[0]])
        else:
            constant, value = constant_value(node)
            if not constant or not isinstance(value, tuple):
                raise self.unsupported(f"the list '{_describe(node)}' has no SQL form (only literal and named lists do)", node)
            values = value
        if not all(v is None or isinstance(v, bool | int | float | str | timedelta) for v in values):
            raise self.unsupported(f"the list '{_describe(node)}' holds values that are not scalars", node)
        return tuple(micros(v) if isinstance(v, timedelta) else v for v in values)

    def _matches(self, node: ast.Compare, text: SQL) -> SQL:
        pattern = node.right
        if not (isinstance(pattern, ast.Literal) and isinstance(pattern.value, str)):
            raise self.unsupported("'matches' with a pattern that is not a string literal", pattern)
        try:
            translated = to_postgres(pattern.value)
        except RegexRefused as refused:
            raise self.unsupported(f"regex {pattern.value!r}: {refused}", pattern) from None
        return RegexSearch(text, literal(pattern.value), literal(translated))


def _base(node: ast.Node) -> str | None:
    return node.type.base if node.type is not None else None


def _describe(node: ast.Node) -> str:
    return node.dotted if isinstance(node, ast.Name) else type(node).__name__


def _is_string(*nodes: ast.Node) -> bool:
    return any(n.type is not None and n.type.base == "string" for n in nodes)


def _is_constant_null(node: ast.Node) -> bool:
    """An operand that is always null (``1 / 0``): any comparison with it is false."""
    return constant_value(node) == (True, None)


# --- public API -----------------------------------------------------------------------------

def compile_expression(
    node: ast.Node,
    resolver: Resolver,
    *,
    now: datetime | timedelta | None = None,
    lists: Mapping[str, tuple[Any, ...]] | None = None,
    origin: Origin | None = None,
) -> SQL:
    """The SQL value of any typed expression (NULL where the language gives null).

    ``now`` is an aware datetime (naive = UTC) or a stamp; timestamps and durations
    come out as BIGINT microseconds. Raises :class:`SqlUnsupported` for a construct SQL cannot express exactly.
    """
    compiler = SqlCompiler(resolver, now=now, lists=lists, origin=origin)
    return sa.type_coerce(compiler.value(node), sql_type(node.type))


def compile_condition(
    node: ast.Node,
    resolver: Resolver,
    *,
    now: datetime | timedelta | None = None,
    lists: Mapping[str, tuple[Any, ...]] | None = None,
    origin: Origin | None = None,
) -> SQL | Always | Never:
    """A bool expression as a two-valued SQL condition (never NULL), or ALWAYS / NEVER when constant."""
    if node.type is None or node.type.base not in ("bool", "null"):
        raise TypeError(f"a condition must be a typed bool expression, got {node.type}")
    constant, value = constant_value(node)
    if constant:
        return ALWAYS if value is not None and bool(value) else NEVER
    compiler = SqlCompiler(resolver, now=now, lists=lists, origin=origin)
    sql = compiler.truth(node)
    if isinstance(sql, True_):
        return ALWAYS
    if isinstance(sql, False_):
        return NEVER
    return sql


@dataclass(frozen=True)
class TableResolver:
    """Fields as columns, by dotted name (``{"client.country": clients.c.country}``).

    Date-time columns are read as epoch microseconds. Windows are not available unless
    ``windows`` maps ``(source, metric)`` to a function building their SQL at ``now`` (a stamp).
    """

    columns: Mapping[str, SQL]
    windows: Mapping[tuple[str, str], Callable[[ast.Window, timedelta], SQL]] | None = None

    def column(self, name: ast.Name) -> SQL:
        column = self.columns.get(name.dotted)
        if column is None:
            raise SqlUnsupported(f"'{name.dotted}' is not a column here")
        if isinstance(column.type, sa.DateTime):
            return epoch_micros(column)
        return column

    def window(self, node: ast.Window, now: timedelta) -> SQL:
        build = (self.windows or {}).get((node.source, node.metric))
        if build is None:
            raise SqlUnsupported(f"activity window '{node.source}.{node.metric}' is not available here")
        return build(node, now)


# --- SQLite: the Python functions compiled rules call ----------------------------------------

def _regexp_search(pattern: str | None, text: str | None) -> int | None:
    if pattern is None or text is None:
        return None
    return 1 if regex(pattern).search(text) is not None else 0


class _DecimalSum:
    """``crmcore_decimal_sum(x)``: the exact sum of decimal texts (SQLite has no exact numeric
    type; its own SUM adds floats), as decimal text; NULL over no values. KPIs read it as
    money; rule windows make it a float with ``crmcore_decimal_float``, rounded once."""

    __slots__ = ("seen", "total")

    def __init__(self) -> None:
        self.total = _DECIMAL_ZERO
        self.seen = False

    def step(self, value: Any) -> None:
        if value is not None:  # the column holds decimal text (an int or float if written so)
            self.total += Decimal(value if value.__class__ is not float else repr(value))
            self.seen = True

    def finalize(self) -> str | None:
        return str(self.total) if self.seen else None


def _decimal_float(text: str | None) -> float | None:
    return None if text is None else float(Decimal(text))


_DECIMAL_ZERO = Decimal(0)


def _register(dbapi_connection: Any, connection_record: Any, *_: Any) -> None:
    info = connection_record.info
    if info.get(SQLITE_REGEX_FUNCTION):
        return
    dbapi_connection.create_function(SQLITE_REGEX_FUNCTION, 2, _regexp_search, deterministic=True)
    dbapi_connection.create_aggregate(SQLITE_DECIMAL_SUM, 1, _DecimalSum)
    dbapi_connection.create_function(SQLITE_DECIMAL_FLOAT, 1, _decimal_float, deterministic=True)
    info[SQLITE_REGEX_FUNCTION] = True


def install_sqlite_functions(engine: Engine) -> None:
    """Register the functions compiled rules need on every SQLite connection (idempotent).

    New connections get them on connect; connections already pooled get them on
    their next checkout.
    """
    if engine.dialect.name != "sqlite":
        return
    for name in ("connect", "checkout"):
        if not event.contains(engine, name, _register):
            event.listen(engine, name, _register)


__all__ = [
    "ALWAYS",
    "ARITHMETIC",
    "COMPARISONS",
    "DIALECT_SQL",
    "FUNCTIONS",
    "NEVER",
    "SQLITE_DECIMAL_FLOAT",
    "SQLITE_DECIMAL_SUM",
    "Always",
    "Never",
    "Resolver",
    "SqlCompiler",
    "SqlUnsupported",
    "TableResolver",
    "compile_condition",
    "compile_expression",
    "epoch_micros",
    "install_sqlite_functions",
    "literal",
    "micros",
    "sql_type",
    "stamp_of",
]
