"""Triggers through the engine (SPEC §2 "Trigger semantics", §11 "Triggers"), on every store:
the SPEC's own example rules (`dormant_30d`, `failed_withdrawal`, `kyc_nudge`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import crmcore
from crmcore import Engine, InMemoryNotifier
from crmcore.rules.ruleset import RuleSet
from crmcore.storage import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def ev(kind: str, eid: str, when: datetime, cid: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": kind, "client_id": cid, "at": when.isoformat(), **fields}


def funded(rules: RuleSet, store: Store) -> Engine:
    """c1: German, registered (a2), funded at once (handed over to r1), traded, balance 5,000."""
    engine = Engine(rules, store=store, notifier=InMemoryNotifier())
    engine.handle_many([
        ev("client_registered", "reg", at(), country="DE", language="de"),
        ev("deposit", "ftd", at(hours=1), amount="5000"),
        ev("trade", "t1", at(hours=2), volume=1, pnl=10),
        ev("account_snapshot", "s1", at(hours=3), balance=5000, equity=5000, open_positions=0),
    ])
    return engine


def sent(engine: Engine, kind: str = "trigger") -> list[tuple[str, str]]:
    notifier = engine.notifier
    assert isinstance(notifier, InMemoryNotifier)
    return [(n.payload["trigger"], n.recipient) for n in notifier.sent if n.kind == kind]


def test_an_on_trigger_fires_on_its_event_with_queue_priority_and_recipients(spec_rules: RuleSet, store: Store) -> None:
    engine = funded(spec_rules, store)
    result = engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    assert result.decision is not None and result.decision.fired == ("failed_withdrawal",)
    assert result.fired == ("failed_withdrawal",) and "failed_withdrawal" in result.triggers  # SPEC 1: handle gives the triggers
    (item,) = store.queue_items("at_risk")
    assert (item.client_id, item.trigger, item.priority, item.agent_id, item.desk) == (
        "c1", "failed_withdrawal", 1000, "r1", "retention")
    assert sorted(sent(engine)) == [("failed_withdrawal", "m3"), ("failed_withdrawal", "r1")]
    ok = engine.handle(ev("withdrawal", "w2", at(days=2), amount="100", status="completed"))
    assert ok.decision is not None and ok.decision.fired == ()
    again = engine.handle(ev("withdrawal", "w3", at(days=3), amount="100", status="failed"))
    assert again.decision is not None and again.decision.fired == ("failed_withdrawal",)  # no cooldown
    assert len(store.queue_items("at_risk")) == 1  # one item per client per queue
    assert store.queue_items("at_risk")[0].opened_at == at(days=1)


def test_a_condition_trigger_fires_in_a_scan_respects_its_cooldown_and_resolves(spec_rules: RuleSet, store: Store) -> None:
    engine = funded(spec_rules, store)
    assert [d.fired for d in engine.scan(at(days=29))] == []
    (first,) = engine.scan(at(days=31))  # no trade for 30 days, balance 5,000
    assert (first.client_id, first.cause, first.fired) == ("c1", "scan", ("dormant_30d",))
    (item,) = store.queue_items("dormant")
    assert (item.priority, item.actions) == (5000, ("Call the client", "Offer a trading review"))
    assert sent(engine) == [("dormant_30d", "r1")]
    assert engine.scan(at(days=40)) == []  # within the 14-day cooldown: nothing
    assert engine.scan(at(days=31 + 14)) != []  # the cooldown is [t, t + 14d)
    assert len(sent(engine)) == 2
    traded = engine.handle(ev("trade", "t2", at(days=46), volume=1, pnl=5))
    assert traded.decision is not None and traded.decision.fired == ()
    assert store.queue_items("dormant") == []  # resolved by itself
    (resolved,) = store.queue_items("dormant", open_only=False)
    assert resolved.resolved_at == at(days=46)


def test_a_nudge_notifies_the_agent_and_the_client(spec_rules: RuleSet, store: Store) -> None:
    engine = Engine(spec_rules, store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="FR", language="fr"))
    assert engine.scan(at(hours=23)) == []
    first = engine.scan(at(hours=25))  # also the first-contact SLA of sales-general (24h, alert)
    assert [(d.cause, d.fired) for d in first] == [("sla_breach", ()), ("scan", ("kyc_nudge",))]
    assert sorted(sent(engine)) == [("kyc_nudge", "a2"), ("kyc_nudge", "client:c1")]  # everyone_else: a2
    assert store.queue_items() == []  # no queue: notifications only
    assert engine.scan(at(hours=72)) == []  # 48h cooldown
    assert [d.fired for d in engine.scan(at(hours=73))] == [("kyc_nudge",)]


def test_a_desk_recipient_is_every_manager_of_the_clients_desk(store: Store) -> None:
    rules = crmcore.loads("""
desks: [{id: d}, {id: e}]
agents:
  - {id: a1, desk: d, manager: m1}
  - {id: m1, desk: d, role: manager}
  - {id: m2, desk: d, role: manager}
  - {id: m9, desk: e, role: manager}
routing:
  registration: [{name: all, when: true, assign: {desk: d}}]
triggers:
  - {name: big, on: deposit, when: 'event.amount >= 1000', notify: [desk, agent, manager]}
""")
    engine = Engine(rules, store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="DE"))
    assert engine.handle(ev("deposit", "d1", at(1), amount="999")).decision.fired == ()  # type: ignore[union-attr]
    engine.handle(ev("deposit", "d2", at(2), amount="1000"))
    assert sorted(sent(engine)) == [("big", "a1"), ("big", "m1"), ("big", "m2")]


def test_identical_firings_on_every_store(spec_rules: RuleSet, store: Store) -> None:
    reference = funded(spec_rules, crmcore.MemoryStore())
    engine = funded(spec_rules, store)
    for e in (reference, engine):
        e.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
        e.scan(at(days=31))
    assert [d.as_dict() for d in store.decisions()] == [d.as_dict() for d in reference.store.decisions()]
    assert store.queue_items(open_only=False) == reference.store.queue_items(open_only=False)


@pytest.mark.parametrize("kind", ["failed_withdrawal"])
def test_notification_ids_differ_per_trigger(spec_rules: RuleSet, kind: str) -> None:
    engine = funded(spec_rules, crmcore.MemoryStore())
    engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    ids = [n.id for n in engine.notifier.sent]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids))


def test_an_on_trigger_of_the_ftd_sees_the_client_after_the_hand_over(store: Store) -> None:
    rules = crmcore.loads("""
desks: [{id: sales}, {id: retention}]
agents:
  - {id: s1, desk: sales}
  - {id: r1, desk: retention}
routing:
  registration: [{name: all, when: true, assign: {desk: sales}}]
  ftd: [{name: keep, when: true, assign: {desk: retention}}]
triggers:
  - {name: welcome, on: deposit, when: 'client.desk_id == "retention"', queue: welcome, notify: [agent]}
""")
    engine = Engine(rules, store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="DE"))
    result = engine.handle(ev("deposit", "ftd", at(1), amount="100"))
    assert result.decision is not None and result.decision.fired == ("welcome",)
    assert sent(engine) == [("welcome", "r1")]
    (item,) = store.queue_items("welcome")
    assert (item.agent_id, item.desk) == ("r1", "retention")


def test_a_queue_shows_each_item_with_the_client_summary_and_its_age(spec_rules: RuleSet, store: Store) -> None:
    engine = funded(spec_rules, store)
    engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    (entry,) = engine.view("m3").queue("at_risk", now=at(days=2))
    assert (entry.client_id, entry.trigger, entry.priority) == ("c1", "failed_withdrawal", 1000)
    assert entry.age == timedelta(days=1)
    assert (entry.client["country"], entry.client["stage"], entry.client["agent_id"]) == ("DE", "funded", "r1")
    (latest,) = engine.view("r1").queue("at_risk")  # age at the latest event: the withdrawal itself
    assert latest.age == timedelta(0) and latest.as_dict()["age_hours"] == 0
    assert engine.view("a1").queue("at_risk") == []  # another desk's agent sees nothing of it


def test_engine_queue_and_tasks_and_times_as_iso_text_or_epoch_seconds(spec_rules: RuleSet, store: Store) -> None:
    # SPEC 7 queue(name, desk, viewer) and SPEC 2 tasks(agent), on the engine as on a view
    engine = funded(spec_rules, store)
    engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    (entry,) = engine.queue("at_risk", "retention", "r1", now=at(days=2))
    assert (entry.client_id, entry.trigger, entry.age) == ("c1", "failed_withdrawal", timedelta(days=1))
    assert [e.client_id for e in engine.queue("at_risk")] == ["c1"]  # no viewer: the host sees all
    assert engine.queue("at_risk", viewer="a1") == []  # a sales agent: not their client
    with pytest.raises(crmcore.PermissionDenied):
        engine.queue("at_risk", "retention", "a1")
    assert [(t.client_id, t.priority) for t in engine.tasks("r1")] == [("c1", 1000)]
    # times as an aware datetime, ISO 8601 text or epoch seconds mean the same
    iso = "2026-04-15T09:00:00Z"
    epoch = datetime(2026, 4, 15, 9, tzinfo=UTC).timestamp()
    engine.handle(ev("contact", "k1", at(days=3), agent_id="r1", channel="call", outcome="callback",
                     callback_at="2026-03-10T09:00:00Z"))
    view = engine.view("r1")
    assert view.status("c1", "2026-03-09T09:00:00Z")["follow_up_due"] is False
    assert view.status("c1", "2026-03-10T09:00:00Z")["follow_up_due"] is True
    assert view.status("c1", datetime(2026, 3, 10, 9, tzinfo=UTC).timestamp())["follow_up_due"] is True
    assert [c["id"] for c in view.follow_ups_due("2026-03-10T09:00:00Z")] == ["c1"]
    assert engine.explain("c1", iso) == engine.explain("c1", epoch) == engine.explain("c1", at(days=44))
    fired = [name for decision in engine.scan(iso) for name in decision.fired]
    assert fired == ["dormant_30d"]
    with pytest.raises(ValueError, match="timezone-aware"):
        engine.scan(datetime(2026, 4, 15))
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        engine.scan("tomorrow")


SHARED_QUEUE = """
desks: [{id: sales}, {id: retention}]
agents:
  - {id: a1, desk: sales, manager: m1}
  - {id: m1, desk: sales, role: manager}
  - {id: r1, desk: retention, manager: m2}
  - {id: m2, desk: retention, role: manager}
routing:
  registration: [{name: all, when: true, assign: {desk: sales}}]
  ftd: [{name: keep, when: true, assign: {desk: retention}}]
triggers:
  - {name: no_login, when: 'client.stage == "funded" and days_since(coalesce(client.last_login_at, client.ftd_at)) >= 10',
     queue: at_risk, priority: 10, cooldown: 30d}
  - {name: no_trade, when: 'client.stage == "funded" and days_since(coalesce(client.last_trade_at, client.ftd_at)) >= 10',
     queue: at_risk, priority: 5, cooldown: 30d}
  - {name: failed_withdrawal, on: withdrawal_failed, when: true, queue: at_risk, priority: 1000}
"""


def shared_queue_client(store: Store) -> Engine:
    engine = Engine(crmcore.loads(SHARED_QUEUE), store=store, notifier=InMemoryNotifier())
    engine.handle_many([
        ev("client_registered", "reg", at(), country="DE"),
        ev("deposit", "ftd", at(hours=1), amount="500"),
    ])
    return engine


def test_two_triggers_of_one_queue_keep_the_more_urgent_reason(store: Store) -> None:
    engine = shared_queue_client(store)
    (fired,) = engine.scan(at(days=11))
    assert fired.fired == ("no_login", "no_trade")  # both hold: one item, the higher priority
    (item,) = store.queue_items("at_risk")
    assert (item.trigger, item.priority) == ("no_login", 10)


def test_a_queue_item_stays_open_while_another_trigger_of_its_queue_holds(store: Store) -> None:
    engine = shared_queue_client(store)
    engine.scan(at(days=11))  # both hold: the item is no_login's (10); both now in their cooldowns
    engine.handle(ev("login", "l1", at(days=12)))  # no_login stops; no_trade (30-day cooldown too) still holds
    (item,) = store.queue_items("at_risk")
    assert (item.trigger, item.priority, item.resolved_at) == ("no_trade", 5, None)  # the reason that stands now
    assert item.opened_at == at(days=11)
    engine.handle(ev("trade", "t1", at(days=13), volume=1, pnl=1))  # now neither holds
    assert store.queue_items("at_risk") == []


def test_an_on_trigger_reason_is_not_taken_over_by_a_lesser_condition(store: Store) -> None:
    engine = shared_queue_client(store)
    engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    engine.scan(at(days=11))  # no_login and no_trade fire into the same queue, with lower priorities
    (item,) = store.queue_items("at_risk")
    assert (item.trigger, item.priority) == ("failed_withdrawal", 1000)
    engine.handle_many([ev("trade", "t1", at(days=12), volume=1, pnl=1), ev("login", "l1", at(days=12))])
    assert [i.trigger for i in store.queue_items("at_risk")] == ["failed_withdrawal"]  # still to handle


def test_open_items_follow_the_client_through_the_hand_over(store: Store) -> None:
    engine = Engine(crmcore.loads(SHARED_QUEUE), store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="DE"))
    engine.handle(ev("withdrawal", "w1", at(hours=1), amount="100", status="failed"))
    assert [(i.desk, i.agent_id) for i in store.queue_items("at_risk")] == [("sales", "a1")]
    engine.handle(ev("deposit", "ftd", at(hours=2), amount="500"))  # handed over to retention
    assert [(i.desk, i.agent_id) for i in store.queue_items("at_risk")] == [("retention", "r1")]
    assert [e.client_id for e in engine.queue("at_risk", "retention", "m2")] == ["c1"]


def pooled_desk(trigger: str) -> RuleSet:
    """One desk whose leads wait in its pool for a claim (agent a1, manager m1), and ``trigger``."""
    return crmcore.loads(f"""
desks: [{{id: d}}]
agents:
  - {{id: a1, desk: d, manager: m1}}
  - {{id: m1, desk: d, role: manager}}
routing:
  registration: [{{name: all, when: true, assign: {{desk: d, strategy: pool}}}}]
triggers:
  - {trigger}
""")


def test_a_pooled_clients_agent_and_manager_recipients_are_its_desks_managers(store: Store) -> None:
    rules = pooled_desk("{name: big, on: deposit, when: true, notify: [agent, manager]}")
    engine = Engine(rules, store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="DE"))
    engine.handle(ev("deposit", "d1", at(1), amount="10", status="failed"))
    assert sent(engine) == [("big", "m1")]  # nobody holds the client: its desk's managers are told


def test_the_host_resolves_an_on_trigger_item_once_dealt_with(store: Store) -> None:
    engine = shared_queue_client(store)
    engine.handle(ev("withdrawal", "w1", at(days=1), amount="100", status="failed"))
    with pytest.raises(crmcore.PermissionDenied):
        engine.resolve("c1", "at_risk", by="a1")  # handed over: sales no longer sees c1
    assert engine.resolve("c1", "at_risk", at(days=2), by="r1") is True
    assert store.queue_items("at_risk") == []
    (item,) = store.queue_items("at_risk", open_only=False)
    assert item.resolved_at == at(days=2)
    assert engine.resolve("c1", "at_risk") is False  # nothing open any more


def test_open_items_follow_a_pooled_client_to_the_agent_who_claims_it(store: Store) -> None:
    rules = pooled_desk("""{name: failed, on: deposit, when: 'event.status == "failed"', queue: chase, priority: 1}""")
    engine = Engine(rules, store=store, notifier=InMemoryNotifier())
    engine.handle(ev("client_registered", "reg", at(), country="DE"))
    engine.handle(ev("deposit", "d1", at(1), amount="10", status="failed"))
    assert [(i.desk, i.agent_id) for i in store.queue_items("chase")] == [("d", None)]
    assert engine.claim("a1", "c1", at(2)) is True
    assert [(i.desk, i.agent_id) for i in store.queue_items("chase")] == [("d", "a1")]
    assert [t.client_id for t in engine.tasks("a1")] == ["c1"]
