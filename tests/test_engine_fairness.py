"""Routing fairness through the engine over long random sequences (SPEC §2 "Fairness").

Random rosters, capacities, leaves and returns, on every store: nobody goes over capacity,
nobody unavailable is assigned, nobody stays assigned to an inactive agent, and round robin
is fair — while the set of eligible agents stays the same, any k consecutive picks among k
eligible agents are k different agents (no lost turns, no catch-up burst after a leave).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Engine
from tests.conftest import STORES, make_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _rules(strategy: str, capacities: list[int | None], weights: list[int]) -> crmcore.RuleSet:
    agents = "\n".join(
        f"  - {{id: a{i}, desk: d, weight: {w}"
        + (f", capacity: {c}" if c is not None else "")
        + "}"
        for i, (c, w) in enumerate(zip(capacities, weights, strict=True))
    )
    return crmcore.loads(
        f"desks: [{{id: d}}, {{id: out}}]\nagents:\n{agents}\n  - {{id: m, desk: d, role: manager}}\n"
        "  - {id: o1, desk: out}\n"
        f"routing:\n  registration:\n    - {{name: r, when: true, assign: {{desk: d, strategy: {strategy}}}}}\n"
        "  ftd:\n    - {name: out, when: true, assign: {desk: out, strategy: least_loaded}}\n"
    )


def examples(kind: str, memory: int | None = None) -> settings:
    """Hypothesis settings for a store: the profile's examples in memory (or ``memory``),
    a few on the SQL stores, where every example is a few hundred transactions."""
    if kind == "memory":
        return settings(max_examples=memory or settings().max_examples)
    return settings(max_examples=6)


ops = st.lists(
    st.one_of(
        st.just(("register",)),
        st.tuples(st.just("active"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("away"), st.integers(0, 5), st.integers(-3, 10)),  # minutes from now
        st.tuples(st.just("deposit"), st.integers(0, 1000)),  # an FTD hand-over frees a slot
    ),
    min_size=1,
    max_size=60,
)


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "weighted"])
def test_random_rosters_and_leaves_never_break_availability_or_capacity(kind: str, strategy: str) -> None:
    @examples(kind)
    @given(
        capacities=st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=1, max_size=6),
        data=st.data(),
        script=ops,
    )
    def check(capacities: list[int | None], data: st.DataObject, script: list[Any]) -> None:
        weights = data.draw(st.lists(st.integers(1, 4), min_size=len(capacities), max_size=len(capacities)))
        rules = _rules(strategy, capacities, weights)
        engine = Engine(rules, store=make_store(kind))
        store = engine.store
        n = len(capacities)
        registered = 0
        for step, op in enumerate(script):
            now = T0 + timedelta(minutes=step)
            if op[0] == "register":
                cid = f"c{registered}"
                registered += 1
                before = dict(store.open_counts())
                agents = dict(store.agents())
                result = engine.handle({"id": f"r{step}", "type": "client_registered", "client_id": cid,
                                        "at": now.isoformat(), "country": "DE"})
                assert result.status == "handled", result.error
                routing = result.routing
                assert routing is not None
                if routing.outcome == "assigned":
                    agent = agents[routing.agent]  # type: ignore[index]
                    assert agent.active and agent.role == "agent"
                    assert agent.away_until is None or agent.away_until <= now
                    assert agent.capacity is None or before.get(agent.id, 0) < agent.capacity
                else:  # unassigned only when nobody was eligible
                    assert routing.outcome == "unassigned"
                    for agent in agents.values():
                        if agent.role != "agent" or agent.desk != "d":
                            continue
                        free = agent.capacity is None or before.get(agent.id, 0) < agent.capacity
                        present = agent.away_until is None or agent.away_until <= now
                        assert not (agent.active and free and present)
            elif op[0] == "active":
                _, index, active = op
                engine.handle({"id": f"u{step}", "type": "agent_updated", "at": now.isoformat(),
                               "agent": {"id": f"a{index % n}", "active": active}})
            elif op[0] == "away":
                _, index, minutes = op
                engine.handle({"id": f"u{step}", "type": "agent_updated", "at": now.isoformat(),
                               "agent": {"id": f"a{index % n}",
                                         "away_until": (now + timedelta(minutes=minutes)).isoformat()}})
            elif registered:
                result = engine.handle({"id": f"d{step}", "type": "deposit", "client_id": f"c{op[1] % registered}",
                                        "at": now.isoformat(), "amount": 100})
                assert result.status == "handled", result.error
            # Invariants after every step.
            agents = store.agents()
            for agent_id, count in store.open_counts().items():
                agent = agents[agent_id]
                if count:
                    assert agent.active, f"{agent_id} is inactive but holds {count} clients"
                assert agent.capacity is None or count <= agent.capacity

    check()


@pytest.mark.parametrize("kind", STORES)
def test_round_robin_is_fair_while_the_eligible_set_holds(kind: str) -> None:
    """Between leaves and returns the picks cycle through the eligible agents in id order:
    any k consecutive picks are k different agents, and the counts differ by at most one."""
    @examples(kind)
    @given(
        size=st.integers(1, 6),
        segments=st.lists(
            st.tuples(st.sets(st.integers(0, 5)), st.integers(1, 25)), min_size=1, max_size=6
        ),
    )
    def check(size: int, segments: list[tuple[set[int], int]]) -> None:
        engine = Engine(_rules("round_robin", [None] * size, [1] * size), store=make_store(kind))
        step = 0
        for away, count in segments:
            now = T0 + timedelta(hours=step)
            for i in range(size):
                until = now + timedelta(days=1) if i in away else now - timedelta(days=1)
                engine.handle({"id": f"u{step}-{i}", "type": "agent_updated", "at": now.isoformat(),
                               "agent": {"id": f"a{i}", "away_until": until.isoformat()}})
            eligible = [f"a{i}" for i in range(size) if i not in away]
            picks = []
            for j in range(count):
                result = engine.handle({"id": f"r{step}-{j}", "type": "client_registered",
                                        "client_id": f"c{step}-{j}", "at": now.isoformat(), "country": "DE"})
                assert result.routing is not None
                picks.append(result.routing.agent)
            step += 1
            if not eligible:
                assert picks == [None] * count
                continue
            k = len(eligible)
            for start in range(len(picks) - k + 1):
                assert len(set(picks[start:start + k])) == k, picks
            counts = Counter(picks)
            assert max(counts.values()) - min(counts[a] for a in eligible) <= 1

    check()


@pytest.mark.parametrize("kind", STORES)
def test_weighted_shares_follow_the_weights(kind: str) -> None:
    """Smooth weighted round robin: over any 10 × total-weight assignments each agent's
    count is within one of its weight's share."""
    @examples(kind, memory=25)  # each example routes up to 10 × 2 × 20 clients
    @given(weights=st.lists(st.integers(1, 5), min_size=1, max_size=4), rounds=st.integers(1, 2))
    def check(weights: list[int], rounds: int) -> None:
        engine = Engine(_rules("weighted", [None] * len(weights), weights), store=make_store(kind))
        total = sum(weights) * 10 * rounds
        picks = []
        for j in range(total):
            result = engine.handle({"id": f"r{j}", "type": "client_registered", "client_id": f"c{j}",
                                    "at": T0.isoformat(), "country": "DE"})
            assert result.routing is not None
            picks.append(result.routing.agent)
        window = sum(weights) * 10
        for start in range(0, total - window + 1, max(1, window // 4)):
            counts = Counter(picks[start:start + window])
            for i, w in enumerate(weights):
                assert abs(counts[f"a{i}"] - 10 * w) <= 1

    check()
