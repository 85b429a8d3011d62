"""The router: one routing decision, pure (SPEC §2 "Routing semantics", §11 "Routing").

No store, no clock, no randomness: the caller passes the client, the time, the open
counts and the strategies' :class:`RoutingState`, and gets back the decision with its
trace and the new state to persist.

Rules of the stage are tried in order. A rule whose ``when`` is not true (null counts
as false) is ``no_match``. A matching rule with ``assign.agent`` assigns that agent if
eligible; a matching rule with a desk and strategy ``pool`` pools the client at once;
any other strategy picks one eligible agent of the desk. When nobody can be assigned
the rule's step says why (every exclusion) and routing falls through. After the last
rule: ``unassigned`` to the pool of the last matching rule that names a desk, else
``unrouted``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from crmcore.routing import strategies
from crmcore.routing.eligibility import Exclusion, aware, check_agent_id, eligible_agents
from crmcore.rules import model
from crmcore.rules.interpreter import Scope
from crmcore.rules.ruleset import Route, RuleSet
from crmcore.rules.values import to_stamp
from crmcore.rules.windows import Record, from_events

__all__ = ["Outcome", "Roster", "RoutingResult", "RoutingState", "Step", "StepOutcome", "route"]

Outcome = Literal["assigned", "pooled", "unassigned", "unrouted"]
StepOutcome = Literal["no_match", "assigned", "no_eligible_agent", "pooled"]


@dataclass(frozen=True)
class RoutingState:
    """The strategies' state, per desk: round-robin pointers and weighted current values."""

    pointers: dict[str, str | None] = field(default_factory=dict)
    current: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> RoutingState:
        return cls()


@dataclass(frozen=True, slots=True)
class Roster:
    """The agents as routing reads them: by id, and each desk's in id order."""

    by_id: Mapping[str, model.Agent]
    by_desk: Mapping[str, tuple[model.Agent, ...]]

    @classmethod
    def of(cls, agents: Iterable[model.Agent]) -> Roster:
        by_id: dict[str, model.Agent] = {}
        by_desk: dict[str, list[model.Agent]] = {}
        for agent in sorted(agents, key=_agent_id):
            by_id[agent.id] = agent
            by_desk.setdefault(agent.desk, []).append(agent)
        return cls(by_id, {desk: tuple(members) for desk, members in by_desk.items()})


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the trace: a rule tried and what came of it."""

    rule: str
    outcome: StepOutcome
    agent: str | None = None
    excluded: Mapping[str, Exclusion] = field(default_factory=dict)  # agent id -> why, in id order


@dataclass(frozen=True, slots=True)
class RoutingResult:
    outcome: Outcome
    rule: str | None
    desk: str | None
    agent: str | None
    strategy: str | None
    trace: tuple[Step, ...]


def route(
    stage: str,
    rules: RuleSet,
    client: Mapping[str, Any],
    *,
    scores: Mapping[str, float],
    bands: Mapping[str, str | None],
    ib: Mapping[str, Any] | None,
    trading: Mapping[str, Any] | None,
    now: datetime,
    open_counts: Mapping[str, int],
    state: RoutingState,
    agents: Iterable[model.Agent] | Roster | None = None,
    exclude: Collection[str] = (),
    first_match: str | None = None,
    history: Iterable[Record] | None = None,
) -> tuple[RoutingResult, RoutingState]:
    """Route ``client`` by ``rules.routing[stage]``; returns the decision and the new state.

    ``agents`` defaults to the rule set's agents; the engine passes its current ones, as a
    :class:`Roster` it keeps while they do not change.
    ``exclude``: agents who may not take the client (``breached_sla`` in the trace), for a
    reassignment after an SLA breach. ``first_match``: the name of the first rule whose
    ``when`` holds, when the caller knows it (``Evaluation.route``): the rules before it are
    ``no_match`` without evaluating them again. ``history``: the client's events, for
    activity windows in ``when``.
    """
    roster = agents if isinstance(agents, Roster) else Roster.of(rules.agents.values() if agents is None else agents)
    by_id, by_desk = roster.by_id, roster.by_desk
    now = aware(now)
    skipping = first_match is not None
    scope = Scope(
        client=client,
        ib=ib,
        trading=trading,
        now=to_stamp(now),
        scores=scores,
        bands={k: v for k, v in bands.items() if v is not None},
        lists=rules.lists,
        defaults=rules.defaults,
        window=from_events(history) if rules.uses_windows else None,
    )
    trace: list[Step] = []
    last_desk_rule: Route | None = None
    for rule in rules.routing[stage]:
        if skipping and rule.name != first_match:
            trace.append(_no_match(rule.name))
            continue
        if skipping:
            skipping = False  # the first match: its `when` holds
        elif rule.when(scope) is not True:
            trace.append(_no_match(rule.name))
            continue
        if rule.agent is not None:
            value = rule.agent(scope)
            agent_id = value if isinstance(value, str) else None
            reason = check_agent_id(agent_id, open_counts=open_counts, now=now, client=client, rules=rules, agents=by_id)
            if reason is None and agent_id in exclude:
                reason = Exclusion.BREACHED_SLA
            if reason is None:
                assert agent_id is not None
                trace.append(Step(rule.name, "assigned", agent=agent_id))
                result = RoutingResult("assigned", rule.name, None, agent_id, None, tuple(trace))
                return result, state
            shown = agent_id if agent_id is not None else repr(value)
            trace.append(Step(rule.name, "no_eligible_agent", excluded={shown: reason}))
            continue
        desk = rule.desk
        if desk is None:  # pragma: no cover - the loader requires agent or desk
            continue
        last_desk_rule = rule
        if rule.strategy == "pool":
            trace.append(Step(rule.name, "pooled"))
            return RoutingResult("pooled", rule.name, desk, None, "pool", tuple(trace)), state
        desk_agents = by_desk.get(desk, ())
        eligible, excluded = eligible_agents(
            desk_agents, desk, open_counts, now, client, rule.require, rules
        )
        if exclude:
            for agent_id in [a for a in eligible if a in exclude]:
                eligible.remove(agent_id)
                excluded[agent_id] = Exclusion.BREACHED_SLA
        picked, state = _pick(rule, desk, desk_agents, eligible, open_counts, state)
        if picked is None:
            trace.append(
                Step(rule.name, "no_eligible_agent", excluded=dict(sorted(excluded.items())))
            )
            continue
        trace.append(Step(rule.name, "assigned", agent=picked))
        result = RoutingResult("assigned", rule.name, desk, picked, rule.strategy, tuple(trace))
        return result, state
    if last_desk_rule is not None:
        result = RoutingResult(
            "unassigned", last_desk_rule.name, last_desk_rule.desk, None, None, tuple(trace)
        )
        return result, state
    return RoutingResult("unrouted", None, None, None, None, tuple(trace)), state


@lru_cache(maxsize=4096)
def _no_match(rule: str) -> Step:
    """Steps are frozen: one ``no_match`` step per rule name serves every trace."""
    return Step(rule, "no_match")


def _agent_id(agent: model.Agent) -> str:
    return agent.id


def _pick(
    rule: Route,
    desk: str,
    desk_agents: Sequence[model.Agent],
    eligible: list[str],
    open_counts: Mapping[str, int],
    state: RoutingState,
) -> tuple[str | None, RoutingState]:
    """The desk strategy's pick among ``eligible`` (of ``desk_agents``, the desk's agents
    in id order) and the state after it."""
    if not eligible:
        return None, state
    ids = [agent.id for agent in desk_agents]
    chosen = frozenset(eligible)
    if rule.strategy == "least_loaded":
        return strategies.least_loaded(ids, chosen, open_counts), state
    if rule.strategy == "weighted":
        weights = {agent.id: agent.weight for agent in desk_agents}
        picked, current = strategies.weighted(ids, chosen, weights, state.current.get(desk, {}))
        if picked is None:
            return None, state
        return picked, RoutingState(dict(state.pointers), {**state.current, desk: current})
    # round_robin (the default strategy)
    picked, pointer = strategies.round_robin(ids, chosen, state.pointers.get(desk))
    if picked is None:
        return None, state
    return picked, RoutingState({**state.pointers, desk: pointer}, dict(state.current))
