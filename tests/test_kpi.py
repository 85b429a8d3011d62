"""KPIs (SPEC §6, §11): hand-computed cases for every KPI, on every store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import crmcore
from crmcore import Engine, kpi
from crmcore.rules.ruleset import RuleSet
from crmcore.storage import Store

SMALL_RULES = """
version: 1
desks:
  - {id: sales, sla: {first_contact: 2h}}
  - {id: general, sla: {first_contact: 24h}}
  - {id: retention, kind: retention}
agents:
  - {id: a1, desk: sales, manager: m1, languages: [de]}
  - {id: a2, desk: sales, manager: m1, languages: [de]}
  - {id: m1, desk: sales, role: manager}
  - {id: g1, desk: general, manager: m2}
  - {id: m2, desk: general, role: manager}
  - {id: r1, desk: retention, manager: m3, capacity: 10}
  - {id: m3, desk: retention, role: manager}
routing:
  registration:
    - {name: german, when: 'client.language == "de"', assign: {desk: sales, strategy: round_robin}}
    - {name: general, when: true, assign: {desk: general, strategy: least_loaded}}
  ftd:
    - {name: to_retention, when: true, assign: {desk: retention, strategy: least_loaded}}
"""

FEB, MAR = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)


def t(text: str) -> str:
    return text if "T" in text else f"{text}T00:00:00Z"


def reg(cid: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"reg-{cid}", "type": "client_registered", "client_id": cid, "at": t(at), **fields}


def ev(eid: str, kind: str, cid: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": kind, "client_id": cid, "at": t(at), **fields}


def cost(eid: str, source: str, amount: str, start: str, end: str, campaign: str | None = None) -> dict[str, Any]:
    return {"id": eid, "type": "campaign_cost", "at": "2026-01-01T00:00:00Z", "source": source,
            "campaign": campaign, "amount": amount, "period_start": start, "period_end": end}


# The story of docs/kpis.md, in arrival (= time) order. Report: February 2026.
STORY = [
    reg("c4", "2025-11-01", country="FR"),                                    # -> g1
    ev("c4-d", "deposit", "c4", "2025-11-02", amount="300"),                  # FTD -> r1
    reg("c7", "2026-01-05", country="FR"),                                    # -> g1
    ev("c7-d", "deposit", "c7", "2026-01-06", amount="1000"),                 # FTD -> r1
    reg("c3", "2026-01-10", country="FR", source="google"),                   # -> g1
    ev("c3-c", "contact", "c3", "2026-01-12", agent_id="g1", channel="call", outcome="reached"),
    ev("c3-d", "deposit", "c3", "2026-01-15", amount="500"),                  # FTD -> r1
    cost("cost-fb", "facebook", "1000", "2026-01-15", "2026-02-14", "fb-a"),  # 13 of its 30 days in Feb
    ev("c3-t", "trade", "c3", "2026-01-20", volume="1", pnl="0", revenue="10"),
    ev("c7-t1", "trade", "c7", "2026-01-25", volume="1", pnl="0", revenue="20"),
    cost("cost-g", "google", "2800", "2026-02-01", "2026-03-01", "g-a"),
    reg("c1", "2026-02-02T10:00:00Z", country="DE", language="de", source="google", campaign="g-a"),  # -> a1
    ev("c1-c", "contact", "c1", "2026-02-02T11:00:00Z", agent_id="a1", channel="call", outcome="reached"),
    reg("c2", "2026-02-03T10:00:00Z", country="DE", language="de", source="facebook", campaign="fb-a"),  # -> a2
    ev("c7-t2", "trade", "c7", "2026-02-03", volume="1", pnl="0", revenue="30.30"),
    ev("c2-f", "deposit", "c2", "2026-02-04", amount="500", status="failed"),
    ev("c1-d1", "deposit", "c1", "2026-02-05T10:00:00Z", amount="1000.50"),  # FTD after 3 days -> r1
    ev("c1-d2", "deposit", "c1", "2026-02-06", amount="200"),
    ev("c1-w", "withdrawal", "c1", "2026-02-07", amount="300.25", status="completed"),
    ev("c1-t", "trade", "c1", "2026-02-08", volume="1", pnl="-5", revenue="40.10"),
    ev("c2-d", "deposit", "c2", "2026-02-10T10:00:00Z", amount="100"),       # FTD after 7 days -> r1
    ev("c2-w", "withdrawal", "c2", "2026-02-11", amount="50", status="requested"),
    ev("c4-t", "trade", "c4", "2026-02-15", volume="1", pnl="0", revenue="5.00"),
    reg("c5", "2026-02-20", country="FR", source="google"),                   # -> g1
    ev("c5-c", "contact", "c5", "2026-02-20T23:00:00Z", agent_id="g1", channel="call", outcome="reached"),
    reg("c6", "2026-02-25", country="DE", language="de"),                     # -> a1
    ev("c6-c", "contact", "c6", "2026-02-25T01:00:00Z", agent_id="a2", channel="call", outcome="reached"),
]


@pytest.fixture(scope="module")
def small_rules() -> RuleSet:
    return crmcore.loads(SMALL_RULES)


@pytest.fixture
def story(small_rules: RuleSet, store: Store) -> Store:
    engine = Engine(small_rules, store=store)
    for event in STORY:
        assert engine.handle(event).handled, event
    return store


def one(store: Store, metric: str, **options: Any) -> Any:
    rows = kpi.compute(store, FEB, MAR, [metric], **options)
    assert len(rows) == 1
    return rows[0][metric]


def by(store: Store, metric: str, grouping: str) -> dict[Any, Any]:
    return {row[grouping]: row[metric] for row in kpi.compute(store, FEB, MAR, [metric], by=grouping)}


def test_registrations_count_clients_registered_in_the_period(story: Store) -> None:
    assert one(story, "registrations") == 4
    assert by(story, "registrations", "agent") == {"a1": 2, "a2": 1, "g1": 1}
    assert by(story, "registrations", "source") == {"facebook": 1, "google": 2, None: 1}


def test_ftd_count_credits_the_agent_before_the_hand_over(story: Store) -> None:
    assert one(story, "ftd_count") == 2
    assert by(story, "ftd_count", "agent") == {"a1": 1, "a2": 1}
    assert by(story, "ftd_count", "team") == {"m1": 2}


def test_ftd_conversion_rate_is_over_the_clients_registered_in_the_period(story: Store) -> None:
    assert one(story, "ftd_conversion_rate") == 0.5
    assert by(story, "ftd_conversion_rate", "agent") == {"a1": 0.5, "a2": 1.0, "g1": 0.0}


def test_time_to_ftd_has_mean_median_and_nearest_rank_p90(story: Store) -> None:
    row = kpi.compute(story, FEB, MAR, ["avg_time_to_ftd_days"])[0]
    assert row == {"avg_time_to_ftd_days": 5.0, "median_time_to_ftd_days": 5.0, "p90_time_to_ftd_days": 7.0}


def test_net_deposits_count_completed_operations_at_event_time(story: Store) -> None:
    assert one(story, "net_deposits") == Decimal("1000.25")  # 1000.50 + 200 + 100 - 300.25
    assert by(story, "net_deposits", "agent") == {"a1": Decimal("1000.50"), "a2": Decimal("100"),
                                                  "r1": Decimal("-100.25")}
    assert by(story, "net_deposits", "desk") == {"sales": Decimal("1100.50"), "retention": Decimal("-100.25")}


def test_revenue_and_revenue_per_agent(story: Store) -> None:
    assert one(story, "revenue") == Decimal("75.40")
    assert one(story, "revenue_per_agent") == Decimal("18.85")  # 4 agents of role agent
    # the sales desk has money in February (the FTDs) but no revenue
    assert by(story, "revenue_per_agent", "desk") == {"retention": Decimal("75.40"), "sales": 0}
    assert by(story, "revenue_per_agent", "agent") == {"a1": 0, "a2": 0, "r1": Decimal("75.40")}


def test_clv_is_lifetime_value_of_the_ftd_cohort(story: Store) -> None:
    assert one(story, "clv") == Decimal("20.05")  # (40.10 + 0) / 2
    assert one(story, "clv_net_deposits") == Decimal("500.125")  # (900.25 + 100) / 2
    assert by(story, "clv", "agent") == {"a1": Decimal("40.10"), "a2": Decimal("0")}


def test_active_clients_are_funded_clients_trading_in_the_period(story: Store) -> None:
    assert one(story, "active_clients") == 3  # c1, c4, c7
    assert by(story, "active_clients", "agent") == {"r1": 3}


def test_churn_rate_compares_a_month_with_the_month_before(story: Store) -> None:
    assert one(story, "churn_rate") == 0.5  # c3 and c7 traded in January; c3 not in February


def test_churn_of_a_calendar_month_is_against_the_calendar_month_before(small_rules: RuleSet, story: Store) -> None:
    engine = Engine(small_rules, store=story)
    assert engine.handle(ev("c3-t2", "trade", "c3", "2026-01-30", volume="1", pnl="0")).handled
    assert engine.handle(ev("c1-t2", "trade", "c1", "2026-03-05", volume="1", pnl="0")).handled
    march, april = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    (row,) = kpi.compute(story, march, april, ["churn_rate"])
    # February's actives c7, c1, c4; only c1 trades in March. The 31 days before March
    # (Jan 29 - Feb 28) would have let c3's trade of Jan 30 into the base: 3/4, not 2/3.
    assert row["churn_rate"] == 2 / 3
    (row,) = kpi.compute(story, march, datetime(2026, 4, 2, tzinfo=UTC), ["churn_rate"])  # not a month: 32 days back
    assert row["churn_rate"] == 3 / 4


def test_reactivation_rate_of_clients_idle_for_30_days(story: Store) -> None:
    assert one(story, "reactivation_rate") == 1.0  # c4: no trade since November, trades on Feb 15


def test_cpa_prorates_campaign_costs_by_days(story: Store) -> None:
    feb_cost = Decimal(2800) + Decimal(1000) * 13 / 30
    assert one(story, "cpa") == feb_cost / 2
    assert by(story, "cpa", "source") == {"google": Decimal(2800), "facebook": Decimal(1000) * 13 / 30}
    assert by(story, "cpa", "campaign") == {"g-a": Decimal(2800), "fb-a": Decimal(1000) * 13 / 30}
    assert by(story, "cpa", "agent") == {"a1": None, "a2": None}  # costs belong to no agent


def test_first_contact_sla_counts_contacts_by_the_assigned_agent_in_time(story: Store) -> None:
    assert one(story, "first_contact_sla_rate") == 0.5  # c1 and c5 in time; c2 never; c6 by another agent
    assert by(story, "first_contact_sla_rate", "agent") == {"a1": 0.5, "a2": 0.0, "g1": 1.0}


def test_as_of_bounds_conversion(story: Store) -> None:
    early = datetime(2026, 2, 6, tzinfo=UTC)  # c2's FTD is later
    rows = kpi.compute(story, FEB, MAR, ["ftd_conversion_rate"], as_of=early)
    assert rows[0]["ftd_conversion_rate"] == 0.25


def test_an_empty_period_gives_zeros_and_no_rates(story: Store) -> None:
    row = kpi.compute(story, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC))[0]
    assert row["registrations"] == 0 and row["net_deposits"] == 0
    assert row["ftd_conversion_rate"] is None and row["avg_time_to_ftd_days"] is None
    assert kpi.compute(story, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC), by="agent") == []


def test_unknown_metric_grouping_and_empty_period_are_errors(story: Store) -> None:
    with pytest.raises(kpi.KpiError, match="unknown metric 'ftds'"):
        kpi.compute(story, FEB, MAR, ["ftds"])
    with pytest.raises(kpi.KpiError, match="unknown grouping 'planet'"):
        kpi.compute(story, FEB, MAR, by="planet")
    with pytest.raises(kpi.KpiError, match="empty period"):
        kpi.compute(story, MAR, FEB)


# --- attribution corner cases ----------------------------------------------------------------

POOL_RULES = """
version: 1
desks:
  - {id: lounge}
  - {id: retention}
agents:
  - {id: l1, desk: lounge}
  - {id: r1, desk: retention}
routing:
  registration:
    - {name: lounge, when: true, assign: {desk: lounge, strategy: pool}}
  ftd:
    - {name: to_retention, when: true, assign: {desk: retention, strategy: least_loaded}}
"""


def test_a_client_waiting_in_a_pool_at_the_ftd_credits_nobody(store: Store) -> None:
    engine = Engine(crmcore.loads(POOL_RULES), store=store)
    for event in (reg("p1", "2026-02-02", country="PL"),
                  ev("p1-d", "deposit", "p1", "2026-02-03", amount="250"),
                  ev("p1-d2", "deposit", "p1", "2026-02-04", amount="50")):
        assert engine.handle(event).handled
    assert store.assignment("p1").agent_id == "r1"  # type: ignore[union-attr]
    rows = kpi.compute(store, FEB, MAR, ["registrations", "ftd_count", "net_deposits"], by="agent")
    assert rows == [
        {"agent": "r1", "registrations": 0, "ftd_count": 0, "net_deposits": Decimal(50)},
        {"agent": None, "registrations": 1, "ftd_count": 1, "net_deposits": Decimal(250)},
    ]


def test_a_deposit_after_a_hand_back_is_credited_to_the_agent_holding_the_client_then(
    small_rules: RuleSet, store: Store
) -> None:
    engine = Engine(small_rules, store=store)
    for event in (reg("h1", "2026-02-02", country="DE", language="de"),  # -> a1
                  ev("h1-d", "deposit", "h1", "2026-02-03", amount="100"),  # FTD: a1, then r1
                  {"id": "h1-move", "type": "client_updated", "client_id": "h1", "at": t("2026-02-10"),
                   "fields": {"agent_id": "a2"}},  # by hand to a2
                  ev("h1-d2", "deposit", "h1", "2026-02-11", amount="70")):
        assert engine.handle(event).handled
    assert by(store, "net_deposits", "agent") == {"a1": Decimal(100), "a2": Decimal(70)}


# --- funnel and leaderboard by hand ----------------------------------------------------------


def test_funnel_counts_stages_and_times_between_them(small_rules: RuleSet, store: Store) -> None:
    from crmcore.kpi.funnel import funnel

    engine = Engine(small_rules, store=store)
    for event in (reg("f1", "2026-02-02", country="DE", language="de"),
                  ev("f1-k", "kyc_submitted", "f1", "2026-02-03"),
                  ev("f1-a", "kyc_approved", "f1", "2026-02-05"),
                  ev("f1-d", "deposit", "f1", "2026-02-06", amount="10"),
                  reg("f2", "2026-02-09", country="FR"),
                  ev("f2-k", "kyc_submitted", "f2", "2026-02-12"),
                  reg("f3", "2026-02-10", country="FR"),
                  ev("f3-d", "deposit", "f3", "2026-02-20", amount="10")):  # funded without KYC
        assert engine.handle(event).handled
    [row] = funnel(store, FEB, MAR)
    assert (row["registered"], row["kyc_submitted"], row["kyc_approved"], row["funded"]) == (3, 3, 2, 2)  # f3: funded
    assert row["kyc_submitted_rate"] == 1.0 and row["kyc_approved_rate"] == 2 / 3 and row["funded_rate"] == 1.0
    assert row["funded_overall"] == 2 / 3
    assert row["kyc_submitted_median_days"] == 2.0 and row["kyc_submitted_p90_days"] == 3.0  # 1 and 3 days
    assert row["funded_median_days"] == 1.0  # f1 only: f3 skipped KYC
    weeks = funnel(store, FEB, MAR, by="desk", cohort="week")
    assert [(r["cohort"], r["desk"], r["registered"]) for r in weeks] == [
        ("2026-02-02", "sales", 1), ("2026-02-09", "general", 2),
    ]


def test_a_client_counts_at_every_stage_up_to_the_furthest_it_reached(small_rules: RuleSet, store: Store) -> None:
    from crmcore.kpi.funnel import funnel

    engine = Engine(small_rules, store=store)
    for event in (reg("g1", "2026-02-02", country="FR"),
                  ev("g1-d", "deposit", "g1", "2026-02-03", amount="10"),  # before any KYC
                  ev("g1-k", "kyc_submitted", "g1", "2026-02-05"),
                  ev("g1-a", "kyc_approved", "g1", "2026-02-07"),
                  reg("g2", "2026-02-02", country="FR"),
                  ev("g2-k", "kyc_submitted", "g2", "2026-02-04"),
                  ev("g2-d", "deposit", "g2", "2026-02-06", amount="10"),  # before approval, never approved
                  reg("g3", "2026-02-03", country="FR"),
                  ev("g3-k", "kyc_submitted", "g3", "2026-02-04"),
                  ev("g3-r", "kyc_rejected", "g3", "2026-02-05"),  # keeps kyc_submitted_at
                  reg("g4", "2026-02-04", country="FR")):
        assert engine.handle(event).handled
    stages = ("registered", "kyc_submitted", "kyc_approved", "funded")
    [row] = funnel(store, FEB, MAR)
    assert tuple(row[s] for s in stages) == (4, 3, 2, 2)  # approved: g1, and g2 by its deposit
    assert (row["kyc_submitted_rate"], row["kyc_approved_rate"], row["funded_rate"]) == (3 / 4, 2 / 3, 1.0)
    assert row["kyc_submitted_median_days"] == 2.0  # g3 1 day, g2 2, g1 3
    assert row["kyc_approved_median_days"] == 2.0  # g1 only: g2 has no approval
    assert row["funded_median_days"] == -4.0  # g1 deposited 4 days before its approval
    [earlier] = funnel(store, FEB, MAR, as_of=datetime(2026, 2, 5, 12, tzinfo=UTC))
    assert tuple(earlier[s] for s in stages) == (4, 3, 1, 1)  # g1 funded; g2's deposit is later
    assert earlier["funded_median_days"] is None  # g1's approval (7 Feb) is after as-of: nothing to measure yet


def test_leaderboard_breaks_ties_by_id_and_lists_idle_agents(story: Store) -> None:
    from crmcore.kpi.leaderboard import leaderboard

    rows = leaderboard(story, FEB, MAR, "ftd_count")
    assert [(r["rank"], r["agent"], r["ftd_count"]) for r in rows] == [
        (1, "a1", 1), (2, "a2", 1), (3, "g1", 0), (4, "r1", 0),
    ]
    lowest_first = leaderboard(story, FEB, MAR, "avg_time_to_ftd_days")
    assert [r["agent"] for r in lowest_first] == ["a1", "a2", "g1", "r1"]  # 3 days, 7 days, then none
    teams = leaderboard(story, FEB, MAR, "net_deposits", by="team")
    assert [(r["team"], r["net_deposits"]) for r in teams] == [
        ("m1", Decimal("1100.50")), ("m2", 0), ("m3", Decimal("-100.25")),
    ]


def test_leaderboard_measures_against_the_targets_the_engine_stored(store: Store) -> None:
    from crmcore.kpi.leaderboard import leaderboard
    from crmcore.rules.model import Target

    rules = crmcore.loads(SMALL_RULES + "targets:\n  - {metric: ftd_count, per: agent, period: month, value: 2}\n")
    engine = Engine(rules, store=store)
    for event in STORY:
        assert engine.handle(event).handled, event
    rows = leaderboard(store, FEB, MAR, "ftd_count")
    assert [(r["agent"], r["target"], r["attainment"]) for r in rows] == [
        ("a1", 2, 0.5), ("a2", 2, 0.5), ("g1", 2, 0.0), ("r1", 2, 0.0),
    ]
    weekly = Target(metric="ftd_count", per="agent", period="week", value=1)
    assert [r["target"] for r in leaderboard(store, FEB, MAR, "ftd_count", targets=[weekly])] == [4] * 4  # given: instead
    assert [r["target"] for r in leaderboard(store, FEB, MAR, "ftd_count", targets=())] == [None] * 4


def test_targets_are_scaled_to_the_period() -> None:
    from crmcore.kpi.leaderboard import scaled_target
    from crmcore.rules.model import Target

    month = Target(metric="ftd_count", per="agent", period="month", value=20)
    week = Target(metric="ftd_count", per="agent", period="week", value=7)
    assert scaled_target(month, kpi.Period(FEB, MAR)) == 20  # a calendar month: as it is
    assert scaled_target(month, kpi.Period(FEB, datetime(2026, 2, 15, tzinfo=UTC))) == Decimal(14 * 20) / 30
    assert scaled_target(week, kpi.Period(datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 9, tzinfo=UTC))) == 7
    assert scaled_target(week, kpi.Period(FEB, MAR)) == 28
