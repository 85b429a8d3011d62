"""Who may receive a client now (SPEC §2 "Routing semantics", §11 "Routing").

An agent is eligible when active, available now (not ``away_until`` a later
time, inside ``hours`` if the agent has working hours), below ``capacity``
(no capacity = unlimited) and the route's ``require`` holds. Desk strategies
pick only role ``agent``; managers and admins are reached by ``assign.agent``.

:func:`check_agent` answers for one agent with the first reason that excludes
them (``None`` = eligible). Checks run cheapest first, in the order of
:class:`Exclusion`, except that ``require`` (an expression) always runs last;
so an inactive agent at capacity reports ``inactive``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from crmcore.rules import model
from crmcore.rules.hours import WorkingHours
from crmcore.rules.interpreter import Scope
from crmcore.rules.ruleset import Expr, RuleSet
from crmcore.rules.values import to_stamp

__all__ = ["Exclusion", "agent_scope", "aware", "check_agent", "check_agent_id", "eligible_agents"]


class Exclusion(StrEnum):
    """Why an agent is not eligible; the value is what the routing trace shows."""

    INACTIVE = "inactive"
    AWAY = "away"
    OUTSIDE_HOURS = "outside_hours"
    AT_CAPACITY = "at_capacity"
    REQUIRE_FALSE = "require_false"
    NOT_AN_AGENT = "not_an_agent"  # a manager or admin, for a desk strategy
    OTHER_DESK = "other_desk"
    UNKNOWN_AGENT = "unknown_agent"
    BREACHED_SLA = "breached_sla"  # a reassignment after an SLA breach skips the agent who breached


@lru_cache(maxsize=256)
def _working_hours(text: str) -> WorkingHours:
    return WorkingHours.parse(text)


def _agent_id(agent: model.Agent) -> str:
    return agent.id


def aware(at: datetime) -> datetime:
    """A naive datetime taken as UTC, as ``to_stamp`` does."""
    if at.tzinfo is UTC:
        return at
    return at.replace(tzinfo=UTC) if at.tzinfo is None or at.utcoffset() is None else at


def agent_scope(agent: model.Agent, open_clients: int) -> dict[str, Any]:
    """The ``agent.*`` fields an expression sees (schema.AGENT_FIELDS)."""
    return {
        "id": agent.id,
        "name": agent.name,
        "desk": agent.desk,
        "role": agent.role,
        "languages": tuple(agent.languages),
        "countries": tuple(agent.countries),
        "capacity": agent.capacity,
        "weight": agent.weight,
        "open": open_clients,
    }


def check_agent(
    agent: model.Agent,
    *,
    desk: str | None,
    open_clients: int,
    now: datetime,
    client: Mapping[str, Any],
    require: Expr | None,
    by_strategy: bool,
    rules: RuleSet,
) -> Exclusion | None:
    """The first reason ``agent`` cannot take ``client`` at ``now``, or ``None`` if eligible.

    ``desk`` is the desk being routed to (``None`` for ``assign.agent``);
    ``by_strategy`` says a desk strategy is picking, which excludes managers
    and admins. A naive ``now`` or ``away_until`` is taken as UTC.
    """
    reason = _unavailable(agent, desk, open_clients, aware(now), by_strategy)
    if reason is None and require is not None:
        scope = _require_scope(client, now, rules)
        reason = _require(require, scope, agent, open_clients)
    return reason


def _unavailable(
    agent: model.Agent, desk: str | None, open_clients: int, moment: datetime, by_strategy: bool
) -> Exclusion | None:
    """The checks before ``require``, cheapest first (``moment`` aware)."""
    if not agent.active:
        return Exclusion.INACTIVE
    if agent.away_until is not None and aware(agent.away_until) > moment:
        return Exclusion.AWAY
    if agent.hours is not None and not _working_hours(agent.hours).contains(moment):
        return Exclusion.OUTSIDE_HOURS
    if agent.capacity is not None and open_clients >= agent.capacity:
        return Exclusion.AT_CAPACITY
    if by_strategy and agent.role != "agent":
        return Exclusion.NOT_AN_AGENT
    if desk is not None and agent.desk != desk:
        return Exclusion.OTHER_DESK
    return None


def _require_scope(client: Mapping[str, Any], now: datetime, rules: RuleSet) -> Scope:
    return Scope(client=client, now=to_stamp(now), lists=rules.lists, defaults=rules.defaults)


def _require(require: Expr, scope: Scope, agent: model.Agent, open_clients: int) -> Exclusion | None:
    """``require`` for one agent, in a scope shared by the agents of one routing step."""
    scope.agent = agent_scope(agent, open_clients)
    return None if require(scope) is True else Exclusion.REQUIRE_FALSE  # null counts as false


def check_agent_id(
    agent_id: str | None,
    *,
    open_counts: Mapping[str, int],
    now: datetime,
    client: Mapping[str, Any],
    rules: RuleSet,
    agents: Mapping[str, model.Agent] | None = None,
) -> Exclusion | None:
    """``check_agent`` for ``assign.agent``: an id (maybe unknown) rather than an agent,
    looked up in ``agents`` (the rule set's by default; the engine passes the store's)."""
    roster = rules.agents if agents is None else agents
    agent = roster.get(agent_id) if agent_id is not None else None
    if agent is None:
        return Exclusion.UNKNOWN_AGENT
    return check_agent(
        agent,
        desk=None,
        open_clients=open_counts.get(agent.id, 0),
        now=now,
        client=client,
        require=None,
        by_strategy=False,
        rules=rules,
    )


def eligible_agents(
    agents: Iterable[model.Agent],
    desk: str,
    open_counts: Mapping[str, int],
    now: datetime,
    client: Mapping[str, Any],
    require: Expr | None,
    rules: RuleSet,
) -> tuple[list[str], dict[str, Exclusion]]:
    """For a desk strategy: the eligible ids of ``desk``'s agents (sorted) and why each other is not.

    Agents of other desks are ignored; a missing open count is 0.
    """
    eligible: list[str] = []
    excluded: dict[str, Exclusion] = {}
    moment = aware(now)
    scope: Scope | None = None
    for agent in sorted((a for a in agents if a.desk == desk), key=_agent_id):
        open_clients = open_counts.get(agent.id, 0)
        reason = _unavailable(agent, desk, open_clients, moment, True)
        if reason is None and require is not None:
            if scope is None:
                scope = _require_scope(client, moment, rules)
            reason = _require(require, scope, agent, open_clients)
        if reason is None:
            eligible.append(agent.id)
        else:
            excluded[agent.id] = reason
    return eligible, excluded
