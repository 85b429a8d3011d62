"""Broker histories for the KPI tests: a rule set, a seeded generator of realistic event
streams (hand-overs, re-routing, SLA reassignments, withdrawals, failed deposits, campaign
costs), and a way to run one stream through the engine on any store."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import crmcore
from crmcore import Engine
from crmcore.rules.ruleset import RuleSet
from crmcore.storage import MemoryStore, Store

RULES_TEXT = """
version: 1
desks:
  - {id: sales, sla: {first_contact: 2h}, on_sla_breach: reassign}
  - {id: general, sla: {first_contact: 24h}}
  - {id: retention, kind: retention}
  - {id: lounge}
agents:
  - {id: a1, desk: sales, manager: m1, languages: [de, en], capacity: 40}
  - {id: a2, desk: sales, manager: m1, languages: [en], capacity: 40}
  - {id: a3, desk: sales, manager: m1, languages: [de], capacity: 40}
  - {id: m1, desk: sales, role: manager}
  - {id: g1, desk: general, manager: m2, capacity: 60}
  - {id: g2, desk: general, manager: m2, capacity: 60}
  - {id: m2, desk: general, role: manager}
  - {id: r1, desk: retention, manager: m3, weight: 2, capacity: 300}
  - {id: r2, desk: retention, manager: m3, capacity: 300}
  - {id: m3, desk: retention, role: manager}
  - {id: l1, desk: lounge, manager: m4}
  - {id: m4, desk: lounge, role: manager}
routing:
  registration:
    - {name: designated, when: 'client.manager_id != null', assign: {agent: client.manager_id}}
    - {name: lounge, when: 'client.country == "PL"', assign: {desk: lounge, strategy: pool}}
    - {name: german, when: 'client.language == "de"', assign: {desk: sales, strategy: round_robin,
       require: 'client.language in agent.languages'}}
    - {name: english, when: 'client.language == "en"', assign: {desk: sales, strategy: round_robin}}
    - {name: general, when: 'client.country != "XX"', assign: {desk: general, strategy: least_loaded}}
  ftd:
    - {name: to_retention, when: 'client.country != "NO"', assign: {desk: retention, strategy: weighted}}
targets:
  - {metric: ftd_count, per: agent, period: month, value: 4}
  - {metric: net_deposits, per: desk, period: month, value: 5000}
"""

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rules() -> RuleSet:
    return crmcore.loads(RULES_TEXT)


@dataclass(frozen=True)
class Scan:
    """``engine.scan(now)`` at this point of the stream."""

    now: datetime


Step = dict[str, Any] | Scan


def replay(steps: Sequence[Step], store: Store, rule_set: RuleSet | None = None) -> Engine:
    """Run a stream through a new engine on ``store``."""
    engine = Engine(rule_set or rules(), store=store)
    for step in steps:
        if isinstance(step, Scan):
            engine.scan(step.now)
        else:
            engine.handle(step)
    return engine


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def generate(seed: int, clients: int = 60, days: int = 90) -> list[Step]:
    """A seeded history: clients registering over ``days``, KYC (sometimes after the FTD,
    sometimes rejected), contacts (mostly by the holder, sometimes late, sometimes by someone
    else), deposits (some failed), withdrawals (completed, requested, failed), trades (revenue sometimes missing), an agent made inactive
    and back, SLA scans, campaign costs. Contacts need to know the holder, so the stream is
    produced against a MemoryStore engine as it goes."""
    rng = random.Random(seed)
    engine = Engine(rules(), store=MemoryStore())
    timeline: list[tuple[datetime, int, Step]] = []
    order = 0

    def add(at: datetime, step: Step) -> None:
        nonlocal order
        order += 1
        timeline.append((at, order, step))

    sources = ["google", "facebook", "ib", None]
    for i in range(clients):
        cid = f"c{i:03d}"
        registered = T0 + timedelta(minutes=rng.randrange(days * 24 * 60))
        country = rng.choice(["DE", "DE", "GB", "AT", "PL", "FR", "NO"])
        language = {"DE": "de", "AT": "de", "GB": "en"}.get(country, rng.choice(["en", "fr", None]))
        fields: dict[str, Any] = {"country": country}
        if language:
            fields["language"] = language
        source = rng.choice(sources)
        if source:
            fields["source"] = source
            fields["campaign"] = f"{source}-{rng.choice(['a', 'b'])}"
        if rng.random() < 0.15:
            fields["ib_id"] = rng.choice(["IB1", "IB2"])
        if rng.random() < 0.05:
            fields["manager_id"] = "m1"
        add(registered, {"id": f"reg-{cid}", "type": "client_registered", "client_id": cid,
                         "at": _iso(registered), **fields})
        t = registered
        n = 0

        def event(kind: str, at: datetime, cid: str = cid, **more: Any) -> None:
            nonlocal n
            n += 1
            add(at, {"id": f"{cid}-{n}", "type": kind, "client_id": cid, "at": _iso(at), **more})

        if rng.random() < 0.7:  # a contact: in time or late, by the holder (marked later) or not
            event("contact", t + timedelta(minutes=rng.choice([30, 90, 150, 600, 2000])),
                  agent_id="HOLDER" if rng.random() < 0.8 else "a2", channel="call", outcome="reached")
        submitted = rng.random() < 0.6
        if submitted:
            t += timedelta(hours=rng.randrange(1, 72))
            event("kyc_submitted", t)
            if rng.random() < 0.8:
                t += timedelta(hours=rng.randrange(1, 48))
                event("kyc_approved", t)
        if rng.random() < 0.15:
            event("deposit", t + timedelta(hours=1), amount=str(rng.choice([100, 250])), status="failed")
        funded = None
        if rng.random() < 0.55:
            t += timedelta(hours=rng.randrange(1, 24 * 20))
            funded = t
            event("deposit", t, amount=f"{rng.randrange(100, 5000)}.{rng.randrange(100):02d}")
            for _ in range(rng.randrange(0, 12)):
                idle = rng.random() < 0.15  # a dormant spell: churn, and maybe reactivation later
                t += timedelta(hours=rng.randrange(24 * 35, 24 * 50) if idle else rng.randrange(1, 24 * 12))
                kind = rng.random()
                if kind < 0.6:
                    revenue = None if rng.random() < 0.1 else f"{rng.randrange(0, 400)}.{rng.randrange(100):02d}"
                    event("trade", t, volume="1.5", pnl=f"-{rng.randrange(0, 90)}.5", revenue=revenue)
                elif kind < 0.75:
                    event("deposit", t, amount=f"{rng.randrange(50, 3000)}.{rng.randrange(10)}")
                else:
                    status = rng.choice(["completed", "completed", "requested", "failed"])
                    event("withdrawal", t, amount=f"{rng.randrange(20, 900)}.25", status=status)
            if rng.random() < 0.2:
                event("contact", t + timedelta(hours=3), agent_id="HOLDER", channel="email", outcome="callback")
        late = random.Random(f"{seed}-{cid}")  # a stream of its own: the rest of the history is unchanged
        if funded is not None and not submitted and late.random() < 0.5:  # KYC after the FTD
            kyc = funded + timedelta(hours=late.randrange(1, 240))
            event("kyc_submitted", kyc)
            outcome = late.random()
            if outcome < 0.8:
                event("kyc_approved" if outcome < 0.5 else "kyc_rejected", kyc + timedelta(hours=late.randrange(1, 48)))
    # campaign costs over whole and partial months
    for source in ("google", "facebook"):
        for month in range(1, 4):
            add(T0, {"id": f"cost-{source}-{month}", "type": "campaign_cost", "source": source,
                     "campaign": f"{source}-a", "amount": f"{rng.randrange(1000, 9000)}.50",
                     "period_start": date(2026, month, 1).isoformat(),
                     "period_end": date(2026, month + 1, 1).isoformat()})
    add(T0 + timedelta(days=40), {"id": "cost-odd", "type": "campaign_cost", "source": "ib",
                                  "amount": "999.99", "period_start": "2026-01-20", "period_end": "2026-02-10"})
    # an agent leaves for a while: their clients are routed again
    leave = T0 + timedelta(days=rng.randrange(20, 50))
    add(leave, {"id": "a1-leaves", "type": "agent_updated", "at": _iso(leave), "agent": {"id": "a1", "active": False}})
    add(leave + timedelta(days=5), {"id": "a1-back", "type": "agent_updated", "at": _iso(leave + timedelta(days=5)),
                                     "agent": {"id": "a1", "active": True}})
    for day in range(0, days + 30, 3):
        add(T0 + timedelta(days=day, hours=23), Scan(T0 + timedelta(days=day, hours=23)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    steps: list[Step] = []
    for _, _, step in timeline:
        if isinstance(step, Scan):
            engine.scan(step.now)
        else:
            if step.get("agent_id") == "HOLDER":
                current = engine.store.assignment(step["client_id"])
                step = {**step, "agent_id": current.agent_id if current is not None else "a1"}
            if step["type"] == "campaign_cost":
                step = {**step, "at": _iso(T0 + timedelta(days=40))}
            engine.handle(step)
        steps.append(step)
    return steps
