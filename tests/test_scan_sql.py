"""Scans inside the database: activity windows and trigger conditions compiled to SQL over
SqlStore's tables give exactly what the Python path gives, on SQLite and PostgreSQL.

- windows: random histories, every window kind, shifted or not, at random clocks;
- conditions: the example broker's condition triggers (client fields, schema fields, the
  snapshot, IBs, scores and bands inline, windows) over clients built by the engine from
  random events, at random clocks: the clients SQL returns are those Python says hold;
- the scan itself: MemoryStore (Python) and each SQL store (in the database) fire the same
  triggers and leave the same queues.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Engine
from crmcore.cli import main
from crmcore.rules import ast
from crmcore.rules.ruleset import RuleSet
from crmcore.rules.sql import SqlUnsupported, compile_expression, stamp_of
from crmcore.rules.windows import WINDOW_SPECS, window_value
from crmcore.storage.conditions import StoreResolver, trigger_query
from crmcore.storage.sql import SqlStore
from tests.conftest import make_store
from tests.strategies import typed

EXAMPLES = Path(__file__).parent.parent / "examples" / "rules"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SQL_STORES = ["sqlite", "postgresql"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def examples() -> RuleSet:
    return crmcore.load_rules(EXAMPLES)


def sql_store(kind: str) -> SqlStore:
    store = make_store(kind)
    assert isinstance(store, SqlStore)
    return store


# --- histories ----------------------------------------------------------------------------

amounts = st.decimals(min_value=Decimal("-500"), max_value=Decimal("5000"), places=2, allow_nan=False)
positive = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2, allow_nan=False)
offsets = st.integers(min_value=-90 * 24, max_value=5 * 24).map(lambda h: timedelta(hours=h))


@st.composite
def activity(draw: st.DrawFn, client_id: str, n: int) -> list[dict[str, Any]]:
    """``n`` activity events of one client, in time order, after its registration at T0 - 100d."""
    kinds = st.sampled_from(["deposit", "withdrawal", "trade", "login", "email_opened", "email_clicked", "contact"])
    times = sorted(draw(st.lists(offsets, min_size=n, max_size=n)))
    events = []
    for k, offset in enumerate(times):
        kind = draw(kinds)
        event: dict[str, Any] = {"id": f"{client_id}-{k}", "type": kind, "client_id": client_id,
                                 "at": (T0 + offset).isoformat()}
        if kind == "deposit":
            event |= {"amount": str(draw(positive)), "status": draw(st.sampled_from(["completed", "failed"]))}
        elif kind == "withdrawal":
            event |= {"amount": str(draw(positive)), "status": draw(st.sampled_from(["requested", "completed", "failed"]))}
        elif kind == "trade":
            event |= {"volume": str(draw(positive)), "pnl": str(draw(amounts)), "revenue": "1.50"}
        elif kind == "contact":
            event |= {"agent_id": "a1", "channel": "call", "outcome": draw(st.sampled_from(["reached", "no_answer"]))}
        events.append(event)
    return events


def registration(client_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"reg-{client_id}", "type": "client_registered", "client_id": client_id,
            "at": (T0 - timedelta(days=100)).isoformat(), "country": "DE", **fields}


MINIMAL_RULES = "version: 1\nscores: {}\n"


def window_node(source: str, metric: str, length: timedelta, shift: timedelta | None) -> ast.Node:
    text = f"{source}.{metric}({int(length.total_seconds())}s"
    text += f", {int(shift.total_seconds())}s)" if shift is not None else ")"
    node = typed(text)
    assert isinstance(node, ast.Window), text
    return node


lengths = st.sampled_from([timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=30)])
shifts = st.one_of(st.none(), st.sampled_from([timedelta(0), timedelta(days=1), timedelta(days=30)]))


@pytest.mark.parametrize("kind", SQL_STORES)
@SETTINGS
@given(data=st.data())
def test_windows_in_sql_equal_windows_in_python(kind: str, data: st.DataObject) -> None:
    store = sql_store(kind)
    rules = crmcore.loads(MINIMAL_RULES)
    events = [registration("c1"), *data.draw(activity("c1", data.draw(st.integers(0, 25))))]
    summary = Engine(rules, store=store).handle_many(events)
    assert summary.handled == len(events)
    history = store.history("c1")
    c = store.t.clients
    for _ in range(4):
        source, metric = data.draw(st.sampled_from(sorted(WINDOW_SPECS)))
        length, shift = data.draw(lengths), data.draw(shifts)
        now = T0 + data.draw(offsets)
        node = window_node(source, metric, length, shift)
        stamp = stamp_of(now)
        expected = window_value(history, source, metric, stamp, length, shift or timedelta(0))
        resolver = StoreResolver(store.t, rules, stamp)
        sql = compile_expression(node, resolver, now=now)
        with store.engine.connect() as connection:
            got = connection.execute(resolver.rows().add_columns(sql).where(c.c.id == "c1")).one()[-1]
        assert got == expected, (source, metric, length, shift)


def test_windows_split_time_without_overlap_and_include_now() -> None:
    store = sql_store("sqlite")
    rules = crmcore.loads(MINIMAL_RULES)
    events = [registration("c1"),
              {"id": "d1", "type": "deposit", "client_id": "c1", "at": T0.isoformat(), "amount": "0.10"},
              {"id": "d2", "type": "deposit", "client_id": "c1", "at": (T0 - timedelta(days=30)).isoformat(), "amount": "0.20"},
              {"id": "d3", "type": "deposit", "client_id": "c1", "at": (T0 - timedelta(days=45)).isoformat(), "amount": "0.70"}]
    Engine(rules, store=store).handle_many(events)
    c = store.t.clients
    results = {}
    for shift in (None, timedelta(days=30)):
        for metric in ("count", "sum"):
            node = window_node("deposits", metric, timedelta(days=30), shift)
            resolver = StoreResolver(store.t, rules, stamp_of(T0))
            sql = compile_expression(node, resolver, now=T0)
            with store.engine.connect() as connection:
                results[(metric, shift)] = connection.execute(resolver.rows().add_columns(sql).where(c.c.id == "c1")).one()[-1]
    # (now - 30d, now] holds d1 only: d2 sits on the boundary, in the window before
    assert results[("count", None)] == 1 and results[("sum", None)] == 0.1
    assert results[("count", timedelta(days=30))] == 2
    assert results[("sum", timedelta(days=30))] == 0.9  # 0.2 + 0.7 summed exactly: not 0.8999999999999999


# --- conditions of the example broker -----------------------------------------------------

@st.composite
def broker_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"id": "ib-1", "type": "ib_updated", "at": (T0 - timedelta(days=120)).isoformat(),
         "ib": {"id": "IB1", "quality": draw(st.integers(0, 100))}},
    ]
    for n in range(draw(st.integers(1, 4))):
        cid = f"c{n}"
        fields: dict[str, Any] = {"country": draw(st.sampled_from(["DE", "GB", "FR", "NG", "BR"])),
                                  "language": draw(st.sampled_from(["de", "en", "fr"]))}
        if draw(st.booleans()):
            fields["ib_id"] = "IB1"
        if draw(st.booleans()):
            fields["vip"] = True
        events.append(registration(cid, **fields))
        stage = draw(st.integers(0, 3))
        base = T0 - timedelta(days=99)
        for k, kind in enumerate(["kyc_submitted", "kyc_approved", "deposit"][:stage]):
            extra = {"amount": "500.00"} if kind == "deposit" else {}
            events.append({"id": f"{cid}-s{k}", "type": kind, "client_id": cid,
                           "at": (base + timedelta(hours=k)).isoformat(), **extra})
        if draw(st.booleans()):
            events.append({"id": f"{cid}-snap", "type": "account_snapshot", "client_id": cid,
                           "at": (base + timedelta(days=1)).isoformat(),
                           "balance": str(draw(positive)), "equity": str(draw(positive)),
                           "margin_level": str(draw(st.decimals(min_value=50, max_value=400, places=1))),
                           "open_positions": draw(st.integers(0, 3))})
        events += draw(activity(cid, draw(st.integers(0, 12))))
    return events


def python_holds(engine: Engine, client_id: str, now: datetime) -> set[str]:
    return set(engine.explain(client_id, now)["triggers"])


@pytest.mark.parametrize("kind", SQL_STORES)
@SETTINGS
@given(events=broker_events(), offset=offsets)
def test_each_example_condition_in_sql_holds_for_the_clients_python_says(
    kind: str, examples: RuleSet, events: list[dict[str, Any]], offset: timedelta
) -> None:
    store = sql_store(kind)
    engine = Engine(examples, store=store)
    engine.handle_many(events)
    now = T0 + offset
    clients = [client["id"] for client in store.clients()]
    holds = {cid: python_holds(engine, cid, now) for cid in clients}
    for trigger in examples.condition_triggers:
        in_sql = {cid for _, cid in store.trigger_matches(examples, trigger, now)}
        in_python = {cid for cid in clients if trigger.name in holds[cid]}
        assert in_sql == in_python, trigger.name


@pytest.mark.parametrize("kind", SQL_STORES)
@SETTINGS
@given(events=broker_events(), offset=offsets)
def test_a_scan_in_the_database_decides_what_the_python_scan_decides(
    kind: str, examples: RuleSet, events: list[dict[str, Any]], offset: timedelta
) -> None:
    now = T0 + offset
    outcomes = []
    for store in (make_store("memory"), sql_store(kind)):
        engine = Engine(examples, store=store)
        engine.handle_many(events)
        decisions = engine.scan(now)
        fired = [(d.client_id, d.fired, d.triggers) for d in decisions if d.cause == "scan"]
        queues = sorted((i.client_id, i.queue, i.trigger, i.priority, i.resolved_at) for i in store.queue_items(open_only=False))
        outcomes.append((fired, queues))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("kind", SQL_STORES)
def test_timestamp_and_duration_schema_fields_are_read_from_the_json(kind: str) -> None:
    rules = crmcore.loads("""
version: 1
schema:
  client:
    anniversary: timestamp?
    patience: duration?
triggers:
  - {name: anniversary_call, when: 'days_since(client.anniversary) >= 365', queue: calls}
  - {name: impatient, when: 'client.patience < 2h', queue: calls2}
""")
    store = sql_store(kind)
    engine = Engine(rules, store=store)
    engine.handle_many([
        registration("c1", anniversary="2024-12-01T10:30:00.250000+02:00", patience=3600),
        registration("c2", anniversary=(T0 - timedelta(days=100)).isoformat(), patience=7200),
        registration("c3"),
    ])
    now = T0
    for trigger in rules.condition_triggers:
        in_sql = [cid for _, cid in store.trigger_matches(rules, trigger, now)]
        in_python = [cid for cid in ("c1", "c2", "c3") if trigger.name in python_holds(engine, cid, now)]
        assert in_sql == in_python == ["c1"], trigger.name


TAGGED = """version: 1
schema:
  client:
    tags: list<string>
triggers:
  - {name: tagged, when: '"vip" in client.tags', queue: vip}
"""


def test_a_condition_sql_cannot_express_stops_the_scan_naming_it() -> None:
    rules = crmcore.loads(TAGGED)
    store = sql_store("sqlite")
    engine = Engine(rules, store=store)
    engine.handle(registration("c1", tags=["vip"]))
    with pytest.raises(SqlUnsupported, match=r"client\.tags.*\[E400\]"):
        engine.scan(T0)  # never a silent fall-back to reading every client (SPEC 10)
    rules_file = Path(str(store.engine.url.database)).with_name("tagged.yaml")
    rules_file.write_text(TAGGED)
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", str(rules_file), "--db", str(store.engine.url), "--now", T0.isoformat()], out, err)
    assert code == 1 and "tagged.yaml:6:" in err.getvalue() and "client.tags" in err.getvalue()


def test_scan_candidates_are_the_matches_and_the_open_items_in_registration_order() -> None:
    rules = crmcore.loads("""
version: 1
triggers:
  - {name: keen, when: 'emails.clicks(7d) >= 2', queue: keen}
  - {name: quiet, when: 'logins.count(7d) == 0 and client.country == "FR"', queue: quiet}
""")
    store = sql_store("sqlite")
    engine = Engine(rules, store=store)
    clicks = [{"id": f"click-{cid}-{k}", "type": "email_clicked", "client_id": cid,
               "at": (T0 - timedelta(days=1, minutes=k)).isoformat()} for cid in ("c3", "c1") for k in range(2)]
    engine.handle_many([registration("c3"), registration("c2", country="FR"), registration("c1"), *clicks])
    # at T0 both clicked twice: keen holds for c3 and c1; quiet for c2
    assert store.scan_candidates(rules, T0) == ["c3", "c2", "c1"]
    assert [cid for _, cid in store.trigger_matches(rules, rules.condition_triggers[0], T0)] == ["c3", "c1"]
    engine.scan(T0)
    assert sorted(item.client_id for item in store.queue_items("keen")) == ["c1", "c3"]
    # ten days on, the clicks left the window: keen's open items must be visited to resolve them
    later = T0 + timedelta(days=10)
    assert store.trigger_matches(rules, rules.condition_triggers[0], later) == []
    assert store.scan_candidates(rules, later) == ["c3", "c2", "c1"]
    engine.scan(later)
    assert store.queue_items("keen") == []
    assert store.scan_candidates(rules, later) == ["c2"]


def test_windows_of_one_kind_share_one_pass_over_the_events() -> None:
    store = sql_store("sqlite")
    rules = crmcore.loads("""
version: 1
triggers:
  - {name: slowing, when: 'deposits.count(30d) < deposits.count(30d, 30d) and deposits.sum(7d) > 0 and trades.count(7d) == 0', queue: q}
""")
    (trigger,) = rules.condition_triggers
    query = str(trigger_query(store.t, rules, trigger, T0).compile(store.engine))  # type: ignore[union-attr]
    assert query.count("GROUP BY") == 2  # deposits (three windows) and trades (one)
    assert "crm_ibs" in query
