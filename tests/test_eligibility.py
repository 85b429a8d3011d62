"""Eligibility of agents for routing (SPEC §2 "Routing semantics", §11 "Routing")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import crmcore
from crmcore.routing.eligibility import Exclusion, check_agent, check_agent_id, eligible_agents
from crmcore.rules import model
from crmcore.rules.ruleset import Expr

RULES = crmcore.loads(
    """
desks:
  - {id: sales}
  - {id: retention}
agents:
  - {id: a1, desk: sales, languages: [de, en], capacity: 2}
  - {id: a2, desk: sales, languages: [en]}
  - {id: a3, desk: sales, languages: [de], active: false, capacity: 1}
  - {id: a4, desk: sales, languages: [de], away_until: "2024-03-04T12:00:00+00:00"}
  - {id: a5, desk: sales, languages: [de], hours: "Mon-Fri 09:00-18:00 Europe/Berlin"}
  - {id: m1, desk: sales, role: manager, languages: [de]}
  - {id: x1, desk: sales, role: admin, languages: [de]}
  - {id: r1, desk: retention, languages: [de]}
routing:
  registration:
    - name: german
      when: client.language == "de"
      assign: {desk: sales, strategy: round_robin, require: 'client.language in agent.languages'}
    - {name: anyone, when: true, assign: {desk: sales, strategy: least_loaded}}
"""
)
REQUIRE: Expr | None = RULES.routing["registration"][0].require
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_NOON = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # 13:00 in Berlin (winter time)
GERMAN: Mapping[str, Any] = {"language": "de"}


def _check(
    agent_id: str,
    *,
    open_clients: int = 0,
    now: datetime = MONDAY_NOON,
    client: Mapping[str, Any] = GERMAN,
    require: Expr | None = None,
    by_strategy: bool = True,
    desk: str | None = "sales",
    agent: model.Agent | None = None,
) -> Exclusion | None:
    return check_agent(
        agent or RULES.agents[agent_id],
        desk=desk,
        open_clients=open_clients,
        now=now,
        client=client,
        require=require,
        by_strategy=by_strategy,
        rules=RULES,
    )


def test_rule_file_has_the_require_expression() -> None:
    assert REQUIRE is not None


def test_active_agent_with_room_is_eligible() -> None:
    assert _check("a1", open_clients=1) is None


def test_inactive_agent_is_excluded() -> None:
    assert _check("a3") is Exclusion.INACTIVE


def test_inactive_agent_at_capacity_reports_inactive() -> None:
    assert _check("a3", open_clients=5) is Exclusion.INACTIVE


def test_agent_at_capacity_is_excluded() -> None:
    assert _check("a1", open_clients=2) is Exclusion.AT_CAPACITY


def test_agent_over_capacity_is_excluded() -> None:
    assert _check("a1", open_clients=3) is Exclusion.AT_CAPACITY


def test_zero_capacity_takes_nobody() -> None:
    agent = RULES.agents["a1"].model_copy(update={"capacity": 0})
    assert _check("a1", agent=agent) is Exclusion.AT_CAPACITY


def test_no_capacity_is_unlimited() -> None:
    assert RULES.agents["a2"].capacity is None
    assert _check("a2", open_clients=10_000) is None


def test_away_until_later_excludes() -> None:
    assert _check("a4", now=datetime(2024, 3, 4, 11, 59, tzinfo=UTC)) is Exclusion.AWAY


def test_away_until_now_is_back() -> None:
    assert _check("a4", now=datetime(2024, 3, 4, 12, 0, tzinfo=UTC)) is None


def test_away_until_in_the_past_is_fine() -> None:
    assert _check("a4", now=datetime(2024, 3, 5, 9, 0, tzinfo=UTC)) is None


def test_away_until_compares_instants_across_zones() -> None:
    # 12:30 in Berlin is 11:30 UTC, before the agent is back at 12:00 UTC.
    assert _check("a4", now=datetime(2024, 3, 4, 12, 30, tzinfo=BERLIN)) is Exclusion.AWAY


def test_inside_working_hours_is_eligible() -> None:
    assert _check("a5") is None


def test_working_hours_start_is_inside() -> None:
    assert _check("a5", now=datetime(2024, 3, 4, 9, 0, tzinfo=BERLIN)) is None


def test_just_before_working_hours_is_outside() -> None:
    now = datetime(2024, 3, 4, 8, 59, 59, tzinfo=BERLIN)
    assert _check("a5", now=now) is Exclusion.OUTSIDE_HOURS


def test_working_hours_end_is_outside() -> None:
    now = datetime(2024, 3, 4, 18, 0, tzinfo=BERLIN)
    assert _check("a5", now=now) is Exclusion.OUTSIDE_HOURS


def test_working_hours_are_in_the_agents_zone() -> None:
    # 08:30 UTC on a winter Monday is 09:30 in Berlin: inside.
    assert _check("a5", now=datetime(2024, 3, 4, 8, 30, tzinfo=UTC)) is None


def test_weekend_is_outside_working_hours() -> None:
    now = datetime(2024, 3, 9, 12, 0, tzinfo=BERLIN)  # a Saturday
    assert _check("a5", now=now) is Exclusion.OUTSIDE_HOURS


def test_naive_now_is_taken_as_utc() -> None:
    assert _check("a5", now=datetime(2024, 3, 4, 17, 30)) is Exclusion.OUTSIDE_HOURS


def test_require_true_is_eligible() -> None:
    assert _check("a1", require=REQUIRE) is None


def test_require_false_is_excluded() -> None:
    assert _check("a2", require=REQUIRE) is Exclusion.REQUIRE_FALSE


def test_require_null_counts_as_false() -> None:
    assert _check("a1", require=REQUIRE, client={"language": None}) is Exclusion.REQUIRE_FALSE


def test_require_sees_open_clients() -> None:
    rules = crmcore.loads(
        """
desks: [{id: sales}]
agents: [{id: a1, desk: sales}]
routing:
  registration:
    - {name: r, when: true, assign: {desk: sales, strategy: round_robin, require: 'agent.open < 3'}}
"""
    )
    require = rules.routing["registration"][0].require
    agent = rules.agents["a1"]

    def check(open_clients: int) -> Exclusion | None:
        return check_agent(
            agent, desk="sales", open_clients=open_clients, now=MONDAY_NOON, client={},
            require=require, by_strategy=True, rules=rules,
        )

    assert (check(2), check(3)) == (None, Exclusion.REQUIRE_FALSE)


def test_require_is_checked_last() -> None:
    assert _check("a2", require=REQUIRE, open_clients=1, desk="retention") is Exclusion.OTHER_DESK


def test_manager_is_not_picked_by_a_strategy() -> None:
    assert _check("m1") is Exclusion.NOT_AN_AGENT


def test_admin_is_not_picked_by_a_strategy() -> None:
    assert _check("x1") is Exclusion.NOT_AN_AGENT


def test_manager_can_be_assigned_directly() -> None:
    assert _check("m1", by_strategy=False, desk=None) is None


def test_agent_of_another_desk_is_excluded() -> None:
    assert _check("r1") is Exclusion.OTHER_DESK


def test_unknown_agent_id_is_excluded() -> None:
    reason = check_agent_id("nobody", open_counts={}, now=MONDAY_NOON, client=GERMAN, rules=RULES)
    assert reason is Exclusion.UNKNOWN_AGENT


def test_known_agent_id_is_checked() -> None:
    known = check_agent_id("m1", open_counts={}, now=MONDAY_NOON, client=GERMAN, rules=RULES)
    inactive = check_agent_id("a3", open_counts={}, now=MONDAY_NOON, client=GERMAN, rules=RULES)
    assert (known, inactive) == (None, Exclusion.INACTIVE)


def test_exclusions_read_as_their_trace_text() -> None:
    assert [str(e) for e in Exclusion] == [
        "inactive", "away", "outside_hours", "at_capacity", "require_false",
        "not_an_agent", "other_desk", "unknown_agent", "breached_sla",
    ]


def test_eligible_agents_of_a_desk_with_reasons() -> None:
    now = datetime(2024, 3, 4, 11, 0, tzinfo=UTC)  # 12:00 in Berlin; a4 still away
    eligible, excluded = eligible_agents(
        reversed(list(RULES.agents.values())), "sales", {"a1": 2}, now, GERMAN, REQUIRE, RULES
    )
    assert eligible == ["a5"]
    assert excluded == {
        "a1": Exclusion.AT_CAPACITY,
        "a2": Exclusion.REQUIRE_FALSE,
        "a3": Exclusion.INACTIVE,
        "a4": Exclusion.AWAY,
        "m1": Exclusion.NOT_AN_AGENT,
        "x1": Exclusion.NOT_AN_AGENT,
    }


def test_eligible_agents_are_sorted_by_id() -> None:
    eligible, _ = eligible_agents(
        reversed(list(RULES.agents.values())), "sales", {}, MONDAY_NOON, GERMAN, None, RULES
    )
    assert eligible == ["a1", "a2", "a4", "a5"]


def test_eligible_agents_ignore_other_desks() -> None:
    eligible, excluded = eligible_agents(
        RULES.agents.values(), "retention", {}, MONDAY_NOON, GERMAN, REQUIRE, RULES
    )
    assert (eligible, excluded) == (["r1"], {})
