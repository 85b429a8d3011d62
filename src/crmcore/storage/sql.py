"""SqlStore: the Store protocol on SQLite and PostgreSQL (SQLAlchemy Core).

A unit of work is one database transaction (nested ones are savepoints): the event row,
the client, the assignment, the decision and its outbox rows commit together or not at all,
so a process killed mid-event leaves nothing half-applied, and the event's id (unique) makes
a rerun skip what was done.

Several workers on PostgreSQL: routing reads the rotation state under a row lock
(``SELECT ... FOR UPDATE`` on the ``routing`` lock row), so routing decisions — and the
open counts that capacity checks read — are serialised per database, never interleaved; a
second open assignment of a client is refused by a unique partial index; a claim is a
``DELETE ... RETURNING`` of the pool row (one wins); the outbox leases due rows with
``FOR UPDATE SKIP LOCKED``. On SQLite every unit of work begins ``IMMEDIATE`` (one writer
at a time, no deadlocks between readers turning writers), in WAL mode.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from operator import itemgetter
from typing import Any, cast

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from crmcore.events import Event
from crmcore.notify.notification import Notification
from crmcore.notify.outbox import OutboxEntry, UnknownNotification
from crmcore.routing.router import RoutingState
from crmcore.rules import model
from crmcore.rules.ruleset import RuleSet, Trigger
from crmcore.rules.sql import install_sqlite_functions
from crmcore.storage import codec
from crmcore.storage.base import DuplicateEvent, StoreUnavailable
from crmcore.storage.conditions import trigger_query
from crmcore.storage.records import (
    Assignment,
    DeadLetter,
    Decision,
    EndReason,
    PoolEntry,
    QueueItem,
)
from crmcore.storage.schema import Tables, tables

__all__ = ["SqlStore"]

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)
_TARGETS: TypeAdapter[list[model.Target]] = TypeAdapter(list[model.Target])
_EVENT_CACHE = 50_000  # parsed events kept for histories (events never change)
_EVENT_KEYS = ("id", "type", "client_id", "at", "status", "amount", "volume", "pnl", "revenue", "data")
_DECISION_KEYS = ("event_id", "client_id", "at", "cause", "rule_version", "data")


def _client_columns(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.name not in ("seq", "extra"))


class _Prepared:
    """A statement built once, with bind parameters, and how to run it.

    On SQLite through the standard ``sqlite3`` driver and on PostgreSQL through ``psycopg``
    it is also compiled once, and run on the DBAPI connection of the unit of work's
    ``Connection`` (same transaction), with the bind and result conversions the SQLAlchemy
    types define (aware UTC times, exact decimal text, booleans; result conversions are
    taken at the first result, since psycopg's depend on the column type the server sends):
    SQLAlchemy's per-execution machinery (cache key, parameters, result set-up) costs
    several times the statement itself on SQLite, and ~80 µs a statement on PostgreSQL.
    Errors are raised as SQLAlchemy's (``sa.exc.OperationalError``, ...), and
    ``before_cursor_execute`` listeners still see every statement (for observation only:
    their return values are ignored). With another driver ``conn.execute`` runs it as usual.

    ``keys``: the parameter names of an INSERT or UPDATE whose columns come from the
    parameters (always the same ones for one prepared statement).
    """

    __slots__ = ("_binds", "_columns", "_dialect", "_error", "_fixed", "_get", "_names", "_results", "sql", "statement")

    def __init__(self, statement: Any, dialect: Any | None, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.sql: str | None = None
        if dialect is None:
            return
        compiled = statement.compile(dialect=dialect, column_keys=None if keys is None else list(keys))
        processors = compiled._bind_processors
        # the parameters in the order of the SQL (qmark: sqlite3) or by name (pyformat: psycopg)
        names = tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.binds)
        escaped = compiled.escaped_bind_names
        self._names = None if dialect.positional else tuple(escaped.get(name, name) for name in names)
        self.sql = compiled.string
        # the parameters in order (one C call), then the conversions where the type has one
        self._get = (lambda _: ()) if not names else itemgetter(*names) if len(names) > 1 else (lambda p: (p[names[0]],))
        self._binds = tuple((i, processors[name]) for i, name in enumerate(names) if processors.get(name) is not None)
        self._fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        self._columns = [entry.type for entry in compiled._result_columns]
        self._dialect = dialect
        self._results: tuple[tuple[int, Any], ...] | None = None  # from the first result's column types
        self._error = dialect.loaded_dbapi.Error

    def _cursor(self, conn: Connection, params: Mapping[str, Any] | None, many: Sequence[Mapping[str, Any]] = ()) -> Any:
        sql = self.sql
        assert sql is not None
        if many:
            args: Any = [self._args(row) for row in many]
        else:
            args = self._args(params or {})
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, cursor, sql, args, None, bool(many))
        try:
            if many:
                cursor.executemany(sql, args)
            else:
                cursor.execute(sql, args)
        except self._error as exc:
            raise sa.exc.DBAPIError.instance(sql, args, exc, self._error) from exc
        return cursor

    def _args(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        args = list(self._get({**self._fixed, **params} if self._fixed else params))
        for i, process in self._binds:
            value = args[i]
            if value is not None:
                args[i] = process(value)
        return args if self._names is None else dict(zip(self._names, args, strict=True))

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The rows the statement returns (tuples, or SQLAlchemy rows: index them)."""
        if self.sql is None:
            return list(conn.execute(self.statement, params) if params is not None else conn.execute(self.statement))
        cursor = self._cursor(conn, params)
        try:
            rows: list[Any] = cursor.fetchall()
        except self._error as exc:
            raise sa.exc.DBAPIError.instance(self.sql, None, exc, self._error) from exc
        results = self._results
        if results is None:  # a type's conversion may depend on the driver's column type (psycopg)
            codes = [column[1] for column in cursor.description or ()]
            processors = (t._cached_result_processor(self._dialect, code) for t, code in zip(self._columns, codes, strict=False))
            results = self._results = tuple((i, process) for i, process in enumerate(processors) if process is not None)
        if not results:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for i, process in results:
                value = values[i]
                if value is not None:
                    values[i] = process(value)
            converted.append(values)
        return converted

    def run(self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> int:
        """Run it (a list of parameter sets: an executemany); the rows it changed."""
        if self.sql is None:
            result = conn.execute(self.statement, params) if params is not None else conn.execute(self.statement)
            return int(result.rowcount)
        return int(self.execute(conn, params).rowcount)

    def execute(self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> Any:
        """Execute it on the driver's cursor (a list of parameter sets: an executemany)."""
        if isinstance(params, Sequence):
            return self._cursor(conn, None, params)
        return self._cursor(conn, params)


class _Reads:
    """What a unit of work on SQLite read, kept until it ends: it is the only writer (``BEGIN
    IMMEDIATE``), so nothing changes what it read but its own writes, which keep these up to
    date (a client's history gets each event recorded, the open counts each change, the
    outbox's highest seq each insert) or drop them (a queue item put). Any failed unit of
    work drops them all (``SqlStore._forget``). Values are immutable (events, queue items)
    and handed out in new lists or dicts."""

    __slots__ = ("counts", "histories", "items", "outbox_seq")

    def __init__(self) -> None:
        self.histories: dict[str, list[Event]] = {}  # client id -> events, as history() reads them
        self.items: dict[str, list[QueueItem]] = {}  # client id -> open queue items
        self.counts: dict[str, int] | None = None  # the open_counts table, as _count changes it
        self.outbox_seq: int | None = None  # the outbox's highest seq

    def clear(self) -> None:
        self.histories.clear()
        self.items.clear()
        self.counts = self.outbox_seq = None


class _Deferred:
    """PostgreSQL through psycopg: the writes of a unit of work whose outcome nothing reads
    (scores, the decision, outbox rows, open counts, the client's UPDATE when its row is
    known to exist, savepoints), held back and sent with the next statement that must be
    answered, in one round trip (psycopg's pipeline mode): ~12 round trips an event become
    ~6. The server runs them in the order they were made, so every read still sees every
    write before it, and locks are taken in the same order as before (later, never in
    another order). A unit of work sends what it holds before it ends, inside itself: a
    savepoint with its RELEASE, a transaction before its COMMIT, so a write that fails
    fails the unit of work it belongs to, as if it had been sent at once.

    ``base`` counts the writes sent so far: a savepoint remembers the place of its own
    SAVEPOINT (``mark``; held back only when nothing of the units around it is, so that
    their failed writes fail them), and rolling it back drops what it held (and the
    SAVEPOINT itself when it was never sent). ``present``: clients whose row this unit of work read or
    inserted (their UPDATE cannot miss); ``leased``: outbox rows this unit of work locked
    (marking them cannot miss). Both are dropped when any part of the unit fails."""

    __slots__ = ("base", "leased", "present", "writes")

    def __init__(self) -> None:
        self.writes: list[tuple[_Prepared, Any]] = []
        self.base = 0
        self.present: set[str] = set()
        self.leased: set[str] = set()

    def hold(self, prepared: _Prepared, params: Any) -> int:
        """Hold a write back; its place among all the unit's writes."""
        self.writes.append((prepared, params))
        return self.base + len(self.writes) - 1

    def take(self) -> list[tuple[_Prepared, Any]]:
        writes, self.writes = self.writes, []
        self.base += len(writes)
        return writes

    def drop_from(self, mark: int) -> bool:
        """Drop the writes held from place ``mark`` on; False when that write was sent."""
        if mark >= self.base:
            del self.writes[mark - self.base:]
            return True
        self.base += len(self.writes)
        self.writes.clear()
        return False


class SqlStore:
    """The Store protocol in a SQL database (see the module docstring).

    ``url``: a SQLAlchemy URL (text or ``sqlalchemy.URL``; default ``sqlite:///crmcore.db``)
    or an ``Engine``. ``schema`` / ``prefix``: where crmcore's tables live in a host's
    database (on SQLite a schema is a database the host's engine ATTACHes; any other is
    refused with ``ValueError``: use ``prefix``). An empty database gets crmcore's tables
    (the migrations, to the current version); a database at another version is refused
    with :class:`~crmcore.storage.base.SchemaVersionError`.
    """

    def __init__(
        self, url: str | sa.URL | Engine = "sqlite:///crmcore.db", *, schema: str | None = None, prefix: str = "crm_"
    ) -> None:
        self.engine = url if isinstance(url, Engine) else _create_engine(url)
        install_sqlite_functions(self.engine)
        self.schema, self.prefix = schema, prefix
        self.t: Tables = tables(sa.MetaData(schema=schema), prefix=prefix)
        self._dialect = self.engine.dialect.name
        # Engine.handle_many: events per transaction (a savepoint each). SQLite has one writer
        # anyway, so batches cost nothing in concurrency and save a commit per event; on
        # PostgreSQL a batch would hold the routing lock and client rows across events of
        # several clients (and invite deadlocks between workers): one event, one transaction.
        self.batch_size = 500 if self._dialect == "sqlite" else 1
        self._local = threading.local()
        self._cache_lock = threading.Lock()
        self._roster: tuple[Any, dict[str, model.Agent], dict[str, model.Desk]] | None = None
        self._events: OrderedDict[str, tuple[str, Event]] = OrderedDict()
        self._client_names = _client_columns(self.t.clients)
        self._prepared: dict[Any, _Prepared] = {}
        # sqlite3 and psycopg: statements compiled once and run on the DBAPI cursor (_Prepared)
        self._lean = (self._dialect, self.engine.dialect.driver) in (("sqlite", "pysqlite"), ("postgresql", "psycopg"))
        # ... and where every unit of work begins IMMEDIATE (an engine made from a URL here),
        # what it read is kept until it ends (_Reads)
        self._keep_reads = self._lean and sa.event.contains(self.engine, "begin", _begin_immediate)
        # ... and on PostgreSQL, writes nothing reads are held back to share a round trip (_Deferred)
        pipeline = getattr(self.engine.dialect.loaded_dbapi, "Pipeline", None)  # psycopg, with libpq >= 14
        self._hold_writes = self._lean and self._dialect == "postgresql" and bool(pipeline and pipeline.is_supported())
        self._dbapi_error = self.engine.dialect.loaded_dbapi.Error
        self.outbox = _SqlOutbox(self)
        _prepare(self)
        self._statements()

    def _build(self, statement: Any, keys: Sequence[str] | None = None) -> _Prepared:
        return _Prepared(statement, self.engine.dialect if self._lean else None, keys)

    def _statements(self) -> None:
        """The hot path's statements, built once (building one costs more than running it)."""
        t, prep, bind = self.t, self._build, sa.bindparam
        c, e, a = t.clients, t.events, t.assignments
        self._client_all = tuple(col.name for col in c.columns)
        q_client = sa.select(c).where(c.c.id == bind("cid"))
        self._q_client = prep(q_client)
        self._q_client_locked = prep(q_client.with_for_update())
        updated = [name for name in self._client_names if name != "id"] + ["extra"]
        self._u_client = prep(
            sa.update(c).where(c.c.id == bind("b_id"))
            .values({name: bind(f"b_{name}") for name in updated})
        )
        self._i_client = prep(
            sa.insert(c).values(seq=sa.select(sa.func.coalesce(sa.func.max(c.c.seq), 0) + 1).scalar_subquery()),
            [*self._client_names, "extra"],
        )
        insert = self._dialect_insert(e)
        self._i_event = prep(insert.on_conflict_do_nothing(index_elements=["id"]).returning(e.c.seq), _EVENT_KEYS)
        self._q_seen = prep(sa.select(e.c.seq).where(e.c.id == bind("id")))
        self._q_history = prep(sa.select(e.c.id, e.c.data).where(e.c.client_id == bind("cid")).order_by(e.c.seq))
        self._i_decision = prep(sa.insert(t.decisions), _DECISION_KEYS)
        q, f = t.queue_items, t.trigger_firings
        self._queue_names = tuple(col.name for col in q.columns)
        self._q_client_items = prep(
            sa.select(q).where(q.c.client_id == bind("cid"), q.c.resolved_at.is_(None)).order_by(q.c.queue)
        )
        self._q_fired = prep(sa.select(f.c.at).where(f.c.client_id == bind("cid"), f.c.trigger == bind("trigger")))
        i = t.ibs
        self._q_ib = prep(sa.select(i.c.id, i.c.quality, i.c.agent_id, i.c.manager_id).where(i.c.id == bind("id")))
        self._assignment_names = tuple(col.name for col in a.columns)
        open_a = (a.c.client_id == bind("cid"), a.c.ended_at.is_(None))
        self._q_assignment = prep(sa.select(a).where(*open_a))
        self._u_end = prep(
            sa.update(a).where(*open_a)
            .values(ended_at=bind("at"), end_reason=bind("reason"), ended_by=bind("by")).returning(*a.c)
        )
        self._u_contacted = prep(sa.update(a).where(*open_a, a.c.contacted_at.is_(None)).values(contacted_at=bind("at")))
        self._u_breached = prep(sa.update(a).where(*open_a, a.c.breached_at.is_(None)).values(breached_at=bind("at")))
        self._i_start = prep(
            self._dialect_insert(a).on_conflict_do_nothing(index_elements=[a.c.client_id], index_where=a.c.ended_at.is_(None))
            .returning(a.c.seq),  # (rowcount is not reliable with an implicit RETURNING)
            [col.name for col in a.columns if col.name != "seq"],
        )
        o = t.open_counts
        self._u_count = prep(
            self._dialect_insert(o).values(agent_id=bind("agent"), open=bind("first"))
            .on_conflict_do_update(index_elements=["agent_id"], set_={"open": o.c.open + bind("change")})
        )
        self._q_open_counts = prep(sa.select(o.c.agent_id, o.c.open))
        r = t.routing_state
        self._q_routing = prep(sa.select(r.c.desk, r.c.pointer, r.c.current))
        lock = t.locks
        self._q_lock_routing = prep(sa.select(lock.c.name).where(lock.c.name == "routing").with_for_update())
        m = t.meta
        self._q_meta = prep(sa.select(m.c.value).where(m.c.key == bind("key")))  # the roster token, the targets
        p = t.pool
        self._pool_names = tuple(col.name for col in p.columns)
        self._d_pool = prep(sa.delete(p).where(p.c.client_id == bind("cid")))
        self._i_pool = prep(
            sa.insert(p).values(seq=sa.select(sa.func.coalesce(sa.func.max(p.c.seq), 0) + 1).scalar_subquery()),
            [col.name for col in p.columns if col.name != "seq"],
        )
        self._take_pool = prep(sa.delete(p).where(p.c.client_id == bind("cid")).returning(*p.c))
        s = t.scores
        self._q_scores = prep(sa.select(s.c.scores, s.c.bands).where(s.c.client_id == bind("cid")))

    def _rows(self, prepared: _Prepared, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The rows of a prepared statement, in the unit of work (or a short transaction)."""
        conn = self._conn
        if conn is not None:
            deferred: _Deferred | None = self._local.deferred
            if deferred is not None and deferred.writes:
                return cast(list[Any], self._send(conn, deferred, prepared, params, rows=True))
            return prepared.rows(conn, params)
        with self._using() as conn:
            return prepared.rows(conn, params)

    def _exec(self, prepared: _Prepared, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> int:
        """Run a prepared statement (a list of parameter sets: executemany); rows changed."""
        conn = self._conn
        if conn is not None:
            deferred: _Deferred | None = self._local.deferred
            if deferred is not None and deferred.writes:
                return cast(int, self._send(conn, deferred, prepared, params))
            return prepared.run(conn, params)
        with self._using() as conn:
            return prepared.run(conn, params)

    def _later(self, prepared: _Prepared, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> None:
        """Run a write whose outcome nothing reads: held back on PostgreSQL (``_Deferred``)."""
        deferred: _Deferred | None = getattr(self._local, "deferred", None)
        if deferred is not None and self._conn is not None:
            deferred.hold(prepared, params)
        else:
            self._exec(prepared, params)

    def _send(
        self, conn: Connection, deferred: _Deferred, then: _Prepared | None = None, params: Any = None, *, rows: bool = False,
    ) -> list[Any] | int | None:
        """Send the held writes, then ``then`` (its rows, or the rows it changed), in one
        pipeline: one round trip. A held write that failed raises here (the server skips
        what followed it)."""
        writes = deferred.take()
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            with driver.pipeline() as pipeline:
                for prepared, held in writes:
                    prepared.run(conn, held)
                if then is None:
                    return None
                if rows:
                    return then.rows(conn, params)
                cursor = then.execute(conn, params)
                pipeline.sync()
                return int(cursor.rowcount)
        except sa.exc.DBAPIError:
            raise
        except self._dbapi_error as exc:  # at the pipeline's end: one of the held writes
            sql = "; ".join(prepared.sql or "" for prepared, _ in writes)
            raise sa.exc.DBAPIError.instance(sql, None, exc, self._dbapi_error) from exc

    def _dialect_insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)

    def __repr__(self) -> str:
        return f"SqlStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # --- connections and units of work --------------------------------------------------------

    @property
    def _conn(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        conn = self._conn
        if conn is not None:  # nested: a savepoint
            try:
                with self._savepoint(conn):
                    yield
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                self._forget()
                raise StoreUnavailable(f"{self!r}: {first_line(exc)}") from exc
            except BaseException:
                self._forget()  # the savepoint's writes are gone: so is what was cached of them
                raise
            return
        try:
            with self.engine.begin() as conn:
                self._local.conn = conn
                self._local.roster_checked = False
                # SQLite: BEGIN IMMEDIATE made this the only writer, so what it reads stays
                # true until it ends, but for its own writes (see _Reads)
                self._local.reads = _Reads() if self._keep_reads else None
                deferred = self._local.deferred = _Deferred() if self._hold_writes else None
                yield
                if deferred is not None and deferred.writes:  # before COMMIT: their errors are this unit's
                    self._send(conn, deferred)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            self._forget()
            raise StoreUnavailable(f"{self!r}: {first_line(exc)}") from exc
        except BaseException:
            self._forget()  # caches may hold what was rolled back
            raise
        finally:
            self._local.conn = self._local.reads = self._local.deferred = None

    @contextmanager
    def _savepoint(self, conn: Connection) -> Iterator[None]:
        """A savepoint; on SQLite through sqlite3 emitted on the DBAPI cursor (SQLAlchemy's
        ``begin_nested`` costs more than the statements it runs)."""
        if not self._lean:
            with conn.begin_nested():
                yield
            return
        depth = self._local.depth = getattr(self._local, "depth", 0) + 1
        name = f"crm_sp_{depth}"
        deferred: _Deferred | None = self._local.deferred
        release = self._savepoint_sql("RELEASE SAVEPOINT", name)
        savepoint = self._savepoint_sql("SAVEPOINT", name)
        # held back (sent with the savepoint's first statement) only when nothing of the units
        # around it is held: their writes are sent before it, and fail them, not this one
        sent = deferred is None or bool(deferred.writes)
        if sent:
            try:
                self._exec(savepoint)
            except BaseException:
                self._local.depth = depth - 1
                raise
        mark = 0 if deferred is None else deferred.base if sent else deferred.hold(savepoint, None)
        try:
            yield
            self._exec(release)  # with the writes held back: one that fails fails this savepoint
        except BaseException:
            # drop what it holds; undo on the server what it sent (nothing, if not even SAVEPOINT)
            if deferred is None or not deferred.drop_from(mark) or sent:
                self._exec(self._savepoint_sql("ROLLBACK TO SAVEPOINT", name))
                self._exec(release)
            raise
        finally:
            self._local.depth = depth - 1

    def _savepoint_sql(self, verb: str, name: str) -> _Prepared:
        prepared = self._prepared.get((verb, name))
        if prepared is None:
            prepared = self._prepared[(verb, name)] = self._build(sa.text(f"{verb} {name}"))
        return prepared

    @contextmanager
    def _using(self) -> Iterator[Connection]:
        """The unit of work's connection, or a short transaction of its own."""
        conn = self._conn
        if conn is not None:
            deferred: _Deferred | None = self._local.deferred
            if deferred is not None and deferred.writes:
                self._send(conn, deferred)
            yield conn
            return
        try:
            with self.engine.connect().execution_options(crm_deferred=True) as conn, conn.begin():
                yield conn  # a deferred BEGIN: on SQLite a read outside a unit of work never waits for writers
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"{self!r}: {first_line(exc)}") from exc

    def _all(self, query: Any) -> list[Any]:
        with self._using() as conn:
            return list(conn.execute(query))

    def _one(self, query: Any) -> Any:
        with self._using() as conn:
            return conn.execute(query).first()

    def _run(self, statement: Any, params: Any = None) -> Any:
        with self._using() as conn:
            return conn.execute(statement, params) if params is not None else conn.execute(statement)

    def _upsert(self, table: sa.Table, values: Mapping[str, Any], keys: Sequence[str], *, later: bool = False) -> None:
        """Insert or update ``values`` (one statement per table and column set, built once);
        ``later``: may be held back (``_later``)."""
        shape = (table.name, tuple(values), tuple(keys))
        prepared = self._prepared.get(shape)
        if prepared is None:
            insert = self._dialect_insert(table)
            statement = insert.on_conflict_do_update(
                index_elements=list(keys), set_={k: insert.excluded[k] for k in values if k not in keys}
            )
            prepared = self._prepared[shape] = self._build(statement, list(values))
        if later:
            self._later(prepared, values)
        else:
            self._exec(prepared, values)

    def _forget(self) -> None:
        with self._cache_lock:
            self._roster = None
        self._local.roster_checked = False
        reads: _Reads | None = getattr(self._local, "reads", None)
        if reads is not None:  # a rolled-back savepoint: its writes may be in there
            reads.clear()
        deferred: _Deferred | None = getattr(self._local, "deferred", None)
        if deferred is not None:
            deferred.present.clear()
            deferred.leased.clear()

    def close(self) -> None:
        self.engine.dispose()

    # --- events -------------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        return bool(self._rows(self._q_seen, {"id": event_id}))

    def record_event(self, event: Event) -> None:
        client_id: str | None = getattr(event, "client_id", None)
        data = event.model_dump_json()
        row = {
            "id": event.id, "type": event.type, "client_id": client_id,
            "at": event.at, "status": getattr(event, "status", None),
            "amount": getattr(event, "amount", None), "volume": getattr(event, "volume", None),
            "pnl": getattr(event, "pnl", None), "revenue": getattr(event, "revenue", None),
            "data": data,
        }
        if self._conn is None:
            raise RuntimeError("record_event needs a unit of work")
        if not self._rows(self._i_event, row):  # the id is there already
            raise DuplicateEvent(event.id)
        reads: _Reads | None = self._local.reads
        kept = None if reads is None or client_id is None else reads.histories.get(client_id)
        if kept is not None:  # as a read would find it now
            kept.append(self._event(event.id, data))

    def history(self, client_id: str) -> Sequence[Event]:
        reads: _Reads | None = getattr(self._local, "reads", None)
        kept = None if reads is None else reads.histories.get(client_id)
        if kept is None:
            kept = [self._event(event_id, data) for event_id, data in self._rows(self._q_history, {"cid": client_id})]
            if reads is None:
                return kept
            reads.histories[client_id] = kept
        return list(kept)  # a copy: what was handed out never changes

    def _event(self, event_id: str, data: str) -> Event:
        cached = self._events.get(event_id)
        if cached is not None and cached[0] == data:  # an id rolled back may come back changed
            return cached[1]
        event = _EVENT.validate_json(data)
        with self._cache_lock:
            self._events[event_id] = (data, event)
            if len(self._events) > _EVENT_CACHE:
                self._events.popitem(last=False)
        return event

    def events(self) -> Iterator[Event]:
        e = self.t.events
        for event_id, data in self._all(sa.select(e.c.id, e.c.data).order_by(e.c.seq)):
            yield self._event(event_id, data)

    def latest_event_at(self) -> datetime | None:
        e = self.t.events
        # max() loses the column's type on SQLite: ask for the row holding it instead
        row = self._one(sa.select(e.c.at).order_by(e.c.at.desc()).limit(1))
        return None if row is None else row[0]

    # --- clients ------------------------------------------------------------------------------

    def client(self, client_id: str) -> dict[str, Any] | None:
        locked = self._conn is not None and self._dialect == "postgresql"
        # locked: the unit of work applies its event alone
        query = self._q_client_locked if locked else self._q_client
        rows = self._rows(query, {"cid": client_id})
        if not rows:
            return None
        if locked and self._local.deferred is not None:
            self._local.deferred.present.add(client_id)  # its UPDATE cannot miss: held back
        return self._client_from(rows[0])

    def _client_from(self, row: Any) -> dict[str, Any]:
        data = dict(zip(self._client_all, row, strict=True))
        client = {name: data[name] for name in self._client_names}
        client.update(codec.loads(data["extra"]))
        return client

    def put_client(self, client: dict[str, Any]) -> None:
        values = {name: client.get(name) for name in self._client_names}
        values["extra"] = codec.dumps({k: v for k, v in client.items() if k not in values})
        params = {f"b_{name}": value for name, value in values.items()}
        deferred: _Deferred | None = getattr(self._local, "deferred", None)
        if deferred is not None and client["id"] in deferred.present and self._conn is not None:
            deferred.hold(self._u_client, params)
            return
        if self._exec(self._u_client, params) == 0:  # a new client (registration order from the seq)
            self._exec(self._i_client, values)
        if deferred is not None and self._conn is not None:
            deferred.present.add(client["id"])

    def clients(self) -> Iterator[dict[str, Any]]:
        c = self.t.clients
        for row in self._all(sa.select(c).order_by(c.c.seq, c.c.id)):
            yield self._client_from(row)

    # --- agents, desks, IBs -------------------------------------------------------------------

    def _meta(self, key: str) -> Any:
        rows = self._rows(self._q_meta, {"key": key})
        return rows[0][0] if rows else None

    def _roster_version(self) -> Any:
        return self._meta("roster")

    def _bump_roster(self) -> None:
        # a new token, never an old one again: a cache of a rolled-back roster cannot match it
        self._upsert(self.t.meta, {"key": "roster", "value": uuid.uuid4().hex}, ["key"])
        self._local.roster_checked = False

    def _load_roster(self) -> tuple[dict[str, model.Agent], dict[str, model.Desk]]:
        cached = self._roster
        in_work = self._conn is not None
        if cached is not None and in_work and getattr(self._local, "roster_checked", False):
            return cached[1], cached[2]  # checked once in this transaction; our writes bump it
        version = self._roster_version()
        if in_work:
            self._local.roster_checked = True
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        a, d = self.t.agents, self.t.desks
        agents = {row.id: model.Agent.model_validate_json(row.data) for row in self._all(sa.select(a.c.id, a.c.data).order_by(a.c.id))}
        desks = {row.id: model.Desk.model_validate_json(row.data) for row in self._all(sa.select(d.c.id, d.c.data).order_by(d.c.id))}
        with self._cache_lock:
            self._roster = (version, agents, desks)
        return agents, desks

    def agents(self) -> Mapping[str, model.Agent]:
        return self._load_roster()[0]

    def put_agent(self, agent: model.Agent) -> None:
        values = {"id": agent.id, "desk": agent.desk, "role": agent.role, "manager": agent.manager,
                  "active": agent.active, "data": agent.model_dump_json()}
        self._upsert(self.t.agents, values, ["id"])
        self._bump_roster()

    def desks(self) -> Mapping[str, model.Desk]:
        return self._load_roster()[1]

    def put_desk(self, desk: model.Desk) -> None:
        if self.desks().get(desk.id) == desk:
            return
        self._upsert(self.t.desks, {"id": desk.id, "kind": desk.kind, "data": desk.model_dump_json()}, ["id"])
        self._bump_roster()

    def ib(self, ib_id: str) -> dict[str, Any] | None:
        rows = self._rows(self._q_ib, {"id": ib_id})
        return dict(zip(("id", "quality", "agent_id", "manager_id"), rows[0], strict=True)) if rows else None

    def put_ib(self, ib: dict[str, Any]) -> None:
        self._upsert(self.t.ibs, {k: ib.get(k) for k in ("id", "quality", "agent_id", "manager_id")}, ["id"])

    # --- targets (JSON in the meta table) -----------------------------------------------------

    def targets(self) -> tuple[model.Target, ...]:
        value = self._meta("targets")
        return () if value is None else tuple(_TARGETS.validate_json(value))

    def put_targets(self, targets: Sequence[model.Target]) -> None:
        if self.targets() == tuple(targets):
            return  # every engine start writes them: no write (and no row lock) when unchanged
        value = _TARGETS.dump_json(list(targets)).decode()
        self._upsert(self.t.meta, {"key": "targets", "value": value}, ["key"])

    # --- assignments --------------------------------------------------------------------------

    def _assignment_from(self, row: Any) -> Assignment:
        data = dict(zip(self._assignment_names, row, strict=True))
        data.pop("seq")
        data["trace"] = codec.loads(data["trace"])
        return codec.assignment_from(data)

    def assignment(self, client_id: str) -> Assignment | None:
        rows = self._rows(self._q_assignment, {"cid": client_id})
        return self._assignment_from(rows[0]) if rows else None

    def assignments(self, client_id: str) -> list[Assignment]:
        a = self.t.assignments
        return [self._assignment_from(r) for r in self._all(sa.select(a).where(a.c.client_id == client_id).order_by(a.c.seq))]

    def start_assignment(self, assignment: Assignment) -> None:
        values = codec.assignment_to(assignment)
        values["trace"] = codec.dumps(values["trace"])
        if not self._rows(self._i_start, values):  # the unique open-assignment index said no
            raise ValueError(f"client {assignment.client_id!r} already has an open assignment")
        self._count(assignment.agent_id, +1)

    def _count(self, agent_id: str, change: int) -> None:
        self._later(self._u_count, {"agent": agent_id, "first": max(change, 0), "change": change})
        reads: _Reads | None = getattr(self._local, "reads", None)
        counts = None if reads is None else reads.counts
        if counts is not None:  # as the upsert does: a new row starts at max(change, 0)
            counts[agent_id] = counts[agent_id] + change if agent_id in counts else max(change, 0)

    def end_assignment(self, client_id: str, at: datetime, reason: EndReason, ended_by: str) -> Assignment | None:
        rows = self._rows(self._u_end, {"cid": client_id, "at": at, "reason": reason, "by": ended_by})
        if not rows:
            return None
        ended = self._assignment_from(rows[0])
        self._count(ended.agent_id, -1)
        return ended

    def mark_contacted(self, client_id: str, at: datetime) -> None:
        self._later(self._u_contacted, {"cid": client_id, "at": at})

    def mark_breached(self, client_id: str, at: datetime) -> None:
        self._later(self._u_breached, {"cid": client_id, "at": at})

    def sla_due(self, now: datetime) -> list[Assignment]:
        a = self.t.assignments
        query = (
            sa.select(a)
            .where(
                a.c.ended_at.is_(None), a.c.sla_due_at.is_not(None), a.c.sla_due_at < now, a.c.breached_at.is_(None),
                sa.or_(a.c.contacted_at.is_(None), a.c.contacted_at > a.c.sla_due_at),
            )
            .order_by(a.c.sla_due_at, a.c.client_id)
        )
        return [self._assignment_from(r) for r in self._all(query)]

    def open_clients(self, agent_id: str) -> list[str]:
        a = self.t.assignments
        query = sa.select(a.c.client_id).where(a.c.agent_id == agent_id, a.c.ended_at.is_(None)).order_by(a.c.seq)
        return [row[0] for row in self._all(query)]

    def open_counts(self) -> Mapping[str, int]:
        reads: _Reads | None = getattr(self._local, "reads", None)
        if reads is None:
            return {agent: count for agent, count in self._rows(self._q_open_counts) if count}
        if reads.counts is None:
            reads.counts = dict(self._rows(self._q_open_counts))
        return {agent: count for agent, count in reads.counts.items() if count}

    def lock_routing(self) -> None:
        # SQLite: BEGIN IMMEDIATE already made this the only writer
        if self._conn is not None and self._dialect == "postgresql":
            self._rows(self._q_lock_routing)

    def routing_state(self) -> RoutingState:
        self.lock_routing()  # whoever reads the rotation to change it holds the lock
        pointers: dict[str, str | None] = {}
        current: dict[str, dict[str, float]] = {}
        for desk, pointer, values in self._rows(self._q_routing):
            pointers[desk] = pointer
            loaded = codec.loads(values)
            if loaded:
                current[desk] = loaded
        state = RoutingState(pointers, current)
        self._local.routing_read = state  # put_routing_state writes only what changed
        return state

    def put_routing_state(self, state: RoutingState) -> None:
        before = codec.routing_state_to(getattr(self._local, "routing_read", None) or RoutingState.empty())
        for desk, (pointer, values) in codec.routing_state_to(state).items():
            if before.get(desk) != (pointer, values):
                state_row = {"desk": desk, "pointer": pointer, "current": codec.dumps(values)}
                self._upsert(self.t.routing_state, state_row, ["desk"], later=True)
        self._local.routing_read = state

    # --- pools --------------------------------------------------------------------------------

    def _pool_from(self, row: Any) -> PoolEntry:
        data = dict(zip(self._pool_names, row, strict=True))
        data.pop("seq")
        return PoolEntry(**data)

    def pool(self, desk: str) -> list[PoolEntry]:
        p = self.t.pool
        return [self._pool_from(r) for r in self._all(sa.select(p).where(p.c.desk == desk).order_by(p.c.since, p.c.seq))]

    def pool_entry(self, client_id: str) -> PoolEntry | None:
        p = self.t.pool
        row = self._one(sa.select(p).where(p.c.client_id == client_id))
        return None if row is None else self._pool_from(row)

    def add_to_pool(self, entry: PoolEntry) -> None:
        self._later(self._d_pool, {"cid": entry.client_id})
        self._later(self._i_pool, {
            "client_id": entry.client_id, "desk": entry.desk, "stage": entry.stage, "reason": entry.reason,
            "since": entry.since, "event_id": entry.event_id, "rule": entry.rule,
        })

    def take_from_pool(self, client_id: str) -> PoolEntry | None:
        rows = self._rows(self._take_pool, {"cid": client_id})
        return self._pool_from(rows[0]) if rows else None

    # --- scores, decisions, dead letters, queues ----------------------------------------------

    def put_scores(self, client_id: str, scores: Mapping[str, float], bands: Mapping[str, str | None]) -> None:
        self._upsert(self.t.scores, {"client_id": client_id, "scores": codec.dumps(dict(scores)), "bands": codec.dumps(dict(bands))}, ["client_id"], later=True)

    def scores(self, client_id: str) -> tuple[Mapping[str, float], Mapping[str, str | None]] | None:
        rows = self._rows(self._q_scores, {"cid": client_id})
        return (codec.loads(rows[0][0]), codec.loads(rows[0][1])) if rows else None

    def add_decision(self, decision: Decision) -> None:
        self._later(self._i_decision, {
            "event_id": decision.event_id, "client_id": decision.client_id, "at": decision.at,
            "cause": decision.cause, "rule_version": decision.rule_version,
            "data": codec.dumps(codec.decision_to(decision)),
        })

    def decisions(self, client_id: str | None = None) -> list[Decision]:
        d = self.t.decisions
        query = sa.select(d.c.data).order_by(d.c.seq)
        if client_id is not None:
            query = query.where(d.c.client_id == client_id)
        return [codec.decision_from(codec.loads(row[0])) for row in self._all(query)]

    def add_dead_letter(self, letter: DeadLetter) -> None:
        d = self.t.dead_letters
        same = sa.select(d.c.seq).where(
            d.c.event_id.is_(None) if letter.event_id is None else d.c.event_id == letter.event_id,
            d.c.line.is_(None) if letter.line is None else d.c.line == letter.line,
            d.c.raw == letter.raw, d.c.reason == letter.reason,
        )
        if self._one(same) is None:
            self._run(sa.insert(d).values(event_id=letter.event_id, line=letter.line, reason=letter.reason, raw=letter.raw))

    def dead_letters(self) -> list[DeadLetter]:
        d = self.t.dead_letters
        query = sa.select(d.c.event_id, d.c.raw, d.c.reason, d.c.line).order_by(d.c.seq)
        return [DeadLetter(*row) for row in self._all(query)]

    def put_queue_item(self, item: QueueItem) -> None:
        reads: _Reads | None = getattr(self._local, "reads", None)
        if reads is not None:
            reads.items.pop(item.client_id, None)  # read again when asked
        self._upsert(self.t.queue_items, {
            "client_id": item.client_id, "queue": item.queue, "trigger": item.trigger,
            "priority": item.priority, "actions": codec.dumps(list(item.actions)),
            "opened_at": item.opened_at, "updated_at": item.updated_at, "resolved_at": item.resolved_at,
            "desk": item.desk, "agent_id": item.agent_id,
        }, ["client_id", "queue"], later=True)

    def _queue_item(self, row: Any) -> QueueItem:
        data = dict(zip(self._queue_names, row, strict=True))
        data["actions"] = tuple(codec.loads(data["actions"]))
        return QueueItem(**data)

    def client_queue_items(self, client_id: str) -> list[QueueItem]:
        reads: _Reads | None = getattr(self._local, "reads", None)
        if reads is None:
            return [self._queue_item(row) for row in self._rows(self._q_client_items, {"cid": client_id})]
        kept = reads.items.get(client_id)
        if kept is None:
            kept = reads.items[client_id] = [self._queue_item(row) for row in self._rows(self._q_client_items, {"cid": client_id})]
        return list(kept)

    def last_fired(self, client_id: str, trigger: str) -> datetime | None:
        rows = self._rows(self._q_fired, {"cid": client_id, "trigger": trigger})
        return rows[0][0] if rows else None

    def put_fired(self, client_id: str, trigger: str, at: datetime) -> None:
        self._upsert(self.t.trigger_firings, {"client_id": client_id, "trigger": trigger, "at": at}, ["client_id", "trigger"], later=True)

    # --- scans inside the database ---------------------------------------------------------

    def trigger_matches(self, rules: RuleSet, trigger: Trigger, now: datetime) -> list[tuple[int, str]]:
        """``(seq, id)`` of the clients for which condition ``trigger`` holds at ``now``: its
        ``when`` compiled to SQL and run here, one query. Raises
        :class:`~crmcore.rules.sql.SqlUnsupported` when SQL cannot express it."""
        query = trigger_query(self.t, rules, trigger, now)
        return [] if query is None else [(seq, client_id) for seq, client_id in self._all(query)]

    def scan_candidates(self, rules: RuleSet, now: datetime) -> list[str]:
        """The clients a trigger scan at ``now`` must visit, in registration order: those
        for which a condition trigger holds (one query per trigger) and those with an open
        queue item of one, which may have to be resolved."""
        found: dict[str, int] = {}
        for trigger in rules.condition_triggers:
            found.update((client_id, seq) for seq, client_id in self.trigger_matches(rules, trigger, now))
        q, c = self.t.queue_items, self.t.clients
        names = [trigger.name for trigger in rules.condition_triggers]
        if names:
            held = (
                sa.select(c.c.seq, c.c.id).join(q, q.c.client_id == c.c.id)
                .where(q.c.resolved_at.is_(None), q.c.trigger.in_(names))
            )
            found.update((client_id, seq) for seq, client_id in self._all(held))
        return sorted(found, key=lambda client_id: (found[client_id], client_id))

    def queue_items(self, queue: str | None = None, *, open_only: bool = True) -> list[QueueItem]:
        q = self.t.queue_items
        query = sa.select(q).order_by(q.c.priority.desc(), q.c.opened_at, q.c.client_id)
        if queue is not None:
            query = query.where(q.c.queue == queue)
        if open_only:
            query = query.where(q.c.resolved_at.is_(None))
        return [self._queue_item(row) for row in self._all(query)]


class _SqlOutbox:
    """The outbox as a table. Delivery runs in a unit of work: on PostgreSQL the due rows
    are locked (``FOR UPDATE SKIP LOCKED``) until it ends, so several deliverers never send
    the same row, whatever their ``now``; a deliverer that dies releases them at once (a
    notification sent just before the death may be sent again: at least once, with its
    idempotency key). On SQLite the unit of work is the only writer."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        o, bind = store.t.outbox, sa.bindparam
        self._i_rows = store._build(
            store._dialect_insert(o).on_conflict_do_nothing(index_elements=["id"]), [col.name for col in o.columns]
        )
        self._q_last = store._build(sa.select(sa.func.coalesce(sa.func.max(o.c.seq), 0)))  # indexed
        self._u_delivered = store._build(
            sa.update(o).where(o.c.id == bind("b_id")).values(attempts=o.c.attempts + 1, delivered_at=bind("at"))
        )
        self._u_failed = store._build(
            sa.update(o).where(o.c.id == bind("b_id"))
            .values(attempts=o.c.attempts + 1, last_error=bind("error"), next_attempt_at=bind("next"))
        )

    def add(self, notifications: Iterable[Notification]) -> None:
        store = self._store
        rows = [
            {"id": n.id, "kind": n.kind, "recipient": n.recipient, "created_at": n.created_at,
             "notification": codec.dumps(codec.notification_to(n)), "attempts": 0,
             "next_attempt_at": n.created_at, "last_error": None, "delivered_at": None}
            for n in notifications
        ]
        if not rows:
            return
        reads: _Reads | None = getattr(store._local, "reads", None)
        last = reads.outbox_seq if reads is not None and reads.outbox_seq is not None else store._rows(self._q_last)[0][0]
        for offset, row in enumerate(rows, start=1):
            row["seq"] = last + offset
        if reads is None:
            store._later(self._i_rows, rows)
            return
        inserted = store._exec(self._i_rows, rows)
        # (an id already there inserts nothing: read the highest seq again)
        reads.outbox_seq = last + len(rows) if inserted == len(rows) else None

    def _entry(self, row: Any) -> OutboxEntry:
        return OutboxEntry(
            codec.notification_from(codec.loads(row.notification)), row.next_attempt_at, row.attempts,
            row.last_error, row.delivered_at,
        )

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        store = self._store
        o = store.t.outbox
        query = (
            sa.select(o).where(o.c.delivered_at.is_(None), o.c.next_attempt_at <= now)
            .order_by(o.c.next_attempt_at, o.c.created_at, o.c.seq).limit(limit)
        )
        if store._dialect == "postgresql":  # locked until the delivering unit of work ends
            query = query.with_for_update(skip_locked=True)
        entries = [self._entry(r) for r in store._all(query)]
        deferred: _Deferred | None = getattr(store._local, "deferred", None)
        if deferred is not None:  # (PostgreSQL) locked until the unit ends: marking them cannot miss
            deferred.leased.update(entry.notification.id for entry in entries)
        return entries

    def _mark(self, prepared: _Prepared, id: str, params: dict[str, Any]) -> None:
        store = self._store
        deferred: _Deferred | None = getattr(store._local, "deferred", None)
        if deferred is not None and id in deferred.leased and store._conn is not None:
            store._later(prepared, params)
        elif store._exec(prepared, params) == 0:
            raise UnknownNotification(id)

    def delivered(self, id: str, at: datetime) -> None:
        self._mark(self._u_delivered, id, {"b_id": id, "at": at})

    def failed(self, id: str, at: datetime, error: str, next_attempt_at: datetime) -> None:
        self._mark(self._u_failed, id, {"b_id": id, "error": error, "next": next_attempt_at})

    def pending_count(self) -> int:
        o = self._store.t.outbox
        row = self._store._one(sa.select(sa.func.count()).where(o.c.delivered_at.is_(None)))
        return int(row[0])

    def entries(self) -> list[OutboxEntry]:
        o = self._store.t.outbox
        return [self._entry(r) for r in self._store._all(sa.select(o).order_by(o.c.seq))]


def first_line(exc: sa.exc.DBAPIError) -> str:
    """The driver's own first line of a database error (what a person needs to read)."""
    reason = exc.orig if exc.orig is not None else exc
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__


def _create_engine(url: str | sa.URL) -> Engine:
    url = sa.make_url(url)
    engine = sa.create_engine(url, future=True, pool_pre_ping=url.get_backend_name() != "sqlite")
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """WAL, and BEGIN IMMEDIATE for every transaction (SQLAlchemy's recipe for pysqlite)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    sa.event.listen(engine, "begin", _begin_immediate)


def _begin_immediate(conn: Connection) -> None:
    deferred = conn.get_execution_options().get("crm_deferred", False)
    conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def _prepare(store: SqlStore) -> None:
    """Create the tables in an empty database; refuse one at another schema version."""
    from crmcore.storage import migrate

    if migrate.check_version(store.engine, schema=store.schema, prefix=store.prefix) == "empty":
        migrate.upgrade(store.engine, schema=store.schema, prefix=store.prefix)

