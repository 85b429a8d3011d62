"""The pure router (SPEC §2 "Routing semantics", §11 "Routing")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import crmcore
from crmcore.routing.eligibility import Exclusion
from crmcore.routing.router import RoutingResult, RoutingState, Step, route
from crmcore.rules import model
from crmcore.rules.ruleset import RuleSet

RULES = crmcore.loads(
    """
desks:
  - {id: sales}
  - {id: vip}
agents:
  - {id: a1, desk: sales, languages: [de, en], capacity: 2, weight: 3}
  - {id: a2, desk: sales, languages: [en], capacity: 2, weight: 2}
  - {id: a3, desk: sales, languages: [de, en], capacity: 2, weight: 1}
  - {id: m1, desk: sales, role: manager, languages: [de, en]}
  - {id: v1, desk: vip, languages: [fr], capacity: 1}
routing:
  registration:
    - {name: named, when: 'client.country == "XX"', assign: {agent: client.source}}
    - {name: vip, when: 'client.country == "FR"', assign: {desk: vip, strategy: least_loaded}}
    - name: german
      when: client.language == "de"
      assign: {desk: sales, strategy: round_robin, require: 'client.language in agent.languages'}
    - {name: pooled, when: 'client.country == "PL"', assign: {desk: sales, strategy: pool}}
    - {name: english, when: client.language == "en", assign: {desk: sales}}
    - {name: fallback, when: 'client.country == "FR"', assign: {desk: vip, strategy: weighted}}
  ftd:
    - {name: least, when: true, assign: {desk: sales, strategy: least_loaded}}
"""
)
WEIGHTED = crmcore.loads(
    """
desks: [{id: sales}]
agents:
  - {id: a1, desk: sales, weight: 3}
  - {id: a2, desk: sales, weight: 2}
  - {id: a3, desk: sales, weight: 1}
routing:
  ftd:
    - {name: weighted, when: true, assign: {desk: sales, strategy: weighted}}
"""
)
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
EN: Mapping[str, Any] = {"language": "en", "country": "GB"}


def _route(
    client: Mapping[str, Any],
    *,
    stage: str = "registration",
    open_counts: Mapping[str, int] | None = None,
    state: RoutingState | None = None,
    rules: RuleSet = RULES,
    agents: Iterable[model.Agent] | None = None,
) -> tuple[RoutingResult, RoutingState]:
    return route(
        stage,
        rules,
        client,
        scores={},
        bands={},
        ib=None,
        trading=None,
        now=NOW,
        open_counts=open_counts or {},
        state=state or RoutingState.empty(),
        agents=agents,
    )


def _rules_tried(result: RoutingResult) -> list[str]:
    return [step.rule for step in result.trace]


def test_first_match_wins() -> None:
    result, _ = _route({"country": "XX", "source": "m1", "language": "de"})
    assert (result.outcome, result.rule, result.agent) == ("assigned", "named", "m1")
    assert result.trace == (Step("named", "assigned", agent="m1"),)


def test_unknown_assigned_agent_falls_through_with_the_reason() -> None:
    result, _ = _route({"country": "XX", "source": "nobody", "language": "de"})
    assert (result.rule, result.agent) == ("german", "a1")
    assert result.trace[0] == Step(
        "named", "no_eligible_agent", excluded={"nobody": Exclusion.UNKNOWN_AGENT}
    )


def test_assigned_agent_at_capacity_falls_through_with_the_reason() -> None:
    result, _ = _route({"country": "XX", "source": "a1", "language": "de"}, open_counts={"a1": 2})
    assert (result.rule, result.agent) == ("german", "a3")
    assert result.trace[0].excluded == {"a1": Exclusion.AT_CAPACITY}


def test_round_robin_rotates_across_calls_via_the_state() -> None:
    state = RoutingState.empty()
    picks = []
    for _ in range(4):
        result, state = _route(EN, state=state)
        picks.append(result.agent)
    assert picks == ["a1", "a2", "a3", "a1"]
    assert state.pointers == {"sales": "a1"}


def test_round_robin_skips_an_agent_at_capacity_without_losing_its_place() -> None:
    state = RoutingState.empty()
    first, state = _route(EN, state=state)
    second, state = _route(EN, state=state, open_counts={"a2": 2})
    third, state = _route(EN, state=state)
    fourth, state = _route(EN, state=state)
    assert [first.agent, second.agent, third.agent, fourth.agent] == ["a1", "a3", "a1", "a2"]


def test_round_robin_does_not_share_state_with_the_call_it_came_from() -> None:
    state = RoutingState.empty()
    _, after = _route(EN, state=state)
    assert state == RoutingState.empty()
    assert after.pointers == {"sales": "a1"}


def test_least_loaded_picks_the_fewest_open() -> None:
    result, _ = _route({}, stage="ftd", open_counts={"a1": 1, "a2": 1, "a3": 0, "m1": 0})
    assert (result.rule, result.agent, result.strategy) == ("least", "a3", "least_loaded")


def test_weighted_follows_the_weights_over_many_calls() -> None:
    state = RoutingState.empty()
    counts: Counter[str | None] = Counter()
    for _ in range(60):
        result, state = _route({}, stage="ftd", state=state, rules=WEIGHTED)
        counts[result.agent] += 1
    assert counts == Counter({"a1": 30, "a2": 20, "a3": 10})
    assert set(state.current) == {"sales"}


def test_pool_pools_at_once() -> None:
    result, state = _route({"country": "PL", "language": "pl"})
    assert (result.outcome, result.desk, result.agent, result.strategy) == (
        "pooled",
        "sales",
        None,
        "pool",
    )
    assert result.trace[-1] == Step("pooled", "pooled")
    assert state == RoutingState.empty()


def test_nobody_eligible_anywhere_goes_unassigned_to_the_last_matching_desk() -> None:
    result, _ = _route({"country": "FR", "language": "fr"}, open_counts={"v1": 1})
    assert (result.outcome, result.rule, result.desk, result.agent) == (
        "unassigned",
        "fallback",
        "vip",
        None,
    )
    assert result.trace[1] == Step(
        "vip", "no_eligible_agent", excluded={"v1": Exclusion.AT_CAPACITY}
    )


def test_no_eligible_agent_lists_every_exclusion() -> None:
    result, _ = _route({"language": "de", "country": "DE"}, open_counts={"a1": 2, "a2": 0, "a3": 2})
    german = next(step for step in result.trace if step.rule == "german")
    assert german == Step(
        "german",
        "no_eligible_agent",
        excluded={
            "a1": Exclusion.AT_CAPACITY,
            "a2": Exclusion.REQUIRE_FALSE,
            "a3": Exclusion.AT_CAPACITY,
            "m1": Exclusion.NOT_AN_AGENT,
        },
    )
    assert list(german.excluded) == ["a1", "a2", "a3", "m1"]  # in id order
    assert result.outcome == "unassigned" and result.desk == "sales"


def test_no_rule_matched_is_unrouted() -> None:
    result, _ = _route({"country": "DE", "language": "it"})
    assert (result.outcome, result.rule, result.desk, result.agent) == (
        "unrouted",
        None,
        None,
        None,
    )


def test_only_an_agent_rule_matched_is_unrouted() -> None:
    result, _ = _route({"country": "XX", "source": "ghost", "language": "it"})
    assert result.outcome == "unrouted"
    assert result.trace[0].excluded == {"ghost": Exclusion.UNKNOWN_AGENT}


def test_the_trace_lists_every_rule_tried() -> None:
    result, _ = _route({"country": "DE", "language": "it"})
    assert _rules_tried(result) == ["named", "vip", "german", "pooled", "english", "fallback"]
    assert {step.outcome for step in result.trace} == {"no_match"}


def test_agents_passed_by_the_engine_override_the_rule_file() -> None:
    roster = [
        a.model_copy(update={"active": False}) if a.id == "a1" else a for a in RULES.agents.values()
    ]
    result, _ = _route(EN, agents=roster)
    assert result.agent == "a2"
