"""Rule conditions over crmcore's own tables: how ``scan`` runs a trigger inside the database.

:class:`StoreResolver` tells the SQL compiler (``rules/sql.py``) where each name of the
language lives in SqlStore's tables, for the client rows of ``crm_clients``:

- ``client.<built-in>``: its column (with the built-in default, as the Python compiler
  applies it); ``client.<schema field>``: the client's ``extra`` JSON;
- ``trading.*``: the last account snapshot, kept in ``extra`` (``trading.balance`` is the
  client's balance, 0 before any snapshot);
- ``ib`` and ``ib.*``: ``crm_ibs``, joined on ``ib_id``;
- ``score.*`` and ``band.*``: the score model itself, compiled inline (a score is recomputed
  at ``now``, as the Python path recomputes it, never read back stale);
- activity windows: a pre-aggregation of ``crm_events`` joined to the clients (see
  :class:`StoreResolver`).

Amounts are summed exactly (NUMERIC on PostgreSQL, a Decimal aggregate on SQLite) and the
sum turned into a float once, which is what the Python windows do too: both paths give the
same float, bit for bit. A name the tables cannot give (a list-valued schema field, ``agent``,
``event``) is an :class:`~crmcore.rules.sql.SqlUnsupported` naming it, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from crmcore.rules import ast
from crmcore.rules.ruleset import RuleSet, Trigger
from crmcore.rules.sql import (
    SQLITE_DECIMAL_FLOAT,
    SQLITE_DECIMAL_SUM,
    Always,
    Never,
    SqlCompiler,
    SqlUnsupported,
    compile_condition,
    epoch_micros,
    literal,
    stamp_of,
)
from crmcore.rules.types import Type
from crmcore.rules.values import EPOCH
from crmcore.rules.windows import WINDOW_SPECS
from crmcore.storage.schema import Tables, UtcDateTime

__all__ = ["StoreResolver", "trigger_query"]

SQL = ColumnElement[Any]


class JsonField(FunctionElement[Any]):
    """A value inside a JSON text column: ``JsonField(column, ("trading", "equity"), "number")``.

    Decimals are stored tagged (``{"$d": "250.50"}``, see codec.py): a number is read from the
    tag when there is one, else as the plain JSON number.
    """

    inherit_cache = True

    def __init__(self, column: SQL, path: tuple[str, ...], kind: str):
        self.path, self.kind = path, kind
        types: dict[str, TypeEngine[Any]] = {"number": sa.Double(), "int": sa.BigInteger(), "bool": sa.Boolean(),
                                             "timestamp": sa.BigInteger(), "duration": sa.BigInteger()}
        self.type = types.get(kind, sa.String())
        super().__init__(column)


@compiles(JsonField, "sqlite")
def _json_sqlite(element: JsonField, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    path = "$" + "".join(f'."{key}"' for key in element.path)
    plain = f"json_extract({column}, '{path}')"
    if element.kind == "number":
        return f"CAST(coalesce(json_extract({column}, '{path}.\"$d\"'), {plain}) AS REAL)"
    if element.kind == "int":
        return f"CAST({plain} AS INTEGER)"
    if element.kind == "duration":  # {"$td": microseconds}
        return f"CAST(json_extract({column}, '{path}.\"$td\"') AS INTEGER)"
    if element.kind == "timestamp":  # {"$t": ISO 8601 with offset}: whole seconds, then the six digits
        text = f"json_extract({column}, '{path}.\"$t\"')"
        return (f"(CAST(strftime('%s', {text}) AS INTEGER) * 1000000 + CASE WHEN substr({text}, 20, 1) = '.' "
                f"THEN CAST(substr({text}, 21, 6) AS INTEGER) ELSE 0 END)")
    return plain  # a JSON true/false comes out as 1/0, a string as text


@compiles(JsonField, "postgresql")
def _json_postgresql(element: JsonField, compiler: SQLCompiler, **kw: Any) -> str:
    column = f"CAST({compiler.process(next(iter(element.clauses)), **kw)} AS jsonb)"
    path = ",".join(element.path)
    plain = f"({column} #>> '{{{path}}}')"
    if element.kind == "number":
        return f"CAST(coalesce({column} #>> '{{{path},$d}}', {plain}) AS DOUBLE PRECISION)"
    if element.kind == "int":
        return f"CAST({plain} AS BIGINT)"
    if element.kind == "bool":
        return f"CAST({plain} AS BOOLEAN)"
    if element.kind == "duration":
        return f"CAST({column} #>> '{{{path},$td}}' AS BIGINT)"
    if element.kind == "timestamp":
        return f"CAST(EXTRACT(EPOCH FROM CAST({column} #>> '{{{path},$t}}' AS timestamptz)) * 1000000 AS BIGINT)"
    return plain


class DecimalSum(FunctionElement[Any]):
    """The exact sum of a money column as a float (rounded once); NULL over no rows."""

    inherit_cache = True
    type = sa.Double()


@compiles(DecimalSum, "sqlite")
def _sum_sqlite(element: DecimalSum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_DECIMAL_FLOAT}({SQLITE_DECIMAL_SUM}({compiler.process(element.clauses, **kw)}))"


@compiles(DecimalSum, "postgresql")
def _sum_postgresql(element: DecimalSum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(sum({compiler.process(element.clauses, **kw)}) AS DOUBLE PRECISION)"


_JSON_KINDS = {kind: kind for kind in ("number", "int", "bool", "string", "timestamp", "duration")}
"""The language's types a JSON value of ``extra`` is read as (timestamps and durations as
microseconds, as the SQL compiler wants them); lists have no SQL form."""


@dataclass
class _Activity:
    """The windows over one kind of event (type and status) that a condition reads: one
    derived table, a row per client with activity in range, a column per window."""

    alias: str
    event_type: str
    status: str | None
    windows: list[tuple[str | None, datetime, datetime]] = field(default_factory=list)  # (summed, low, high)

    def column(self, summed: str | None, low: datetime, high: datetime) -> str:
        key = (summed, low, high)
        if key not in self.windows:
            self.windows.append(key)
        return f"{self.alias}.m{self.windows.index(key)}"

    def table(self, events: sa.Table) -> sa.Subquery:
        e = events.c
        columns: list[Any] = [e.client_id]
        for n, (summed, low, high) in enumerate(self.windows):
            inside = sa.and_(e.at > sa.literal(low, UtcDateTime()), e.at <= sa.literal(high, UtcDateTime()))
            if summed is None:
                columns.append(sa.func.count(sa.case((inside, 1))).label(f"m{n}"))
            else:
                columns.append(DecimalSum(sa.case((inside, e[summed]))).label(f"m{n}"))
        where = [e.type == self.event_type,
                 e.at > sa.literal(min(w[1] for w in self.windows), UtcDateTime()),
                 e.at <= sa.literal(max(w[2] for w in self.windows), UtcDateTime())]
        if self.status is not None:
            where.append(e.status == self.status)
        return sa.select(*columns).where(*where).group_by(e.client_id).subquery(self.alias)


@dataclass
class StoreResolver:
    """Names and windows of the language over SqlStore's tables (see the module docstring).

    Windows are a *joined pre-aggregation*: the events of each kind a condition reads are
    aggregated once (``GROUP BY client_id`` over the time range, index ``type, at``), a column
    per window, and joined to the clients (:meth:`rows`); a client with no such activity
    gets 0. One pass over the events in range, not one lookup per client.
    """

    tables: Tables
    rules: RuleSet
    now: timedelta
    """The clock (a stamp) of the condition: inline scores need it too."""
    _activity: dict[tuple[str, str | None], _Activity] = field(default_factory=dict)

    def rows(self) -> sa.Select[Any]:
        """``seq, id`` of every client, with the IB and the windows compiled so far joined:
        the FROM that compiled conditions filter."""
        c, i = self.tables.clients, self.tables.ibs
        joined = c.outerjoin(i, i.c.id == c.c.ib_id)
        for activity in self._activity.values():
            table = activity.table(self.tables.events)
            joined = joined.outerjoin(table, table.c.client_id == c.c.id)
        return sa.select(c.c.seq, c.c.id).select_from(joined)

    def column(self, name: ast.Name) -> SQL:
        t = self.tables
        c, i = t.clients.c, t.ibs.c
        parts = name.parts
        root = parts[0]
        if parts == ("ib",):
            return i.id
        if len(parts) != 2:
            raise SqlUnsupported(f"'{name.dotted}' in SQL")
        key = parts[1]
        if root == "client":
            return self._client(key, name.type)
        if root == "ib":
            return i[key]
        if root == "trading":
            if key == "balance":  # as the Python path: the client's balance, 0 before any snapshot
                return sa.func.coalesce(sa.cast(c.balance, sa.Double()), literal(0.0))
            return JsonField(c.extra, ("trading", key), _kind(name.type, name))
        if root == "score":
            return self._score(key)
        if root == "band":
            return self._band(key)
        raise SqlUnsupported(f"'{name.dotted}' in SQL (the '{root}' root has no column)")

    def window(self, node: ast.Window, now: timedelta) -> SQL:
        event_type, status, summed = WINDOW_SPECS[(node.source, node.metric)]
        shift = node.shift.delta if node.shift is not None else timedelta(0)
        high = EPOCH + (now - shift)
        low = high - node.length.delta
        activity = self._activity.get((event_type, status))
        if activity is None:
            activity = _Activity(f"w{len(self._activity)}", event_type, status)
            self._activity[(event_type, status)] = activity
        column = activity.column(summed, low, high)
        if summed is None:
            return sa.func.coalesce(sa.literal_column(column, sa.BigInteger()), literal(0))
        return sa.func.coalesce(sa.literal_column(column, sa.Double()), literal(0.0), type_=sa.Double())

    def _client(self, field: str, type_: Type | None) -> SQL:
        c = self.tables.clients.c
        if field in c and field not in ("extra", "seq"):
            sql: SQL = c[field]
            if isinstance(sql.type, UtcDateTime):
                sql = epoch_micros(sql)
        else:
            if type_ is None or type_.base not in _JSON_KINDS:
                raise SqlUnsupported(f"the {type_} schema field 'client.{field}' in SQL")
            sql = JsonField(c.extra, (field,), _JSON_KINDS[type_.base])
        default = self.rules.defaults.get(field)
        if default is not None:  # a default fills a missing key and a null alike
            sql = sa.func.coalesce(sql, literal(default, type_), type_=sql.type)
        return sql

    def _score(self, name: str) -> SQL:
        score = self.rules.scores.get(name)
        if score is None:
            raise SqlUnsupported(f"the unknown score '{name}'")
        compiler = SqlCompiler(self, now=self.now, lists=self.rules.lists)
        total: SQL = literal(0)
        for rule in score.rules:
            points = compiler.value(rule.points.node)
            if rule.points.node.type is None or rule.points.node.type.nullable:
                points = sa.func.coalesce(points, literal(0))
            total = total + sa.case((compiler.truth(rule.when.node), points), else_=literal(0))
        return total

    def _band(self, name: str) -> SQL:
        score = self.rules.scores.get(name)
        if score is None or not score.bands:
            return sa.null()
        total = self._score(name)
        whens = [(total >= threshold, literal(band)) for band, threshold in score.bands[:-1] if threshold is not None]
        last = literal(score.bands[-1][0])
        return sa.case(*whens, else_=last) if whens else last


def _kind(type_: Type | None, name: ast.Name) -> str:
    if type_ is None or type_.base not in _JSON_KINDS:
        raise SqlUnsupported(f"'{name.dotted}' of type {type_} in SQL")
    return _JSON_KINDS[type_.base]


def trigger_query(tables: Tables, rules: RuleSet, trigger: Trigger, now: Any) -> sa.Select[Any] | None:
    """``seq, id`` of the clients for which a condition trigger's ``when`` holds at ``now``,
    as one query (None when it never holds). Raises
    :class:`~crmcore.rules.sql.SqlUnsupported` naming what SQL cannot express."""
    if trigger.on is not None:
        raise ValueError(f"trigger '{trigger.name}' runs on events, not in scans")
    resolver = StoreResolver(tables, rules, stamp_of(now))
    condition = compile_condition(trigger.when.node, resolver, now=now, lists=rules.lists, origin=trigger.when.origin)
    if isinstance(condition, Never):
        return None
    query = resolver.rows()
    return query if isinstance(condition, Always) else query.where(condition)
