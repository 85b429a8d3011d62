"""The engine (SPEC §2, §5, §7, §10, §11), written once and run on every store."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import crmcore
from crmcore import Engine, InMemoryNotifier, PermissionDenied, RuleError
from crmcore.events import BadEvent
from crmcore.rules.ruleset import RuleSet
from crmcore.storage import MemoryStore, QueueItem, Store

RULES_TEXT = """
version: 1
lists:
  TIER1: [DE, GB, CH]
desks:
  - {id: sales, sla: {first_contact: 2h}, on_sla_breach: reassign}
  - {id: general, sla: {first_contact: 24h}}
  - {id: retention}
  - {id: lounge}
agents:
  - {id: a1, name: Anna, desk: sales, manager: m1, languages: [de, en], capacity: 3}
  - {id: a2, name: Ben, desk: sales, manager: m1, languages: [en], capacity: 3}
  - {id: a3, name: Carla, desk: sales, manager: m1, languages: [de], capacity: 3}
  - {id: m1, name: Max, desk: sales, role: manager}
  - {id: g1, desk: general, manager: m2}
  - {id: m2, desk: general, role: manager}
  - {id: r1, desk: retention, manager: m3, weight: 2}
  - {id: r2, desk: retention, manager: m3}
  - {id: m3, desk: retention, role: manager}
  - {id: l1, desk: lounge}
  - {id: l2, desk: lounge}
  - {id: m4, desk: lounge, role: manager}
  - {id: boss, desk: sales, role: admin}
scores:
  lead:
    rules:
      - {name: tier1, when: 'client.country in TIER1', points: 20}
      - {name: clicks, when: 'client.email_clicks >= 1', points: 'client.email_clicks * 5'}
      - {name: kyc, when: 'client.kyc_submitted_at != null', points: 30}
    bands: {hot: 50, warm: 20, cold: 0}
routing:
  registration:
    - {name: designated, when: 'client.manager_id != null', assign: {agent: client.manager_id}}
    - {name: lounge, when: 'client.country == "PL"', assign: {desk: lounge, strategy: pool}}
    - {name: nobody, when: 'client.country == "NO"', assign: {desk: general, strategy: round_robin,
       require: 'client.language in agent.languages'}}
    - name: german
      when: client.language == "de"
      assign: {desk: sales, strategy: round_robin, require: 'client.language in agent.languages'}
    - {name: english, when: 'client.language == "en"', assign: {desk: sales, strategy: round_robin}}
    - {name: general, when: 'client.country != "XX"', assign: {desk: general, strategy: least_loaded}}
  ftd:
    - {name: to_retention, when: true, assign: {desk: retention, strategy: weighted}}
triggers:
  - {name: keen, when: 'client.email_clicks >= 2', queue: keen}
"""
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return crmcore.loads(RULES_TEXT)


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


def reg(cid: str, when: datetime = T0, *, eid: str | None = None, **fields: Any) -> dict[str, Any]:
    fields.setdefault("country", "DE")
    return {"id": eid or f"reg-{cid}", "type": "client_registered", "client_id": cid,
            "at": when.isoformat(), **fields}


def ev(kind: str, cid: str, when: datetime, eid: str, **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": kind, "client_id": cid, "at": when.isoformat(), **fields}


def agent_update(eid: str, when: datetime, **agent: Any) -> dict[str, Any]:
    return {"id": eid, "type": "agent_updated", "at": when.isoformat(), "agent": agent}


def engine_for(rules: RuleSet, store: Store, notifier: InMemoryNotifier | None = None) -> Engine:
    return Engine(rules, store=store, notifier=notifier or InMemoryNotifier())


def sent(engine: Engine) -> list[tuple[str, str, str | None]]:
    notifier = engine.notifier
    assert isinstance(notifier, InMemoryNotifier)
    return [(n.kind, n.recipient, n.client_id) for n in notifier.sent]


def holder(engine: Engine, cid: str) -> str | None:
    current = engine.store.assignment(cid)
    return None if current is None else current.agent_id


# --- registration: scores, routing, notifications -------------------------------------------------


def test_registration_scores_routes_and_notifies_agent_and_manager(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    result = engine.handle(reg("c1", language="de", email="x@example.com"))
    assert result.status == "handled"
    assert dict(result.scores) == {"lead": 20} and dict(result.bands) == {"lead": "warm"}
    routing = result.routing
    assert routing is not None
    assert (routing.outcome, routing.rule, routing.desk, routing.agent, routing.strategy) == (
        "assigned", "german", "sales", "a1", "round_robin")
    assert [(s.rule, s.outcome) for s in routing.trace] == [
        ("designated", "no_match"), ("lounge", "no_match"), ("nobody", "no_match"), ("german", "assigned")]
    assert sorted(sent(engine)) == [("assigned", "a1", "c1"), ("assigned_to_team", "m1", "c1")]
    note = next(n for n in engine.notifier.sent if n.kind == "assigned")  # type: ignore[attr-defined]
    assert note.payload["client"]["country"] == "DE" and note.payload["client"]["email"] == "x@example.com"
    assert note.payload["rule"] == "german" and note.rule_version == rules.version
    assignment = store.assignment("c1")
    assert assignment is not None
    assert (assignment.agent_id, assignment.desk, assignment.rule, assignment.strategy) == (
        "a1", "sales", "german", "round_robin")
    assert assignment.rule_version == rules.version and assignment.trace == routing.trace
    assert assignment.sla_due_at == at(hours=2)
    client = store.client("c1")
    assert client is not None and (client["agent_id"], client["desk_id"]) == ("a1", "sales")
    decision = store.decisions("c1")[-1]
    assert decision.rule_version == rules.version and decision.routing == routing
    assert result.assignment == assignment and decision.assignment == assignment


def test_scores_are_recomputed_after_every_event_of_the_client(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", country="FR", language="fr"))
    assert dict(engine.handle(ev("email_clicked", "c1", at(1), "e1")).scores) == {"lead": 5}
    clicked = engine.handle(ev("email_clicked", "c1", at(1.5), "e1b"))
    assert dict(clicked.scores) == {"lead": 10} and clicked.triggers == ("keen",)
    result = engine.handle(ev("kyc_submitted", "c1", at(2), "e2"))
    assert dict(result.scores) == {"lead": 40} and result.bands["lead"] == "warm"
    assert result.routing is None and result.assignment is None  # a change of score does not re-route
    assert store.scores("c1") == ({"lead": 40}, {"lead": "warm"})
    assert engine.explain("c1")["breakdown"] == {"lead": {"clicks": 10, "kyc": 30}}
    assert engine.explain("c1")["triggers"] == ["keen"]


def test_round_robin_rotates_in_id_order_and_skips_agents_filtered_by_require(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    picks = [engine.handle(reg(f"e{i}", language="en")).routing.agent for i in range(4)]  # type: ignore[union-attr]
    assert picks == ["a1", "a2", "a3", "a1"]
    # German clients: a2 speaks no German and is skipped, keeping their place.
    german = [engine.handle(reg(f"d{i}", language="de")).routing.agent for i in range(2)]  # type: ignore[union-attr]
    assert german == ["a3", "a1"]
    trace = store.decisions("d0")[-1].routing.trace  # type: ignore[union-attr]
    assert trace[-1].rule == "german" and trace[-1].agent == "a3"


def test_require_false_everywhere_falls_through_and_the_trace_says_why(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    routing = engine.handle(reg("c1", country="NO", language="no")).routing
    assert routing is not None and (routing.rule, routing.agent) == ("general", "g1")
    nobody = routing.trace[2]
    assert (nobody.rule, nobody.outcome) == ("nobody", "no_eligible_agent")
    assert dict(nobody.excluded) == {"g1": "require_false", "m2": "not_an_agent"}


def test_assign_agent_expression_and_unknown_agent_falls_through(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    routing = engine.handle(reg("c1", language="en", manager_id="m1")).routing
    assert routing is not None and (routing.rule, routing.agent, routing.desk) == ("designated", "m1", None)
    assert store.assignment("c1").desk == "sales"  # type: ignore[union-attr]  # the agent's desk
    routing = engine.handle(reg("c2", language="en", manager_id="ghost")).routing
    assert routing is not None and routing.rule == "english"
    assert dict(routing.trace[0].excluded) == {"ghost": "unknown_agent"}


def test_capacity_is_never_exceeded_and_a_full_desk_falls_through(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    for i in range(9):
        assert engine.handle(reg(f"c{i}", language="en")).routing.desk == "sales"  # type: ignore[union-attr]
    assert dict(store.open_counts()) == {"a1": 3, "a2": 3, "a3": 3}
    routing = engine.handle(reg("c9", language="en")).routing
    assert routing is not None and (routing.rule, routing.agent) == ("general", "g1")
    assert dict(routing.trace[-2].excluded) == {
        "a1": "at_capacity", "a2": "at_capacity", "a3": "at_capacity", "m1": "not_an_agent", "boss": "not_an_agent"}


def test_nothing_satisfied_pools_the_client_and_tells_the_desk_managers(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(agent_update("off", at(-1), id="g1", active=False))
    result = engine.handle(reg("c1", country="NO", language="no"))
    routing = result.routing
    assert routing is not None and (routing.outcome, routing.rule, routing.desk) == ("unassigned", "general", "general")
    assert sent(engine) == [("unassigned", "m2", "c1")]
    entry = store.pool_entry("c1")
    assert entry is not None and (entry.desk, entry.reason, entry.rule) == ("general", "unassigned", "general")
    assert store.assignment("c1") is None


def test_unrouted_notifies_admins(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    routing = engine.handle(reg("c1", country="XX", language="xx")).routing
    assert routing is not None and routing.outcome == "unrouted"
    assert sent(engine) == [("unrouted", "boss", "c1")]  # every agent with role admin
    client = store.client("c1")
    assert client is not None and (client["agent_id"], client["desk_id"]) == (None, None)


# --- pools and claims -----------------------------------------------------------------------------


def test_pool_rule_tells_the_desk_agents_and_one_claim_wins(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    result = engine.handle(reg("c1", country="PL", language="pl"))
    assert result.routing is not None and result.routing.outcome == "pooled"
    assert sorted(sent(engine)) == [("pooled", "l1", "c1"), ("pooled", "l2", "c1")]
    assert [e.client_id for e in store.pool("lounge")] == ["c1"]
    with pytest.raises(PermissionDenied):
        engine.claim("a1", "c1", at=at(5))  # another desk's pool
    assert engine.claim("l2", "c1", at=at(5)) is True
    assert engine.claim("l1", "c1", at=at(6)) is False
    assert holder(engine, "c1") == "l2" and store.pool("lounge") == []
    assert ("assigned", "l2", "c1") in sent(engine)
    assignment = store.assignment("c1")
    assert assignment is not None and (assignment.strategy, assignment.assigned_at) == ("claim", at(5))
    assert store.client("c1")["agent_id"] == "l2"  # type: ignore[index]


def test_claims_from_threads_let_exactly_one_win(rules: RuleSet, store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engine = engine_for(rules, store)
    for i in range(20):
        engine.handle(reg(f"p{i}", country="PL", language="pl"))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda args: engine.claim(*args, at=at(9)),
                                [(agent, f"p{i}") for i in range(20) for agent in ("l1", "l2")]))
    assert sum(results) == 20
    assert sum(store.open_counts().values()) == 20


# --- hand-over on the first deposit ---------------------------------------------------------------


def test_first_deposit_hands_over_and_later_deposits_do_not(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    failed = engine.handle(ev("deposit", "c1", at(10), "d0", amount="50", status="failed"))
    assert failed.routing is None
    result = engine.handle(ev("deposit", "c1", at(20), "d1", amount="250.50"))
    routing = result.routing
    assert routing is not None and (routing.rule, routing.desk, routing.agent) == ("to_retention", "retention", "r1")
    assert result.decision is not None and result.decision.stage == "ftd"
    history = store.assignments("c1")
    assert [(a.agent_id, a.end_reason, a.ended_by) for a in history] == [("a1", "handover", "d1"), ("r1", None, None)]
    assert history[0].ended_at == at(20) and history[1].assigned_at == at(20)
    client = store.client("c1")
    assert client is not None and client["stage"] == "funded" and str(client["ftd_amount"]) == "250.50"
    assert engine.handle(ev("deposit", "c1", at(30), "d2", amount="99")).routing is None
    assert len(store.assignments("c1")) == 2


# --- idempotency, dead letters, atomicity -----------------------------------------------------------


def test_a_repeated_event_id_is_a_duplicate_and_changes_nothing(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    summary = engine.handle_many([
        reg("c1", language="en"), ev("email_clicked", "c1", at(1), "x"), ev("email_clicked", "c1", at(2), "x"),
        reg("c1", language="en"),
    ])
    assert (summary.handled, summary.duplicates, summary.dead_lettered) == (2, 2, 0)
    assert store.client("c1")["email_clicks"] == 1  # type: ignore[index]
    assert len(store.decisions("c1")) == 2 and len(sent(engine)) == 2


def test_bad_and_failing_events_are_dead_lettered_and_the_batch_goes_on(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    summary = engine.handle_many([
        reg("c1", language="en"),
        ev("deposit", "c1", at(1), "bad-amount", amount="abc"),
        ev("login", "ghost", at(2), "orphan"),
        reg("c1", eid="again", language="en"),
        ev("login", "c1", at(3), "unknown-field", mood="happy"),
        BadEvent(7, "{not json", "line 7: invalid JSON"),
        {"type": "login"},
        agent_update("no-desk", at(4), id="newbie"),
        ev("login", "c1", at(5), "fine"),
    ])
    assert (summary.handled, summary.duplicates, summary.dead_lettered) == (2, 0, 7)
    letters = store.dead_letters()
    assert [letter.event_id for letter in letters] == [
        "bad-amount", "orphan", "again", "unknown-field", None, None, "no-desk"]
    reasons = [letter.reason for letter in letters]
    assert "amount" in reasons[0]
    assert "unknown client 'ghost'" in reasons[1]
    assert "already registered" in reasons[2]
    assert "mood" in reasons[3]
    assert letters[4].line == 7
    assert "desk" in reasons[6]
    assert store.client("c1")["last_login_at"] == at(5)  # type: ignore[index]
    assert not store.seen("orphan") and store.client("ghost") is None
    assert "newbie" not in store.agents()


class _FailingStore(MemoryStore):
    """A real MemoryStore that fails when the decision is written: after the client record,
    the assignment, the rotation and the scores of the same event were written."""

    def add_decision(self, decision: Any) -> None:
        if decision.client_id == "boom":
            raise RuntimeError("disk full")
        super().add_decision(decision)


def test_an_event_failing_midway_leaves_nothing_behind(rules: RuleSet) -> None:
    store = _FailingStore()
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    before = (dict(store.open_counts()), store.routing_state(), store.outbox.pending_count(), len(store.decisions()))
    result = engine.handle(reg("boom", language="en"))
    assert result.status == "dead_lettered" and result.error == "RuntimeError: disk full"
    assert store.client("boom") is None and store.assignment("boom") is None and store.scores("boom") is None
    assert not store.seen("reg-boom") and list(store.history("boom")) == []
    assert (dict(store.open_counts()), store.routing_state(), store.outbox.pending_count(), len(store.decisions())) == before
    assert sent(engine) == [("assigned", "a1", "c1"), ("assigned_to_team", "m1", "c1")]
    # The rotation did not move: the next client gets the agent "boom" would have had.
    assert engine.handle(reg("c2", language="en")).routing.agent == "a2"  # type: ignore[union-attr]


# --- outbox -----------------------------------------------------------------------------------------


def test_a_failing_notifier_leaves_notifications_pending_until_delivered(rules: RuleSet, store: Store) -> None:
    notifier = InMemoryNotifier(fail_times=3)
    engine = engine_for(rules, store, notifier)
    engine.handle(reg("c1", language="en"))  # 2 notifications, both fail
    assert notifier.sent == [] and store.outbox.pending_count() == 2
    report = engine.deliver_pending(at(0.25))  # before the 30 s backoff: nothing is due
    assert (report.delivered, report.failed, report.pending) == (0, 0, 2)
    report = engine.deliver_pending(at(1))  # one more failure, then a success
    assert (report.delivered, report.failed, report.pending) == (1, 1, 1)
    report = engine.deliver_pending(at(5))
    assert (report.delivered, report.pending) == (1, 0)
    assert sorted(n.kind for n in notifier.sent) == ["assigned", "assigned_to_team"]
    assert {n.id for n in notifier.sent} == {n.id for d in store.decisions("c1") for n in d.notifications}


def test_notification_ids_are_stable_across_runs(rules: RuleSet) -> None:
    events = [reg("c1", language="en"), reg("c2", country="PL", language="pl")]
    runs = []
    for _ in range(2):
        engine = engine_for(rules, MemoryStore())
        engine.handle_many(events)
        runs.append([n.id for n in engine.notifier.sent])  # type: ignore[attr-defined]
    assert runs[0] == runs[1] and len(set(runs[0])) == 4


# --- SLA --------------------------------------------------------------------------------------------


def test_sla_alert_tells_the_manager_once(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", country="FR", language="fr"))  # general desk, SLA 24h, alert
    assert holder(engine, "c1") == "g1"
    assert engine.scan(at(hours=23)) == []
    decisions = engine.scan(at(hours=25))
    assert [(d.client_id, d.cause, d.sla_breach) for d in decisions] == [("c1", "sla_breach", "alert")]
    assert ("sla_breach", "m2", "c1") in sent(engine)
    assert engine.scan(at(hours=30)) == []  # reported once
    assert holder(engine, "c1") == "g1"
    assert store.assignment("c1").breached_at == at(hours=25)  # type: ignore[union-attr]


def test_a_contact_by_the_assigned_agent_in_time_is_no_breach(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))  # sales: 2h, reassign; a1
    engine.handle(reg("c2", language="en"))  # a2
    engine.handle(ev("contact", "c1", at(30), "k1", agent_id="a1", channel="call", outcome="reached"))
    engine.handle(ev("contact", "c2", at(30), "k2", agent_id="a1", channel="call", outcome="reached"))
    decisions = engine.scan(at(hours=3))
    assert [d.client_id for d in decisions] == ["c2"]  # a1 called c2, but c2 is a2's


def test_sla_reassign_routes_again_without_the_agent_who_breached(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    assert holder(engine, "c1") == "a1"
    assert engine.scan(at(hours=2)) == []  # due at exactly 2h: a contact then is still in time (SPEC 11)
    (decision,) = engine.scan(at(hours=2) + timedelta(seconds=1))
    assert decision.sla_breach == "reassign" and decision.routing is not None
    assert decision.routing.agent == "a2"
    assert holder(engine, "c1") == "a2"
    history = store.assignments("c1")
    assert [(a.agent_id, a.end_reason) for a in history] == [("a1", "sla_breach"), ("a2", None)]
    assert ("sla_breach", "m1", "c1") in sent(engine) and ("assigned", "a2", "c1") in sent(engine)
    assert history[1].sla_due_at == at(hours=4) + timedelta(seconds=1)  # a new assignment, a new clock


def test_sla_reassign_with_only_the_breacher_left_falls_through(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(agent_update("a2-away", at(-1), id="a2", away_until=at(days=2).isoformat()))
    engine.handle(agent_update("a3-off", at(-1), id="a3", active=False))
    engine.handle(reg("c1", language="en"))
    (decision,) = engine.scan(at(hours=3))
    routing = decision.routing
    assert routing is not None and (routing.rule, routing.agent) == ("general", "g1")
    english = next(step for step in routing.trace if step.rule == "english")
    assert dict(english.excluded) == {
        "a1": "breached_sla", "a2": "away", "a3": "inactive", "m1": "not_an_agent", "boss": "not_an_agent"}


# --- agents -----------------------------------------------------------------------------------------


def test_an_agent_made_inactive_has_their_clients_routed_again(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    for i in range(6):
        engine.handle(reg(f"c{i}", language="en"))
    assert store.open_clients("a2") == ["c1", "c4"]
    result = engine.handle(agent_update("a2-leaves", at(hours=1), id="a2", active=False))
    assert [d.client_id for d in result.decisions] == ["c1", "c4"]
    assert all(d.cause == "agent_inactive" for d in result.decisions)
    assert store.open_clients("a2") == []
    # The rotation goes on from a3: c1 to a1, then a2 is skipped and c4 goes to a3.
    assert [holder(engine, c) for c in ("c1", "c4")] == ["a1", "a3"]
    assert all(holder(engine, f"c{i}") != "a2" for i in range(6))
    assert [a.end_reason for a in store.assignments("c1")] == ["agent_inactive", None]
    assert ("assigned", "a1", "c1") in sent(engine)
    assert {k: v for k, v in store.open_counts().items() if v} == {"a1": 3, "a3": 3}
    # Sales is full without a2: the next English client falls through to general.
    assert engine.handle(reg("c6", at(hours=1), language="en")).routing.agent == "g1"  # type: ignore[union-attr]
    engine.handle(agent_update("a2-back", at(hours=2), id="a2", active=True))
    assert engine.handle(reg("c7", at(hours=2), language="en")).routing.agent == "a2"  # type: ignore[union-attr]


def test_agent_updated_creates_and_changes_agents(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(agent_update("new", at(), id="a4", desk="sales", languages=["en"], manager="m1"))
    engine.handle(agent_update("leave", at(), id="a1", away_until=at(days=1).isoformat()))
    picks = [engine.handle(reg(f"c{i}", at(i), language="en")).routing.agent for i in range(4)]  # type: ignore[union-attr]
    assert picks == ["a2", "a3", "a4", "a2"]
    assert store.agents()["a1"].languages == ["de", "en"]  # the rest of a1 is kept


def test_working_hours_exclude_agents_outside_them(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    for agent in ("a1", "a2"):
        engine.handle(agent_update(f"h-{agent}", at(), id=agent, hours="Mon-Fri 09:00-17:00 UTC"))
    saturday = at(days=5)
    assert engine.handle(reg("c1", saturday, language="en")).routing.agent == "a3"  # type: ignore[union-attr]
    engine.handle(agent_update("h-a3", saturday, id="a3", hours="Mon-Fri 09:00-17:00 UTC"))
    routing = engine.handle(reg("c2", saturday, language="en")).routing
    assert routing is not None and (routing.rule, routing.agent) == ("general", "g1")
    assert dict(routing.trace[-2].excluded) == {
        "a1": "outside_hours", "a2": "outside_hours", "a3": "outside_hours",
        "m1": "not_an_agent", "boss": "not_an_agent"}
    monday = at(days=7, hours=1)  # Monday 10:00 UTC
    assert engine.handle(reg("c3", monday, language="en")).routing.agent == "a1"  # type: ignore[union-attr]


# --- views and permissions --------------------------------------------------------------------------


@pytest.fixture
def crowd(rules: RuleSet, store: Store) -> Engine:
    engine = engine_for(rules, store)
    engine.handle_many([
        reg("s1", language="en"),  # a1, sales
        reg("s2", language="en"),  # a2, sales
        reg("f1", country="FR", language="fr"),  # g1, general
        reg("p1", country="PL", language="pl"),  # lounge pool
        reg("x1", country="XX", language="xx"),  # unrouted
    ])
    for cid, queue, priority, desk, agent in [
        ("s1", "at_risk", 10, "sales", "a1"), ("s1", "dormant", 50, "sales", "a1"),
        ("s2", "at_risk", 30, "sales", "a2"), ("f1", "at_risk", 99, "general", "g1"),
    ]:
        store.put_queue_item(QueueItem(cid, queue, f"t_{queue}", priority, ("Call",), at(1), desk, agent))
    return engine


def test_an_agent_sees_their_clients_and_their_desk_pool_only(crowd: Engine) -> None:
    view = crowd.view("a1")
    assert [c["id"] for c in view.clients()] == ["s1"]
    assert view.client("s1")["assignment"]["agent_id"] == "a1"
    for other in ("s2", "f1", "p1", "x1", "nope"):
        with pytest.raises(PermissionDenied):
            view.client(other)
    assert view.pool("sales") == []
    for desk in ("lounge", "general"):
        with pytest.raises(PermissionDenied):
            view.pool(desk)
    assert [(i.client_id, i.queue) for i in view.queue("at_risk")] == [("s1", "at_risk")]
    assert [(t.client_id, t.priority, [i.queue for i in t.items]) for t in view.tasks()] == [
        ("s1", 50, ["dormant", "at_risk"])]
    lounge = crowd.view("l1")
    assert [c["id"] for c in lounge.clients()] == ["p1"] and [e.client_id for e in lounge.pool("lounge")] == ["p1"]


def test_a_manager_sees_their_team_and_desk_and_an_admin_everything(crowd: Engine) -> None:
    manager = crowd.view("m1")
    assert [c["id"] for c in manager.clients()] == ["s1", "s2"]
    with pytest.raises(PermissionDenied):
        manager.client("f1")
    with pytest.raises(PermissionDenied):
        manager.queue("at_risk", desk="general")
    assert [i.client_id for i in manager.queue("at_risk")] == ["s2", "s1"]
    assert [t.client_id for t in manager.tasks()] == ["s1", "s2"]
    admin = crowd.view("boss")
    assert [c["id"] for c in admin.clients()] == ["s1", "s2", "f1", "p1", "x1"]
    assert [i.client_id for i in admin.queue("at_risk")] == ["f1", "s2", "s1"]
    assert [i.client_id for i in admin.queue("at_risk", desk="general")] == ["f1"]
    assert admin.client("x1")["agent_id"] is None
    with pytest.raises(PermissionDenied):
        crowd.view("stranger")


# --- reload and explain -----------------------------------------------------------------------------


def test_reload_is_atomic_and_decisions_record_the_version(rules: RuleSet, store: Store, tmp_path: Any) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("scores:\n  lead:\n    rules:\n      - {name: x, when: 'client.nope > 1', points: 1}\n")
    with pytest.raises(RuleError):
        engine.reload(broken)
    assert engine.rules is rules
    edited = crmcore.loads(RULES_TEXT.replace("points: 20}", "points: 25}").replace(
        "capacity: 3}", "capacity: 1}"))
    engine.reload(edited)
    result = engine.handle(reg("c2", language="en"))
    assert dict(result.scores) == {"lead": 25}
    assert result.decision is not None and result.decision.rule_version == edited.version != rules.version
    assert store.decisions("c1")[0].rule_version == rules.version
    assert store.agents()["a1"].capacity == 1  # an edited rule-file agent is written on reload


def test_explain_gives_breakdown_band_trace_and_version(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(agent_update("a1-away", at(-5), id="a1", away_until=at(days=1).isoformat()))
    engine.handle(reg("c1", language="de"))
    engine.handle(ev("email_clicked", "c1", at(1), "e1"))
    why = engine.explain("c1")
    assert why["scores"] == {"lead": 25} and why["bands"] == {"lead": "warm"}
    assert why["breakdown"] == {"lead": {"tier1": 20, "clicks": 5}}
    assert why["rule_version"] == rules.version and why["routing"]["rule_version"] == rules.version
    trace = why["routing"]["trace"]
    assert trace[3] == {"rule": "german", "outcome": "assigned", "agent": "a3"}
    excluded = {s["rule"]: s.get("excluded") for s in trace}
    assert excluded["german"] is None
    assert why["assignment"]["agent_id"] == "a3" and why["now"] == "2026-03-02T09:01:00Z"
    with pytest.raises(crmcore.EngineError):
        engine.explain("nobody")


def test_weighted_hand_over_shares_follow_weights(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    for i in range(30):
        engine.handle(reg(f"c{i}", country="FR", language="fr"))
        engine.handle(ev("deposit", f"c{i}", at(i + 1), f"d{i}", amount="100"))
    counts = Counter(holder(engine, f"c{i}") for i in range(30))
    assert counts == {"r1": 20, "r2": 10}


def test_client_updated_with_an_agent_is_a_manual_reassignment(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    result = engine.handle(ev("client_updated", "c1", at(10), "move", fields={"agent_id": "g1"}))
    assert result.status == "handled" and result.assignment is not None
    assert (result.assignment.agent_id, result.assignment.desk, result.assignment.strategy) == ("g1", "general", "manual")
    assert [(a.agent_id, a.end_reason) for a in store.assignments("c1")] == [("a1", "reassigned"), ("g1", None)]
    assert store.client("c1")["desk_id"] == "general"  # type: ignore[index]
    assert ("assigned", "g1", "c1") in sent(engine) and ("assigned_to_team", "m2", "c1") in sent(engine)
    assert {k: v for k, v in store.open_counts().items() if v} == {"g1": 1}
    nobody = engine.handle(ev("client_updated", "c1", at(20), "drop", fields={"agent_id": None}))
    assert nobody.status == "handled" and store.assignment("c1") is None
    bad = engine.handle_many([
        ev("client_updated", "c1", at(30), "ghost", fields={"agent_id": "ghost"}),
        ev("client_updated", "c1", at(30), "desk", fields={"desk_id": "sales"}),
    ])
    assert bad.dead_lettered == 2
    assert [d.reason for d in store.dead_letters()] == [
        "client_updated: unknown agent 'ghost'",
        "client_updated: desk_id follows the agent; set agent_id (or let routing decide)",
    ]


def test_a_reload_that_makes_an_agent_inactive_routes_their_clients_again(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))
    assert holder(engine, "c1") == "a1"
    edited = crmcore.loads(RULES_TEXT.replace("{id: a1, name: Anna,", "{id: a1, active: false, name: Anna,"))
    engine.reload(edited)
    assert not store.agents()["a1"].active and holder(engine, "c1") == "a2"
    (decision,) = [d for d in store.decisions("c1") if d.cause == "agent_inactive"]
    assert decision.at == T0 and decision.rule_version == edited.version  # the latest event's time


def test_a_reload_writes_only_what_the_file_changed(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(agent_update("off", at(), id="a1", active=False))
    edited = crmcore.loads(RULES_TEXT.replace("{id: a1, name: Anna, desk: sales, manager: m1, languages: [de, en]",
                                              "{id: a1, name: Anna, desk: sales, manager: m1, languages: [de, en, fr]"))
    engine.reload(edited)
    agent = store.agents()["a1"]
    assert agent.languages == ["de", "en", "fr"] and agent.active is False  # the event's change stays


def test_the_rule_sets_targets_are_stored_and_a_reload_replaces_them(rules: RuleSet, store: Store) -> None:
    month = "targets:\n  - {metric: ftd_count, per: agent, period: month, value: 20, desk: sales}\n"
    with_targets = crmcore.loads(RULES_TEXT + month)
    engine = engine_for(with_targets, store)
    assert store.targets() == with_targets.targets != ()
    weekly = crmcore.loads(RULES_TEXT + month.replace("month, value: 20", "week, value: 4"))
    engine.reload(weekly)
    assert [(t.period, t.value) for t in store.targets()] == [("week", 4)]
    engine.reload(rules)  # a rule set without targets leaves none
    assert store.targets() == ()


def test_a_late_contact_is_still_a_breach_but_only_an_alert(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))  # sales: 2h, reassign
    engine.handle(ev("contact", "c1", at(hours=3), "late", agent_id="a1", channel="call", outcome="reached"))
    (decision,) = engine.scan(at(hours=4))
    assert decision.sla_breach == "alert" and holder(engine, "c1") == "a1"
    assert ("sla_breach", "m1", "c1") in sent(engine)


def test_a_failing_sla_check_is_dead_lettered_and_the_scan_goes_on(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("c1", language="en"))  # sales: reassign, re-evaluates the client
    engine.handle(reg("c2", country="FR", language="fr"))  # general: alert
    for cid in ("c1", "c2"):  # the trigger `keen` holds for both: the scan must visit them
        engine.handle_many([ev("email_clicked", cid, at(k), f"click-{cid}-{k}") for k in (1, 2)])
    broken = crmcore.loads(RULES_TEXT.replace("points: 20}", "points: 'client.vip_level * 2'}").replace(
        "version: 1\n", "version: 1\nschema:\n  client:\n    vip_level: int\n"))
    engine.reload(broken)
    decisions = engine.scan(at(days=2))
    assert [d.client_id for d in decisions] == ["c2"]
    letters = engine.dead_letters()
    (letter,) = [d for d in letters if (d.event_id or "").startswith("sla:")]
    assert letter.event_id == "sla:c1:reg-c1" and "vip_level" in letter.reason
    # the trigger scan cannot evaluate these clients either: each is kept with its reason
    others = [d for d in letters if d is not letter]
    assert len(others) == 2 and all(d.reason.startswith("trigger scan at 2026-03-04T09:00:00Z: ") for d in others)
    assert holder(engine, "c1") == "a1" and store.assignment("c1").breached_at is None  # type: ignore[union-attr]


def test_a_client_failing_in_a_batched_scan_is_dead_lettered_alone_and_the_others_are_kept(
    rules: RuleSet, store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = engine_for(rules, store)
    for cid in ("c1", "c2", "c3"):  # the trigger `keen` holds for each: the scan visits them
        engine.handle_many([reg(cid, language="en"), *(ev("email_clicked", cid, at(k), f"click-{cid}-{k}") for k in (1, 2))])
    put = store.put_queue_item

    def failing(item: QueueItem) -> None:  # c2 fails after its firing and item were written
        put(item)
        if item.client_id == "c2":
            raise RuntimeError("c2 cannot be queued")

    monkeypatch.setattr(store, "put_queue_item", failing)
    now = at(hours=1)  # before any first-contact SLA is due
    decisions = engine.scan(now, batch=3)
    assert [d.client_id for d in decisions] == ["c1", "c3"]
    assert [letter.event_id for letter in engine.dead_letters()] == [f"scan:{now.isoformat()}:c2"]
    assert [store.last_fired(cid, "keen") for cid in ("c1", "c2", "c3")] == [now, at(2), now]
    assert {i.client_id: i.updated_at for i in store.queue_items("keen")} == {"c1": now, "c2": at(2), "c3": now}


def test_claim_without_a_time_uses_the_latest_event_not_the_clock(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle(reg("p1", country="PL", language="pl"))
    engine.handle(reg("c2", at(30), language="en"))
    assert engine.claim("l1", "p1") is True
    assert store.assignment("p1").assigned_at == at(30)  # type: ignore[union-attr]


def test_claim_and_delivery_take_a_time_as_iso_text_or_epoch_seconds(rules: RuleSet, store: Store) -> None:
    notifier = InMemoryNotifier(fail_times=2)
    engine = engine_for(rules, store, notifier)
    engine.handle(reg("p1", country="PL", language="pl"))  # pooled: its desk's agents told, both sends fail
    assert engine.deliver_pending((at(0) + timedelta(seconds=10)).timestamp()).pending == 2  # backoff: 30 s
    assert engine.deliver_pending("2026-03-02T09:01:00Z").delivered == 2
    assert engine.claim("l1", "p1", at="2026-03-02T09:20:00Z") is True
    assert store.assignment("p1").assigned_at == at(20)  # type: ignore[union-attr]


def test_deliver_pending_without_a_time_uses_the_latest_event(rules: RuleSet, store: Store) -> None:
    notifier = InMemoryNotifier(fail_times=2)
    engine = engine_for(rules, store, notifier)
    assert engine.deliver_pending().pending == 0  # nothing happened yet
    engine.handle(reg("c1", language="en"))
    engine.handle(reg("c2", at(5), language="en"))  # 5 minutes later: the first two are due again
    report = engine.deliver_pending()
    assert report.pending == 0 and len(notifier.sent) == 4


def test_result_and_explain_name_what_hosts_look_for(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    result = engine.handle(reg("c1", language="de"))
    assert (result.handled, result.duplicate, result.dead_lettered) == (True, False, False)
    assert (result.outcome, result.rule, result.desk, result.agent) == ("assigned", "german", "sales", "a1")
    assert result.assignment is not None and result.assignment.agent == "a1"
    assert result.breakdown == {"lead": {"tier1": 20}}
    assert result.decision is not None and result.decision.as_dict()["breakdown"] == {"lead": {"tier1": 20}}
    assert engine.handle(reg("c1", language="de")).duplicate
    why = engine.explain("c1")
    assert why["route"] == {"rule": "german", "desk": "sales", "agent": "a1"} and why["version"] == rules.version


def test_no_read_path_leaks_across_desks_or_teams(rules: RuleSet, store: Store) -> None:
    """Every viewer, every read: what comes back is exactly what `sees` allows."""
    engine = engine_for(rules, store)
    countries = [("DE", "de"), ("GB", "en"), ("FR", "fr"), ("PL", "pl"), ("XX", "xx"), ("NO", "no")]
    for i in range(30):
        country, language = countries[i % len(countries)]
        engine.handle(reg(f"c{i:02}", at(i), country=country, language=language))
    engine.handle(ev("deposit", "c01", at(40), "ftd1", amount="100"))  # hand-over to retention
    engine.handle(agent_update("g1-off", at(41), id="g1", active=False))  # general clients pooled
    for n, client in enumerate(c["id"] for c in store.clients()):
        current = store.assignment(client)
        desk = current.desk if current else (store.pool_entry(client).desk if store.pool_entry(client) else None)
        store.put_queue_item(QueueItem(client, "q", "t", n, (), at(50), desk, current.agent_id if current else None))
    everyone = [c["id"] for c in store.clients()]
    for viewer_id, agent in store.agents().items():
        view = engine.view(viewer_id)
        team = {viewer_id} | {a.id for a in store.agents().values() if a.manager == viewer_id}

        def allowed(client: str, agent: Any = agent, team: set[str] = team) -> bool:
            if agent.role == "admin":
                return True
            current = store.assignment(client)
            if current is not None:
                return current.agent_id in team
            entry = store.pool_entry(client)
            return entry is not None and entry.desk == agent.desk

        visible = {c for c in everyone if allowed(c)}
        assert {c["id"] for c in view.clients()} == visible, viewer_id
        for client in everyone:
            if client in visible:
                assert view.client(client)["id"] == client
            else:
                with pytest.raises(PermissionDenied):
                    view.client(client)
        for desk in store.desks():
            if agent.role == "admin" or desk == agent.desk:
                assert {e.client_id for e in view.pool(desk)} <= visible
            else:
                with pytest.raises(PermissionDenied):
                    view.pool(desk)
        queue = {item.client_id for item in view.queue("q")}
        tasks = {task.client_id for task in view.tasks()}
        if agent.role == "manager":  # their desk's queues, and their team's clients
            on_desk = {c for c in everyone if (store.assignment(c) and store.assignment(c).desk == agent.desk)  # type: ignore[union-attr]
                       or (store.pool_entry(c) and store.pool_entry(c).desk == agent.desk)}  # type: ignore[union-attr]
            assert queue == tasks == visible | on_desk, viewer_id
        elif agent.role == "agent":  # the items of their own clients (not of the desk's pool)
            own = {c for c in everyone if store.assignment(c) and store.assignment(c).agent_id == viewer_id}  # type: ignore[union-attr]
            assert queue == tasks == own, viewer_id
        else:
            assert queue == tasks == visible, viewer_id


def test_every_store_makes_the_same_decisions_on_the_example_events(store: Store) -> None:
    from pathlib import Path

    from crmcore.events import read_events

    root = Path(__file__).parents[1] / "examples"
    example_rules = crmcore.load_rules(root / "rules")
    reference = Engine(example_rules)
    reference.handle_many(read_events(root / "events" / "events.jsonl", example_rules))
    engine = Engine(example_rules, store=store)
    engine.handle_many(read_events(root / "events" / "events.jsonl", example_rules))
    assert [d.as_dict() for d in store.decisions()] == [d.as_dict() for d in reference.store.decisions()]
    assert len(store.decisions()) == 39  # one per client event and per client routed again
    for client in reference.store.clients():
        assert engine.explain(client["id"]) == reference.explain(client["id"])
        assert store.assignments(client["id"]) == reference.store.assignments(client["id"])


def test_batches_with_savepoints_decide_exactly_as_one_event_at_a_time(rules: RuleSet, store: Store) -> None:
    events = [
        reg("c1", language="en"), reg("c2", at(1), language="de"),
        ev("deposit", "c1", at(2), "bad-amount", amount="abc"),
        ev("login", "ghost", at(3), "orphan"),
        reg("c1", eid="reg-c1"),  # a duplicate inside the batch
        ev("deposit", "c2", at(4), "ftd", amount="100"),
        reg("c3", at(5), country="PL", language="pl"),
    ]
    one_by_one = Engine(rules, notifier=InMemoryNotifier())
    expected = one_by_one.handle_many(events)
    engine = engine_for(rules, store)
    summary = engine.handle_many(events, batch=4)
    assert (summary.handled, summary.duplicates, summary.dead_lettered) == (4, 1, 2)
    assert [r.status for r in summary.results] == [r.status for r in expected.results]
    assert [d.as_dict() for d in store.decisions()] == [d.as_dict() for d in one_by_one.store.decisions()]
    assert [letter.event_id for letter in store.dead_letters()] == ["bad-amount", "orphan"]
    assert sorted(sent(engine)) == sorted(sent(one_by_one))


def test_without_read_ahead_a_batch_takes_events_one_at_a_time_so_a_generator_sees_what_came_before(
    rules: RuleSet, store: Store,
) -> None:
    engine = engine_for(rules, store)

    def calls() -> Any:  # the caller is whoever holds the client when the call comes
        yield reg("c1", language="en")
        yield ev("contact", "c1", at(10), "k1", agent_id=holder(engine, "c1"), channel="call", outcome="reached")

    summary = engine.handle_many(calls(), batch=5, read_ahead=False)
    assert (summary.handled, summary.dead_lettered) == (2, 0)
    assert store.assignment("c1").contacted_at == at(10)  # type: ignore[union-attr]


def test_a_batch_reads_its_events_before_its_transaction_begins(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    seen: list[datetime | None] = []

    def events() -> Any:  # the host's source is never waited on while a batch holds its locks
        for n in range(4):
            seen.append(store.latest_event_at())
            yield reg(f"c{n}", at(n), language="en")

    engine.handle_many(events(), batch=2)
    assert seen == [None, None, at(1), at(1)]  # each batch read whole before it began


def test_contact_status_follow_ups_due_and_not_contacted_since(rules: RuleSet, store: Store) -> None:
    engine = engine_for(rules, store)
    engine.handle_many([
        reg("c1", language="en"), reg("c2", at(1), language="en"), reg("c3", at(2), language="en"),  # a1, a2, a3
        ev("contact", "c1", at(10), "k1", agent_id="a1", channel="call", outcome="no_answer"),
        ev("contact", "c1", at(20), "k2", agent_id="a1", channel="call", outcome="callback",
           callback_at=at(hours=5).isoformat(), note="after lunch"),
        ev("contact", "c2", at(30), "k3", agent_id="a2", channel="email", outcome="reached"),
    ])
    admin = engine.view("boss")
    status = admin.status("c1", at(hours=6))
    assert (status["status"], status["last_contact_at"], status["next_follow_up_at"]) == ("callback", at(20), at(hours=5))
    assert status["follow_up_due"] is True and status["hours_since_contact"] == pytest.approx(6 - 20 / 60)
    assert [(c["outcome"], c["note"]) for c in status["contacts"]] == [("no_answer", None), ("callback", "after lunch")]
    assert [c["id"] for c in admin.follow_ups_due(at(hours=6))] == ["c1"]
    assert admin.follow_ups_due(at(hours=4)) == []
    assert [c["id"] for c in admin.not_contacted_since(at(25))] == ["c3", "c1"]  # never, then oldest
    # the same questions, as a1 sees them: their client only
    a1 = engine.view("a1")
    assert [c["id"] for c in a1.not_contacted_since(at(25))] == ["c1"]
    with pytest.raises(PermissionDenied):
        a1.status("c2", at(hours=6))


def test_a_plain_callable_is_a_notifier_and_anything_else_is_refused(rules: RuleSet) -> None:
    got: list[Any] = []
    engine = Engine(rules, notifier=got.append)
    engine.handle(reg("c1", language="de"))  # assigned to a1: a1 and their manager are told
    assert sorted((n.kind, n.recipient) for n in got) == [("assigned", "a1"), ("assigned_to_team", "m1")]
    with pytest.raises(TypeError, match="no send"):
        Engine(rules, notifier=object())  # type: ignore[arg-type]


def test_kyc_rejected_after_the_ftd_sets_the_stage_back_without_a_second_hand_over(rules: RuleSet) -> None:
    engine = Engine(rules)
    engine.handle(reg("c1", language="de"))
    engine.handle({"id": "d1", "type": "deposit", "client_id": "c1", "at": at(10).isoformat(), "amount": "100"})
    engine.handle({"id": "k1", "type": "kyc_rejected", "client_id": "c1", "at": at(20).isoformat()})
    client = engine.store.client("c1")
    assert client is not None and (client["stage"], client["ftd_at"]) == ("registered", at(10))
    again = engine.handle({"id": "d2", "type": "deposit", "client_id": "c1", "at": at(30).isoformat(), "amount": "50"})
    assert again.routing is None  # the FTD was d1: no second hand-over
    assert [a.desk for a in engine.store.assignments("c1")] == ["sales", "retention"]
