"""The Store protocol, on every store: what each operation keeps, and that a failed unit of
work leaves nothing behind (SPEC §10)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crmcore.events import ClientRegistered, parse_event
from crmcore.notify import Notification
from crmcore.routing.router import RoutingState
from crmcore.rules import model
from crmcore.state import new_client
from crmcore.storage import Assignment, DeadLetter, Decision, PoolEntry, QueueItem, Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def record(client_id: str, country: str) -> dict[str, Any]:
    """A client record as the engine keeps it."""
    event = parse_event({"id": f"r-{client_id}", "type": "client_registered", "client_id": client_id,
                         "at": T0.isoformat(), "country": country})
    assert isinstance(event, ClientRegistered)
    return new_client(event)


def assignment(client: str, agent: str, at: datetime = T0, **extra: Any) -> Assignment:
    return Assignment(client, agent, "sales", "registration", "r", "round_robin", at, f"e-{client}", "v1", **extra)


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a store holds, through the protocol."""
    return {
        "seen": [store.seen(e) for e in ("e1", "e2")],
        "history": [list(store.history(c)) for c in ("c1", "c2")],
        "events": [e.id for e in store.events()],
        "clients": list(store.clients()),
        "agents": dict(store.agents()),
        "desks": dict(store.desks()),
        "targets": store.targets(),
        "ib": store.ib("ib1"),
        "assignments": [store.assignments(c) for c in ("c1", "c2")],
        "open": {a: store.open_clients(a) for a in ("a1", "a2")},
        "counts": {k: v for k, v in store.open_counts().items() if v},
        "state": store.routing_state(),
        "pool": store.pool("sales"),
        "scores": [store.scores(c) for c in ("c1", "c2")],
        "decisions": store.decisions(),
        "dead": store.dead_letters(),
        "queue": store.queue_items(open_only=False),
        "outbox": store.outbox.pending_count(),
    }


def write_everything(store: Store) -> None:
    store.record_event(parse_event({"id": "e2", "type": "login", "client_id": "c1", "at": T0.isoformat()}))
    store.put_client(record("c2", "FR"))
    store.put_agent(model.Agent(id="a2", desk="sales"))
    store.put_desk(model.Desk(id="vip"))
    store.put_targets([model.Target(metric="ftd_count", per="agent", period="week", value=3)])
    store.put_ib({"id": "ib1", "quality": 1})
    store.end_assignment("c1", T0 + timedelta(hours=1), "handover", "e2")
    store.start_assignment(assignment("c2", "a2"))
    store.mark_contacted("c2", T0)
    store.put_routing_state(RoutingState({"sales": "a2"}, {}))
    store.add_to_pool(PoolEntry("c1", "sales", "registration", "pooled", T0, "e2", "r"))
    store.put_scores("c2", {"lead": 1}, {"lead": None})
    store.add_decision(Decision("e2", "c2", T0, "event", "v1"))
    store.add_dead_letter(DeadLetter("x", "{}", "bad"))
    store.put_queue_item(QueueItem("c2", "q", "t", 1, (), T0, "sales", "a2"))
    store.outbox.add([Notification.create(kind="assigned", recipient="a2", event_id="e2", created_at=T0)])


@pytest.fixture
def filled(store: Store) -> Store:
    with store.unit_of_work():
        store.record_event(parse_event({"id": "e1", "type": "client_registered", "client_id": "c1",
                                        "at": T0.isoformat(), "country": "DE"}))
        store.put_client(record("c1", "DE"))
        store.put_agent(model.Agent(id="a1", desk="sales"))
        store.put_desk(model.Desk(id="sales"))
        store.start_assignment(assignment("c1", "a1"))
        store.put_scores("c1", {"lead": 5}, {"lead": "cold"})
    return store


def test_a_failed_unit_of_work_leaves_every_table_as_it_was(filled: Store) -> None:
    before = snapshot(filled)
    with pytest.raises(RuntimeError), filled.unit_of_work():
        write_everything(filled)
        assert snapshot(filled) != before
        raise RuntimeError("crash")
    assert snapshot(filled) == before


def test_an_inner_unit_of_work_that_fails_undoes_only_its_own_writes(filled: Store) -> None:
    with filled.unit_of_work():
        filled.put_client(record("c2", "FR"))
        middle = snapshot(filled)
        with pytest.raises(RuntimeError), filled.unit_of_work():
            write_everything(filled)
            raise RuntimeError("crash")
        assert snapshot(filled) == middle
    assert filled.client("c2") == record("c2", "FR")


def test_a_committed_unit_of_work_keeps_everything(filled: Store) -> None:
    with filled.unit_of_work():
        write_everything(filled)
    assert filled.seen("e2") and [e.id for e in filled.events()] == ["e1", "e2"]
    assert [h.get("type") for h in filled.history("c1")] == ["client_registered", "login"]
    history = filled.assignments("c1")
    assert [(a.agent_id, a.end_reason, a.ended_by) for a in history] == [("a1", "handover", "e2")]
    assert filled.assignment("c1") is None and filled.assignment("c2").contacted_at == T0  # type: ignore[union-attr]
    assert filled.open_clients("a1") == [] and filled.open_clients("a2") == ["c2"]
    assert {k: v for k, v in filled.open_counts().items() if v} == {"a2": 1}
    assert filled.routing_state().pointers == {"sales": "a2"}
    assert [e.client_id for e in filled.pool("sales")] == ["c1"] and filled.pool("vip") == []
    assert filled.outbox.pending_count() == 1 and [d.event_id for d in filled.decisions("c2")] == ["e2"]


def test_targets_are_kept_as_given_and_replaced_whole(store: Store) -> None:
    month = model.Target(metric="net_deposits", per="desk", period="month", value=250000)
    scoped = model.Target(metric="ftd_count", per="agent", period="month", value=15.5, desk="sales-dach")
    assert store.targets() == ()
    with store.unit_of_work():
        store.put_targets([month, scoped])
    assert store.targets() == (month, scoped)
    with store.unit_of_work():
        store.put_targets([scoped])
    assert store.targets() == (scoped,)
    with store.unit_of_work():
        store.put_targets([])
    assert store.targets() == ()


def test_an_assignment_cannot_be_opened_twice(filled: Store) -> None:
    with pytest.raises(ValueError, match="already has an open assignment"), filled.unit_of_work():
        filled.start_assignment(assignment("c1", "a2"))
    assert filled.open_clients("a2") == []


def test_sla_due_lists_open_uncontacted_unbreached_assignments_oldest_first(store: Store) -> None:
    due = T0 + timedelta(hours=2)
    with store.unit_of_work():
        for client, sla in [("c1", due), ("c2", due - timedelta(hours=1)), ("c3", None), ("c4", due), ("c5", due)]:
            store.start_assignment(assignment(client, "a1", sla_due_at=sla))
        store.mark_contacted("c4", T0)
        store.mark_breached("c5", due)
    assert [a.client_id for a in store.sla_due(due + timedelta(seconds=1))] == ["c2", "c1"]
    assert [a.client_id for a in store.sla_due(due)] == ["c2"]  # at the deadline a contact is still in time


def test_take_from_pool_gives_the_entry_once(store: Store) -> None:
    entry = PoolEntry("c1", "sales", "registration", "pooled", T0, "e1", "r")
    with store.unit_of_work():
        store.add_to_pool(entry)
    with store.unit_of_work():
        assert store.take_from_pool("c1") == entry
        assert store.take_from_pool("c1") is None
    assert store.pool_entry("c1") is None


def test_queue_items_are_one_per_client_and_queue_highest_priority_first(store: Store) -> None:
    with store.unit_of_work():
        store.put_queue_item(QueueItem("c1", "q", "t", 5, (), T0, "sales", "a1"))
        store.put_queue_item(QueueItem("c2", "q", "t", 9, (), T0, "sales", "a1"))
        store.put_queue_item(QueueItem("c1", "q", "t2", 7, (), T0, "sales", "a1"))  # replaces c1's
        store.put_queue_item(QueueItem("c3", "q", "t", 8, (), T0, "sales", "a1", resolved_at=T0))
        store.put_queue_item(QueueItem("c1", "other", "t", 1, (), T0, "sales", "a1"))
    assert [(i.client_id, i.priority) for i in store.queue_items("q")] == [("c2", 9), ("c1", 7)]
    assert len(store.queue_items("q", open_only=False)) == 3 and len(store.queue_items()) == 3


def test_history_after_a_rollback_shows_what_was_kept(filled: Store) -> None:
    def login(event_id: str, minutes: int) -> Any:
        return parse_event({"id": event_id, "type": "login", "client_id": "c1",
                            "at": (T0 + timedelta(minutes=minutes)).isoformat()})

    assert [h.get("id") for h in filled.history("c1")] == ["e1"]
    with pytest.raises(RuntimeError), filled.unit_of_work():
        filled.record_event(login("gone", 1))
        assert [h.get("id") for h in filled.history("c1")] == ["e1", "gone"]
        raise RuntimeError("crash")
    with filled.unit_of_work():
        filled.record_event(login("kept", 2))
    assert [h.get("id") for h in filled.history("c1")] == ["e1", "kept"]
    assert filled.history("c1")[1].get("at") == T0 + timedelta(minutes=2)


def test_open_counts_follow_assignments_started_ended_and_rolled_back(store: Store) -> None:
    with store.unit_of_work():
        for n in range(6):
            store.start_assignment(assignment(f"c{n}", f"a{n % 2}"))
        store.end_assignment("c0", T0, "handover", "x")
        store.end_assignment("c2", T0, "handover", "x")
    with pytest.raises(RuntimeError), store.unit_of_work():
        store.end_assignment("c1", T0, "handover", "y")
        store.start_assignment(assignment("c9", "a0"))
        raise RuntimeError("crash")
    assert {k: v for k, v in store.open_counts().items() if v} == {"a0": 1, "a1": 3}
    assert store.open_clients("a0") == ["c4"] and store.open_clients("a1") == ["c1", "c3", "c5"]


def test_a_database_failure_is_raised_not_dead_lettered(tmp_path: Any) -> None:
    """The event is not at fault when the database fails: the engine raises StoreUnavailable,
    keeps nothing, and handling the event again later works."""
    import sqlalchemy as sa

    import crmcore
    from crmcore.storage import StoreUnavailable
    from crmcore.storage.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'crm.db'}")
    engine = crmcore.Engine(crmcore.loads("desks: [{id: d}]\n"), store=store)
    registration = {"id": "r1", "type": "client_registered", "client_id": "c1", "at": T0.isoformat(), "country": "DE"}
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE crm_decisions RENAME TO crm_decisions_away"))
    for batch in (1, 3):
        with pytest.raises(StoreUnavailable, match="crm_decisions"):
            engine.handle_many([registration], batch=batch)
    assert store.client("c1") is None and store.dead_letters() == []
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE crm_decisions_away RENAME TO crm_decisions"))
    assert engine.handle(registration).status == "handled"


def test_what_a_failed_savepoint_wrote_is_not_read_back_from_a_cache(store: Store) -> None:
    with store.unit_of_work():
        store.put_agent(model.Agent(id="x1", desk="d"))
    with store.unit_of_work():
        with pytest.raises(RuntimeError), store.unit_of_work():
            store.put_agent(model.Agent(id="x1", desk="d", active=False))
            store.record_event(parse_event({"id": "e9", "type": "deposit", "client_id": "c1",
                                            "at": T0.isoformat(), "amount": "999"}))
            assert store.agents()["x1"].active is False
            assert [e.get("amount") for e in store.history("c1")] == [Decimal("999")]
            raise RuntimeError("crash")
        assert store.agents()["x1"].active is True
        store.record_event(parse_event({"id": "e9", "type": "deposit", "client_id": "c1",
                                        "at": T0.isoformat(), "amount": "10"}))
        assert [e.get("amount") for e in store.history("c1")] == [Decimal("10")]
    assert store.agents()["x1"].active is True


def test_records_keep_durations_long_text_and_the_order_of_notifications(store: Store) -> None:
    long = "x" * 500
    client = record("c1", "DE") | {"language": long, "cool_off": timedelta(minutes=30), "tags": ["a", "b"]}
    notes = [Notification.create(kind="assigned", recipient=f"a{n}", event_id=long, created_at=T0, client_id="c1")
             for n in range(5)]
    with store.unit_of_work():
        store.put_client(client)
        store.outbox.add(notes[:3])
        store.outbox.add(notes[3:])
    assert store.client("c1") == client
    assert [e.notification.recipient for e in store.outbox.due(T0, 10)] == ["a0", "a1", "a2", "a3", "a4"]


def test_a_database_failure_in_a_scan_is_raised_too(tmp_path: Any) -> None:
    import sqlalchemy as sa

    import crmcore
    from crmcore.storage import StoreUnavailable
    from crmcore.storage.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'crm.db'}")
    rules = crmcore.loads("""
desks: [{id: d, sla: {first_contact: 1h}}]
agents: [{id: a1, desk: d}]
routing: {registration: [{name: all, when: true, assign: {desk: d}}]}
""")
    engine = crmcore.Engine(rules, store=store)
    engine.handle({"id": "r1", "type": "client_registered", "client_id": "c1", "at": T0.isoformat(), "country": "DE"})
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE crm_decisions RENAME TO crm_decisions_away"))
    with pytest.raises(StoreUnavailable):
        engine.scan(T0 + timedelta(hours=2))
    assert store.dead_letters() == [] and store.assignment("c1").breached_at is None  # type: ignore[union-attr]


def test_reads_in_a_unit_of_work_follow_its_writes_and_forget_a_failed_inner_one(store: Store) -> None:
    """A SQLite store keeps what a unit of work read until it ends (it is the only writer):
    histories and open queue items must still follow the unit's own writes and forget what a
    failed inner unit wrote."""
    def login(event_id: str, minutes: int) -> Any:
        return parse_event({"id": event_id, "type": "login", "client_id": "c1",
                            "at": (T0 + timedelta(minutes=minutes)).isoformat()})

    def ids() -> list[str]:
        return [e.get("id") for e in store.history("c1")]

    item = QueueItem("c1", "q", "t", 1, ("call",), T0, "sales", "a1")
    with store.unit_of_work():
        store.record_event(login("e1", 0))
        assert ids() == ["e1"] and store.client_queue_items("c1") == []
        store.record_event(login("e2", 1))
        store.put_queue_item(item)
        assert ids() == ["e1", "e2"] and store.client_queue_items("c1") == [item]
        with pytest.raises(RuntimeError), store.unit_of_work():
            store.record_event(login("e3", 2))
            store.put_queue_item(replace(item, resolved_at=T0, updated_at=T0))
            assert ids() == ["e1", "e2", "e3"] and store.client_queue_items("c1") == []
            raise RuntimeError("crash")
        assert ids() == ["e1", "e2"] and store.client_queue_items("c1") == [item]
        store.record_event(login("e3", 3))
        assert ids() == ["e1", "e2", "e3"]
    assert ids() == ["e1", "e2", "e3"] and store.client_queue_items("c1") == [item]
    assert store.history("c1")[2].get("at") == T0 + timedelta(minutes=3)


def test_open_counts_and_outbox_order_in_a_unit_of_work_forget_a_failed_inner_one(store: Store) -> None:
    def note(n: int) -> Notification:
        return Notification.create(kind="assigned", recipient=f"a{n}", event_id=f"e{n}", created_at=T0)

    def counts() -> dict[str, int]:  # (agents with none may be missing)
        return {agent: n for agent, n in store.open_counts().items() if n}

    with store.unit_of_work():
        store.start_assignment(assignment("c1", "a1"))
        store.outbox.add([note(1), note(2)])
        assert counts() == {"a1": 1}
        with pytest.raises(RuntimeError), store.unit_of_work():
            store.start_assignment(assignment("c2", "a1"))
            store.end_assignment("c1", T0, "handover", "x")
            store.start_assignment(assignment("c3", "a2"))
            store.outbox.add([note(3)])
            assert counts() == {"a1": 1, "a2": 1}
            raise RuntimeError("crash")
        assert counts() == {"a1": 1}
        store.end_assignment("c1", T0, "handover", "y")
        store.start_assignment(assignment("c4", "a2"))
        assert counts() == {"a2": 1}
        store.outbox.add([note(1), note(4)])  # note 1 is there already: kept once
        store.outbox.add([note(5)])
    assert counts() == {"a2": 1}
    assert [e.notification.recipient for e in store.outbox.entries()] == ["a1", "a2", "a4", "a5"]


def test_a_sql_history_handed_out_never_changes(tmp_path: Any) -> None:
    from crmcore.storage.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'crm.db'}")
    with store.unit_of_work():
        store.record_event(parse_event({"id": "e1", "type": "login", "client_id": "c1", "at": T0.isoformat()}))
        first = store.history("c1")
        store.record_event(parse_event({"id": "e2", "type": "login", "client_id": "c1", "at": T0.isoformat()}))
        assert [e.get("id") for e in first] == ["e1"]
        assert [e.get("id") for e in store.history("c1")] == ["e1", "e2"]


def test_sqlite_statements_still_reach_cursor_listeners(tmp_path: Any) -> None:
    """SQLite statements run on the driver's cursor (no SQLAlchemy execution): listeners of
    ``before_cursor_execute`` (statement logs, counters) still see each one."""
    import sqlalchemy as sa

    from crmcore.storage.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'crm.db'}")
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    with store.unit_of_work(), store.unit_of_work():
        store.put_client(record("c1", "DE"))
    assert store.client("c1") == record("c1", "DE")
    kinds = [statement.split()[0] for statement in seen]
    assert kinds == ["BEGIN", "SAVEPOINT", "UPDATE", "INSERT", "RELEASE", "BEGIN", "SELECT"]


# --- writes held back (PostgreSQL: _Deferred), and the same contract on every store ----------

def test_an_inner_unit_that_only_wrote_and_failed_leaves_the_outer_writes(filled: Store) -> None:
    """On PostgreSQL the inner unit's SAVEPOINT and writes are still held back when it fails:
    they are dropped, the outer unit's held writes are not."""
    with filled.unit_of_work():
        filled.put_scores("c1", {"lead": 6}, {"lead": "warm"})
        with pytest.raises(RuntimeError), filled.unit_of_work():
            filled.put_scores("c2", {"lead": 1}, {"lead": None})
            filled.add_decision(Decision("e1", "c1", T0, "event", "inner"))
            raise RuntimeError("crash")
        filled.add_decision(Decision("e1", "c1", T0, "event", "outer"))
        assert filled.scores("c2") is None
    assert filled.scores("c1") == ({"lead": 6}, {"lead": "warm"})
    assert [d.rule_version for d in filled.decisions()] == ["outer"]


def test_an_inner_unit_that_read_wrote_and_failed_is_rolled_back(filled: Store) -> None:
    """The inner unit's SAVEPOINT was sent with its read: its writes after that are undone."""
    with filled.unit_of_work():
        filled.put_scores("c1", {"lead": 6}, {"lead": "warm"})
        with pytest.raises(RuntimeError), filled.unit_of_work():
            client = filled.client("c1")
            assert client is not None
            filled.put_client({**client, "country": "FR"})  # its row was read: held back
            filled.mark_contacted("c1", T0)
            filled.put_scores("c1", {"lead": 9}, {"lead": "hot"})
            assert filled.scores("c1") == ({"lead": 9}, {"lead": "hot"})
            raise RuntimeError("crash")
        client = filled.client("c1")
        assert client is not None and client["country"] == "DE"
        filled.put_client({**client, "language": "de"})
    client = filled.client("c1")
    assert client is not None and (client["country"], client["language"]) == ("DE", "de")
    assert filled.scores("c1") == ({"lead": 6}, {"lead": "warm"})
    current = filled.assignment("c1")
    assert current is not None and current.contacted_at is None


@pytest.fixture
def refusing_schema(pg_engine: Any) -> Any:
    """A fresh PostgreSQL schema for a SqlStore, and a way to make its server refuse rows
    of one table (a trigger raising where a condition on NEW holds)."""
    import uuid

    schema = f"crm_held_{uuid.uuid4().hex[:10]}"
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def refuse(table: str, condition: str) -> None:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ '
                f"BEGIN IF {condition} THEN RAISE EXCEPTION 'a row of e2 refused'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f'CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".{table} '
                f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
            )

    yield schema, refuse
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("table", "refused"), [
    ("crm_decisions", "NEW.event_id = 'e2'"),  # sent with the next read (the outbox's highest seq)
    ("crm_outbox", "strpos(NEW.notification, '\"e2\"') > 0"),  # the last write: sent with RELEASE / before COMMIT
])
def test_a_held_write_that_fails_fails_only_its_own_event(
    pg_engine: Any, refusing_schema: Any, batch: int, table: str, refused: str,
) -> None:
    """A row the server refuses (a trigger raises for one event's decision, or for its
    notification) fails within its event's unit of work, which is dead-lettered whole; the
    events around it are kept."""
    import crmcore
    from crmcore.storage.sql import SqlStore
    from tests.test_sql_crash import check_atomic

    schema, refuse = refusing_schema
    store = SqlStore(pg_engine, schema=schema)
    refuse(table, refused)
    rules = crmcore.loads(
        "desks: [{id: sales}]\nagents: [{id: a1, desk: sales}]\n"
        "routing:\n  registration: [{name: all, assign: {desk: sales, strategy: round_robin}}]\n"
    )
    engine = crmcore.Engine(rules, store=store)
    events = [
        {"id": "e1", "type": "client_registered", "client_id": "c1", "at": T0.isoformat(), "country": "DE"},
        {"id": "e2", "type": "client_registered", "client_id": "c2", "at": T0.isoformat(), "country": "DE"},
        {"id": "e3", "type": "login", "client_id": "c1", "at": (T0 + timedelta(minutes=1)).isoformat()},
    ]
    summary = engine.handle_many(events, batch=batch)
    assert (summary.handled, summary.dead_lettered) == (2, 1)
    [letter] = store.dead_letters()
    assert letter.event_id == "e2" and "a row of e2 refused" in letter.reason
    assert [c["id"] for c in store.clients()] == ["c1"]
    assert store.scores("c2") is None and store.assignment("c2") is None
    assert store.open_counts() == {"a1": 1}
    assert [d.event_id for d in store.decisions()] == ["e1", "e3"]
    check_atomic(store)
    store.close()


@pytest.mark.postgres
def test_a_held_write_of_an_outer_unit_fails_the_outer_unit_not_an_inner_one(pg_engine: Any, refusing_schema: Any) -> None:
    """The outer unit's held writes are sent before an inner unit's SAVEPOINT: the server's
    own error comes out as the inner unit starts (not a StoreUnavailable about a savepoint
    that was never made), and the outer unit keeps nothing."""
    import sqlalchemy as sa

    from crmcore.storage import StoreUnavailable
    from crmcore.storage.sql import SqlStore

    schema, refuse = refusing_schema
    store = SqlStore(pg_engine, schema=schema)
    refuse("crm_decisions", "NEW.event_id = 'e2'")
    inner_ran = False
    with pytest.raises(sa.exc.DBAPIError, match="a row of e2 refused") as raised, store.unit_of_work():
        store.put_scores("c1", {"lead": 1}, {"lead": None})
        store.add_decision(Decision("e2", "c1", T0, "event", "v1"))
        with store.unit_of_work():
            inner_ran = True
    assert not isinstance(raised.value, StoreUnavailable) and not inner_ran
    assert store.scores("c1") is None and store.decisions() == []
    with store.unit_of_work(), store.unit_of_work():  # the store goes on (an inner unit, held back)
        store.put_scores("c1", {"lead": 2}, {"lead": None})
    assert store.scores("c1") == ({"lead": 2}, {"lead": None})
    store.close()


# --- constructing a SqlStore ------------------------------------------------------------------

def test_the_sql_store_and_the_store_errors_are_exported() -> None:
    import crmcore
    import crmcore.storage
    from crmcore.storage import SchemaVersionError, SqlStore, StoreUnavailable
    from crmcore.storage.migrate import SchemaVersionError as raised_by_migrations
    from crmcore.storage.sql import SqlStore as defined

    assert SqlStore is defined is crmcore.SqlStore
    assert SchemaVersionError is raised_by_migrations is crmcore.SchemaVersionError
    assert StoreUnavailable is crmcore.StoreUnavailable
    assert {"SqlStore", "SchemaVersionError", "StoreConfigError", "StoreUnavailable"} <= set(crmcore.storage.__all__) & set(crmcore.__all__)


@pytest.mark.parametrize("kind", ["text", "URL", "Engine"])
def test_a_sql_store_takes_a_url_as_text_a_url_object_or_an_engine(tmp_path: Any, kind: str) -> None:
    import sqlalchemy as sa

    from crmcore.storage import SqlStore

    text = f"sqlite:///{tmp_path / 'crm.db'}"
    url = {"text": text, "URL": sa.make_url(text), "Engine": sa.create_engine(text)}[kind]
    store = SqlStore(url)  # type: ignore[arg-type]
    with store.unit_of_work():
        store.put_client(record("c1", "DE"))
    assert store.client("c1") == record("c1", "DE")
    store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///{tmp}/crm.db"])
def test_a_schema_on_sqlite_is_refused_saying_to_use_a_prefix(tmp_path: Any, url: str) -> None:
    from crmcore.storage import SqlStore

    with pytest.raises(ValueError, match=r"schema 'crm': SQLite has no such schema .* table prefix instead"):
        SqlStore(url.format(tmp=tmp_path), schema="crm")


def test_a_schema_on_sqlite_may_be_a_database_the_host_attached(tmp_path: Any) -> None:
    """On SQLite a schema is an attached database: the tables go into that file."""
    import sqlalchemy as sa

    from crmcore.storage import SqlStore

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'host.db'}")
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.execute(f"ATTACH DATABASE '{tmp_path / 'crm.db'}' AS crm"))
    store = SqlStore(engine, schema="crm")
    with store.unit_of_work():
        store.put_client(record("c1", "DE"))
    assert store.client("c1") == record("c1", "DE")
    assert "crm_clients" in sa.inspect(engine).get_table_names(schema="crm")
    assert sa.inspect(engine).get_table_names() == []
    store.close()
