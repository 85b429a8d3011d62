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
from typing import Any

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
_EVENT_CACHE = 50_000  # parsed events kept for histories (events never change)


def _client_columns(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.name not in ("seq", "extra"))


class SqlStore:
    """The Store protocol in a SQL database (see the module docstring).

    ``url``: a SQLAlchemy URL (default ``sqlite:///crmcore.db``) or an ``Engine``.
    ``schema`` / ``prefix``: where crmcore's tables live in a host's database. An empty
    database gets crmcore's tables (the migrations, to the current version); a database at
    another version is refused with :class:`~crmcore.storage.migrate.SchemaVersionError`.
    """

    def __init__(
        self, url: str | Engine = "sqlite:///crmcore.db", *, schema: str | None = None, prefix: str = "crm_"
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
        self._prepared: dict[Any, Any] = {}
        self.outbox = _SqlOutbox(self)
        _prepare(self)
        self._statements()

    def _statements(self) -> None:
        """The hot path's statements, built once (building one costs more than running it)."""
        t = self.t
        c, e = t.clients, t.events
        self._q_client = sa.select(c).where(c.c.id == sa.bindparam("cid"))
        self._q_client_locked = self._q_client.with_for_update()
        updated = [name for name in self._client_names if name != "id"] + ["extra"]
        self._u_client = (
            sa.update(c).where(c.c.id == sa.bindparam("b_id"))
            .values({name: sa.bindparam(f"b_{name}") for name in updated})
        )
        self._i_client = sa.insert(c).values(
            seq=sa.select(sa.func.coalesce(sa.func.max(c.c.seq), 0) + 1).scalar_subquery()
        )
        insert = self._dialect_insert(e)
        self._i_event = insert.on_conflict_do_nothing(index_elements=["id"]).returning(e.c.seq)
        self._q_history = sa.select(e.c.id, e.c.data).where(e.c.client_id == sa.bindparam("cid")).order_by(e.c.seq)
        self._i_decision = sa.insert(t.decisions)
        q, f = t.queue_items, t.trigger_firings
        self._q_client_items = (
            sa.select(q).where(q.c.client_id == sa.bindparam("cid"), q.c.resolved_at.is_(None)).order_by(q.c.queue)
        )
        self._q_fired = sa.select(f.c.at).where(f.c.client_id == sa.bindparam("cid"), f.c.trigger == sa.bindparam("trigger"))

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
                with conn.begin_nested():
                    yield
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                self._forget()
                raise StoreUnavailable(f"{self!r}: {_first_line(exc)}") from exc
            except BaseException:
                self._forget()  # the savepoint's writes are gone: so is what was cached of them
                raise
            return
        try:
            with self.engine.begin() as conn:
                self._local.conn = conn
                self._local.roster_checked = False
                yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            self._forget()
            raise StoreUnavailable(f"{self!r}: {_first_line(exc)}") from exc
        except BaseException:
            self._forget()  # caches may hold what was rolled back
            raise
        finally:
            self._local.conn = None

    @contextmanager
    def _using(self) -> Iterator[Connection]:
        """The unit of work's connection, or a short transaction of its own."""
        conn = self._conn
        if conn is not None:
            yield conn
            return
        try:
            with self.engine.connect().execution_options(crm_deferred=True) as conn, conn.begin():
                yield conn  # a deferred BEGIN: on SQLite a read outside a unit of work never waits for writers
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"{self!r}: {_first_line(exc)}") from exc

    def _all(self, query: Any) -> list[Any]:
        with self._using() as conn:
            return list(conn.execute(query))

    def _one(self, query: Any) -> Any:
        with self._using() as conn:
            return conn.execute(query).first()

    def _run(self, statement: Any, params: Any = None) -> Any:
        with self._using() as conn:
            return conn.execute(statement, params) if params is not None else conn.execute(statement)

    def _upsert(self, table: sa.Table, values: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Insert or update ``values`` (one statement per table and column set, built once)."""
        shape = (table.name, tuple(values), tuple(keys))
        statement = self._prepared.get(shape)
        if statement is None:
            insert = self._dialect_insert(table)
            statement = insert.on_conflict_do_update(
                index_elements=list(keys), set_={k: insert.excluded[k] for k in values if k not in keys}
            )
            self._prepared[shape] = statement
        self._run(statement, dict(values))

    def _forget(self) -> None:
        with self._cache_lock:
            self._roster = None
        self._local.roster_checked = False

    def close(self) -> None:
        self.engine.dispose()

    # --- events -------------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        e = self.t.events
        return self._one(sa.select(e.c.seq).where(e.c.id == event_id)) is not None

    def record_event(self, event: Event) -> None:
        row = {
            "id": event.id, "type": event.type, "client_id": getattr(event, "client_id", None),
            "at": event.at, "status": getattr(event, "status", None),
            "amount": getattr(event, "amount", None), "volume": getattr(event, "volume", None),
            "pnl": getattr(event, "pnl", None), "revenue": getattr(event, "revenue", None),
            "data": event.model_dump_json(),
        }
        if self._conn is None:
            raise RuntimeError("record_event needs a unit of work")
        if self._run(self._i_event, row).first() is None:  # the id is there already
            raise DuplicateEvent(event.id)

    def history(self, client_id: str) -> Sequence[Event]:
        rows = self._run(self._q_history, {"cid": client_id})
        return [self._event(event_id, data) for event_id, data in rows]

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
        row = self._run(query, {"cid": client_id}).first()
        return None if row is None else self._client_from(row)

    def _client_from(self, row: Any) -> dict[str, Any]:
        data = row._mapping
        client = {name: data[name] for name in self._client_names}
        client.update(codec.loads(data["extra"]))
        return client

    def put_client(self, client: dict[str, Any]) -> None:
        values = {name: client.get(name) for name in self._client_names}
        values["extra"] = codec.dumps({k: v for k, v in client.items() if k not in values})
        updated = self._run(self._u_client, {f"b_{name}": value for name, value in values.items()})
        if updated.rowcount == 0:  # a new client (registration order from the seq)
            self._run(self._i_client, values)

    def clients(self) -> Iterator[dict[str, Any]]:
        c = self.t.clients
        for row in self._all(sa.select(c).order_by(c.c.seq, c.c.id)):
            yield self._client_from(row)

    # --- agents, desks, IBs -------------------------------------------------------------------

    def _roster_version(self) -> Any:
        m = self.t.meta
        row = self._one(sa.select(m.c.value).where(m.c.key == "roster"))
        return None if row is None else row[0]

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
        i = self.t.ibs
        row = self._one(sa.select(i.c.id, i.c.quality, i.c.agent_id, i.c.manager_id).where(i.c.id == ib_id))
        return None if row is None else dict(row._mapping)

    def put_ib(self, ib: dict[str, Any]) -> None:
        self._upsert(self.t.ibs, {k: ib.get(k) for k in ("id", "quality", "agent_id", "manager_id")}, ["id"])

    # --- assignments --------------------------------------------------------------------------

    def _assignment_from(self, row: Any) -> Assignment:
        data = dict(row._mapping)
        data.pop("seq")
        data["trace"] = codec.loads(data["trace"])
        return codec.assignment_from(data)

    def assignment(self, client_id: str) -> Assignment | None:
        a = self.t.assignments
        row = self._one(sa.select(a).where(a.c.client_id == client_id, a.c.ended_at.is_(None)))
        return None if row is None else self._assignment_from(row)

    def assignments(self, client_id: str) -> list[Assignment]:
        a = self.t.assignments
        return [self._assignment_from(r) for r in self._all(sa.select(a).where(a.c.client_id == client_id).order_by(a.c.seq))]

    def start_assignment(self, assignment: Assignment) -> None:
        values = codec.assignment_to(assignment)
        values["trace"] = codec.dumps(values["trace"])
        a = self.t.assignments
        statement = self._prepared.get("start")
        if statement is None:  # the unique open-assignment index says no by inserting nothing
            statement = self._dialect_insert(a).on_conflict_do_nothing(
                index_elements=[a.c.client_id], index_where=a.c.ended_at.is_(None)
            ).returning(a.c.seq)  # (rowcount is not reliable with an implicit RETURNING)
            self._prepared["start"] = statement
        if self._run(statement, values).first() is None:
            raise ValueError(f"client {assignment.client_id!r} already has an open assignment")
        self._count(assignment.agent_id, +1)

    def _count(self, agent_id: str, change: int) -> None:
        o = self.t.open_counts
        statement = self._prepared.get("count")
        if statement is None:
            statement = self._dialect_insert(o).values(
                agent_id=sa.bindparam("agent"), open=sa.bindparam("first")
            ).on_conflict_do_update(index_elements=["agent_id"], set_={"open": o.c.open + sa.bindparam("change")})
            self._prepared["count"] = statement
        self._run(statement, {"agent": agent_id, "first": max(change, 0), "change": change})

    def end_assignment(self, client_id: str, at: datetime, reason: EndReason, ended_by: str) -> Assignment | None:
        a = self.t.assignments
        row = self._run(
            sa.update(a).where(a.c.client_id == client_id, a.c.ended_at.is_(None))
            .values(ended_at=at, end_reason=reason, ended_by=ended_by).returning(*a.c)
        ).first()
        if row is None:
            return None
        ended = self._assignment_from(row)
        self._count(ended.agent_id, -1)
        return ended

    def mark_contacted(self, client_id: str, at: datetime) -> None:
        a = self.t.assignments
        self._run(sa.update(a).where(a.c.client_id == client_id, a.c.ended_at.is_(None), a.c.contacted_at.is_(None)).values(contacted_at=at))

    def mark_breached(self, client_id: str, at: datetime) -> None:
        a = self.t.assignments
        self._run(sa.update(a).where(a.c.client_id == client_id, a.c.ended_at.is_(None), a.c.breached_at.is_(None)).values(breached_at=at))

    def sla_due(self, now: datetime) -> list[Assignment]:
        a = self.t.assignments
        query = (
            sa.select(a)
            .where(
                a.c.ended_at.is_(None), a.c.sla_due_at.is_not(None), a.c.sla_due_at <= now, a.c.breached_at.is_(None),
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
        o = self.t.open_counts
        return {agent: count for agent, count in self._all(sa.select(o.c.agent_id, o.c.open)) if count}

    def lock_routing(self) -> None:
        # SQLite: BEGIN IMMEDIATE already made this the only writer
        if self._conn is not None and self._dialect == "postgresql":
            lock = self.t.locks
            self._run(sa.select(lock.c.name).where(lock.c.name == "routing").with_for_update())

    def routing_state(self) -> RoutingState:
        self.lock_routing()  # whoever reads the rotation to change it holds the lock
        r = self.t.routing_state
        pointers: dict[str, str | None] = {}
        current: dict[str, dict[str, float]] = {}
        for desk, pointer, values in self._all(sa.select(r.c.desk, r.c.pointer, r.c.current)):
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
                self._upsert(self.t.routing_state, {"desk": desk, "pointer": pointer, "current": codec.dumps(values)}, ["desk"])
        self._local.routing_read = state

    # --- pools --------------------------------------------------------------------------------

    def _pool_from(self, row: Any) -> PoolEntry:
        data = dict(row._mapping)
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
        p = self.t.pool
        self._run(sa.delete(p).where(p.c.client_id == entry.client_id))
        next_seq = sa.select(sa.func.coalesce(sa.func.max(p.c.seq), 0) + 1).scalar_subquery()
        self._run(sa.insert(p).values(
            client_id=entry.client_id, seq=next_seq, desk=entry.desk, stage=entry.stage, reason=entry.reason,
            since=entry.since, event_id=entry.event_id, rule=entry.rule,
        ))

    def take_from_pool(self, client_id: str) -> PoolEntry | None:
        p = self.t.pool
        row = self._one(sa.delete(p).where(p.c.client_id == client_id).returning(*p.c))
        return None if row is None else self._pool_from(row)

    # --- scores, decisions, dead letters, queues ----------------------------------------------

    def put_scores(self, client_id: str, scores: Mapping[str, float], bands: Mapping[str, str | None]) -> None:
        self._upsert(self.t.scores, {"client_id": client_id, "scores": codec.dumps(dict(scores)), "bands": codec.dumps(dict(bands))}, ["client_id"])

    def scores(self, client_id: str) -> tuple[Mapping[str, float], Mapping[str, str | None]] | None:
        s = self.t.scores
        row = self._one(sa.select(s.c.scores, s.c.bands).where(s.c.client_id == client_id))
        return None if row is None else (codec.loads(row[0]), codec.loads(row[1]))

    def add_decision(self, decision: Decision) -> None:
        self._run(self._i_decision, {
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
        self._upsert(self.t.queue_items, {
            "client_id": item.client_id, "queue": item.queue, "trigger": item.trigger,
            "priority": item.priority, "actions": codec.dumps(list(item.actions)),
            "opened_at": item.opened_at, "updated_at": item.updated_at, "resolved_at": item.resolved_at,
            "desk": item.desk, "agent_id": item.agent_id,
        }, ["client_id", "queue"])

    def _queue_item(self, row: Any) -> QueueItem:
        data = dict(row._mapping)
        data["actions"] = tuple(codec.loads(data["actions"]))
        return QueueItem(**data)

    def client_queue_items(self, client_id: str) -> list[QueueItem]:
        return [self._queue_item(row) for row in self._run(self._q_client_items, {"cid": client_id})]

    def last_fired(self, client_id: str, trigger: str) -> datetime | None:
        row = self._run(self._q_fired, {"cid": client_id, "trigger": trigger}).first()
        return None if row is None else row[0]

    def put_fired(self, client_id: str, trigger: str, at: datetime) -> None:
        self._upsert(self.t.trigger_firings, {"client_id": client_id, "trigger": trigger, "at": at}, ["client_id", "trigger"])

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

    def add(self, notifications: Iterable[Notification]) -> None:
        store = self._store
        o = store.t.outbox
        rows = [
            {"id": n.id, "kind": n.kind, "recipient": n.recipient, "created_at": n.created_at,
             "notification": codec.dumps(codec.notification_to(n)), "attempts": 0,
             "next_attempt_at": n.created_at, "last_error": None, "delivered_at": None}
            for n in notifications
        ]
        if not rows:
            return
        statement = store._prepared.get("outbox")
        if statement is None:
            statement = store._dialect_insert(o).on_conflict_do_nothing(index_elements=["id"])
            store._prepared["outbox"] = statement
        last = store._one(sa.select(sa.func.coalesce(sa.func.max(o.c.seq), 0)))[0]  # indexed
        for offset, row in enumerate(rows, start=1):
            row["seq"] = last + offset
        store._run(statement, rows)

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
        return [self._entry(r) for r in store._all(query)]

    def delivered(self, id: str, at: datetime) -> None:
        o = self._store.t.outbox
        result = self._store._run(sa.update(o).where(o.c.id == id).values(attempts=o.c.attempts + 1, delivered_at=at))
        if result.rowcount == 0:
            raise UnknownNotification(id)

    def failed(self, id: str, at: datetime, error: str, next_attempt_at: datetime) -> None:
        o = self._store.t.outbox
        result = self._store._run(
            sa.update(o).where(o.c.id == id)
            .values(attempts=o.c.attempts + 1, last_error=error, next_attempt_at=next_attempt_at)
        )
        if result.rowcount == 0:
            raise UnknownNotification(id)

    def pending_count(self) -> int:
        o = self._store.t.outbox
        row = self._store._one(sa.select(sa.func.count()).where(o.c.delivered_at.is_(None)))
        return int(row[0])

    def entries(self) -> list[OutboxEntry]:
        o = self._store.t.outbox
        return [self._entry(r) for r in self._store._all(sa.select(o).order_by(o.c.seq))]


def _first_line(exc: sa.exc.DBAPIError) -> str:
    reason = exc.orig if exc.orig is not None else exc
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__


def _create_engine(url: str) -> Engine:
    engine = sa.create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
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

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        deferred = conn.get_execution_options().get("crm_deferred", False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def _prepare(store: SqlStore) -> None:
    """Create the tables in an empty database; refuse one at another schema version."""
    from crmcore.storage import migrate

    if migrate.check_version(store.engine, schema=store.schema, prefix=store.prefix) == "empty":
        migrate.upgrade(store.engine, schema=store.schema, prefix=store.prefix)

