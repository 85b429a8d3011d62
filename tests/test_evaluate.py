"""`rules.evaluate`: pure evaluation of a rule set against one client context (SPEC §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest

import crmcore
from crmcore.rules.diagnostics import EvaluationError

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def spec_case() -> dict[str, Any]:
    """The rule-test case of SPEC §9."""
    return {
        "client": {
            "country": "DE",
            "language": "de",
            "registered_at": datetime(2026, 3, 1, 10, tzinfo=UTC),
            "kyc_submitted_at": datetime(2026, 3, 1, 11, tzinfo=UTC),
            "email_clicks": 2,
        },
        "ib": {"id": "IB1", "quality": 90},
        "now": NOW,
    }


def test_spec_example_scores_bands_and_route(spec_rules: crmcore.RuleSet) -> None:
    ev = spec_rules.evaluate(spec_case())
    assert ev.scores["lead"] == 60
    assert ev.bands["lead"] == "warm"
    assert ev.breakdown["lead"] == {"tier1_country": 20, "fast_kyc": 15, "ib_quality": 18, "engaged": 7}
    assert ev.route is not None
    assert (ev.route.rule, ev.route.desk, ev.route.strategy, ev.route.agent) == ("dach", "sales-general", "round_robin", None)
    assert ev.route.name == "dach"  # SPEC 1: "its name and assign target"
    assert ev.triggers == []


def test_route_with_an_agent_expression_gives_the_agent(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["client"]["manager_id"] = "a3"
    ev = spec_rules.evaluate(case)
    assert ev.route is not None and (ev.route.rule, ev.route.agent, ev.route.desk) == ("designated_manager", "a3", None)


def test_hot_band_routes_to_the_senior_desk(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["ib"] = {"id": "IB1", "quality": 250}  # 20 + 15 + 50 + 7 = 92
    ev = spec_rules.evaluate(case)
    assert ev.bands["lead"] == "hot"
    assert ev.route is not None and ev.route.rule == "hot"


def test_below_every_threshold_is_the_last_band() -> None:
    rules = crmcore.loads(
        "scores:\n  s:\n    rules: [{name: neg, when: true, points: -5}]\n    bands: {hi: 10, lo: 0}\n"
    )
    assert rules.evaluate({"client": {}}).bands["s"] == "lo"


def test_null_points_count_zero_and_unheld_rules_are_left_out(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["ib"] = {"id": "IB1", "quality": None}
    case["client"]["kyc_submitted_at"] = None
    ev = spec_rules.evaluate(case)
    assert ev.breakdown["lead"] == {"tier1_country": 20, "ib_quality": 0, "engaged": 7}
    assert ev.scores["lead"] == 27


@pytest.mark.parametrize(
    "now",
    [NOW, NOW.timestamp(), int(NOW.timestamp()), "2026-03-01T12:00:00Z", NOW.replace(tzinfo=None)],
    ids=["aware", "epoch-float", "epoch-int", "iso-text", "naive-utc"],
)
def test_timestamps_may_be_datetimes_epoch_seconds_or_iso_text(spec_rules: crmcore.RuleSet, now: Any) -> None:
    case = spec_case()
    case["now"] = now
    case["client"]["registered_at"] = NOW.timestamp() - 48 * 3600
    case["client"]["kyc_submitted_at"] = None
    case["client"]["stage"] = "registered"
    assert spec_rules.evaluate(case).triggers == ["kyc_nudge"]


def test_decimal_amounts_mix_with_rule_numbers(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["ib"] = {"id": "IB1", "quality": Decimal("90")}
    case["client"].update(stage="funded", balance=Decimal("100.01"), last_trade_at=NOW - timedelta(days=31))
    ev = spec_rules.evaluate(case)
    assert ev.scores["lead"] == 60
    assert ev.triggers == ["dormant_30d"]


def test_stage_is_inferred_from_timestamps_when_missing(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["client"].update(ftd_at=NOW - timedelta(days=60), balance=500, last_trade_at=NOW - timedelta(days=30))
    assert spec_rules.evaluate(case).triggers == ["dormant_30d"]


def test_client_balance_is_the_snapshot_balance_when_the_client_gives_none(spec_rules: crmcore.RuleSet) -> None:
    # SPEC 11: balance is the last account_snapshot's balance; dormant_30d needs balance > 100
    case = spec_case()
    case["client"].update(ftd_at=NOW - timedelta(days=60), last_trade_at=NOW - timedelta(days=30))
    assert spec_rules.evaluate(case).triggers == []  # no balance anywhere: 0
    case["trading"] = {"balance": 500, "equity": 480}
    assert spec_rules.evaluate(case).triggers == ["dormant_30d"]
    case["client"]["balance"] = 50  # the client's own balance, when given, is the one read
    assert spec_rules.evaluate(case).triggers == []


def test_any_mapping_is_read_without_copying(spec_rules: crmcore.RuleSet) -> None:
    class Record(dict[str, Any]):
        reads: ClassVar[list[str]] = []

        def get(self, key: str, default: Any = None) -> Any:
            self.reads.append(key)
            return super().get(key, default)

    case = spec_case()
    case["client"] = Record(case["client"])
    assert spec_rules.evaluate(case).scores["lead"] == 60
    assert "country" in Record.reads


def test_activity_windows_read_the_context_events() -> None:
    rules = crmcore.loads(
        "triggers:\n"
        "  - {name: fewer_deposits, when: 'deposits.count(30d) < deposits.count(30d, 30d)', queue: q}\n"
        "  - {name: big_month, when: 'deposits.sum(30d) >= 1000', queue: q}\n"
    )
    events = [
        {"type": "deposit", "amount": 600, "at": NOW - timedelta(days=40)},
        {"type": "deposit", "amount": 700, "at": NOW - timedelta(days=45)},
        {"type": "deposit", "amount": 1000, "at": NOW, "status": "completed"},
        {"type": "deposit", "amount": 5000, "at": NOW - timedelta(days=1), "status": "failed"},
    ]
    ev = rules.evaluate({"client": {}, "now": NOW, "events": events})
    assert ev.triggers == ["fewer_deposits", "big_month"]


def test_a_missing_required_field_is_named(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    del case["client"]["country"]
    with pytest.raises(EvaluationError, match=r"client.country is required \(string\) but missing"):
        spec_rules.evaluate(case)


def test_a_client_without_registered_at_is_a_lead_registering_at_now(spec_rules: crmcore.RuleSet) -> None:
    # what-if screens score a lead as they register: registered_at defaults to now
    case = spec_case()
    del case["client"]["registered_at"]
    ev = spec_rules.evaluate(case)  # kyc_submitted_at (11:00) - now (12:00) <= 24h: fast_kyc holds
    assert (ev.scores["lead"], ev.breakdown["lead"]["fast_kyc"]) == (60, 15)
    assert spec_rules.evaluate({"client": {"country": "FR"}, "now": NOW}).scores == {"lead": 0}
    rules = crmcore.loads("version: 1\nscores:\n  s:\n    rules:\n"
                          "      - {name: fast, when: 'client.kyc_submitted_at - client.registered_at <= 24h', points: 1}\n")
    with pytest.raises(EvaluationError, match=r"client.registered_at is required \(timestamp\) but missing"):
        rules.evaluate({"client": {"country": "DE", "kyc_submitted_at": NOW}})  # and no now to register at


def test_a_field_of_the_wrong_type_is_named(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["client"]["registered_at"] = "last tuesday"
    with pytest.raises(EvaluationError, match=r"client\.registered_at is not an ISO 8601 timestamp"):
        spec_rules.evaluate(case)


def test_missing_now_is_named(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    del case["now"]
    with pytest.raises(EvaluationError, match="no 'now'"):
        spec_rules.evaluate(case)


def test_evaluate_many_equals_evaluate(spec_rules: crmcore.RuleSet) -> None:
    cases = [spec_case() for _ in range(3)]
    cases[1]["client"]["country"] = "FR"
    many = spec_rules.evaluate_many(cases)
    assert [e.as_dict() for e in many] == [spec_rules.evaluate(c).as_dict() for c in cases]


def test_schema_defaults_apply_to_missing_fields() -> None:
    rules = crmcore.loads(
        "schema:\n  client:\n    vip: {type: bool, default: false}\n    tier: int?\n"
        "scores:\n  s:\n    rules:\n      - {name: vip, when: client.vip, points: 10}\n      - {name: tier, when: 'client.tier == null', points: 1}\n"
    )
    assert rules.evaluate({"client": {}}).scores["s"] == 1
    assert rules.evaluate({"client": {"vip": True, "tier": 2}}).scores["s"] == 10


def test_scores_may_build_on_other_scores() -> None:
    rules = crmcore.loads(
        "scores:\n"
        "  total:\n    rules: [{name: from_lead, when: 'band.lead == \"hot\"', points: 'score.lead * 2'}]\n"
        "  lead:\n    rules: [{name: base, when: true, points: 80}]\n    bands: {hot: 70, cold: 0}\n"
    )
    ev = rules.evaluate({"client": {}})
    assert ev.scores == {"lead": 80, "total": 160}


def test_generated_code_carries_rule_locations(spec_rules: crmcore.RuleSet) -> None:
    source = spec_rules._evaluate.__crmcore_source__  # type: ignore[attr-defined]
    assert "spec_rules.yaml:36:" in source


def test_a_default_fills_a_null_as_well_as_a_missing_key(spec_rules: crmcore.RuleSet) -> None:
    case = spec_case()
    case["client"]["email_clicks"] = None  # default 0: the `engaged` rule does not hold
    assert spec_rules.evaluate(case).scores["lead"] == 53


def test_missing_now_is_named_on_the_first_call_too() -> None:
    rules = crmcore.loads("triggers:\n  - {name: t, when: 'days_since(client.registered_at) > 1', queue: q}\n")
    with pytest.raises(EvaluationError, match="no 'now'"):
        rules.evaluate({"client": {"registered_at": NOW}})


def test_now_given_once_is_reused_and_a_new_now_is_seen() -> None:
    rules = crmcore.loads("triggers:\n  - {name: old, when: 'days_since(client.registered_at) >= 2', queue: q}\n")
    client = {"registered_at": NOW - timedelta(days=1)}
    assert rules.evaluate({"client": client, "now": NOW}).triggers == []
    assert rules.evaluate({"client": client, "now": NOW + timedelta(days=1)}).triggers == ["old"]
    assert rules.evaluate({"client": client, "now": NOW}).triggers == []


@pytest.mark.parametrize(
    "convert",
    [
        lambda t: t,
        lambda t: t.replace(tzinfo=None),
        lambda t: t.timestamp(),
        lambda t: t.isoformat(),
        lambda t: t.astimezone(timezone(timedelta(hours=-5))),
    ],
    ids=["aware-utc", "naive", "epoch", "iso", "other-zone"],
)
def test_client_timestamps_of_any_form_mean_the_same_instant(spec_rules: crmcore.RuleSet, convert: Any) -> None:
    case = spec_case()
    case["client"]["registered_at"] = convert(case["client"]["registered_at"])
    case["client"]["kyc_submitted_at"] = convert(case["client"]["kyc_submitted_at"])
    case["client"]["last_trade_at"] = None
    ev = spec_rules.evaluate(case)
    assert ev.scores["lead"] == 60 and "fast_kyc" in ev.breakdown["lead"]


def test_exactly_24_hours_is_24h_whatever_the_microseconds() -> None:
    rules = crmcore.loads("scores:\n  s:\n    rules: [{name: fast, when: 'client.kyc_submitted_at - client.registered_at <= 24h', points: 1}]\n")
    registered = datetime(2026, 3, 1, 10, 0, 0, 123457, tzinfo=UTC)
    client = {"registered_at": registered, "kyc_submitted_at": registered + timedelta(hours=24)}
    assert rules.evaluate({"client": client}).scores["s"] == 1
    client["kyc_submitted_at"] += timedelta(microseconds=1)
    assert rules.evaluate({"client": client}).scores["s"] == 0


def test_a_missing_required_field_is_an_error_even_where_null_would_pass() -> None:
    rules = crmcore.loads("scores:\n  s:\n    rules: [{name: a, when: 'client.country != \"DE\"', points: 1}]\n")
    with pytest.raises(EvaluationError, match=r"client\.country is required \(string\) but missing"):
        rules.evaluate({"client": {}})
    assert rules.evaluate({"client": {"country": "FR"}}).scores["s"] == 1


def test_trading_balance_before_any_snapshot_is_the_client_balance() -> None:
    rules = crmcore.loads("scores:\n  s:\n    rules: [{name: b, when: true, points: trading.balance}]\n")
    assert rules.evaluate({"client": {"balance": 7}}).scores["s"] == 7
    assert rules.evaluate({"client": {}, "trading": {}}).scores["s"] == 0
    assert rules.evaluate({"client": {"balance": 7}, "trading": {"balance": 9}}).scores["s"] == 9


@pytest.mark.parametrize("context", [None, [], {"client": []}, {"client": "x"}, {"client": {}, "ib": "IB1"}, {"client": {}, "trading": 3}])
def test_a_malformed_context_is_an_evaluation_error(spec_rules: crmcore.RuleSet, context: Any) -> None:
    with pytest.raises(EvaluationError):
        spec_rules.evaluate(context)


def test_evaluation_does_not_touch_the_host_record(spec_rules: crmcore.RuleSet) -> None:
    from collections import defaultdict

    client: defaultdict[str, Any] = defaultdict(lambda: None, spec_case()["client"])
    before = dict(client)
    assert spec_rules.evaluate({**spec_case(), "client": client}).scores["lead"] == 60
    assert dict(client) == before


def test_list_defaults_and_reserved_names(tmp_path: Any) -> None:
    rules = crmcore.loads(
        "schema:\n  client:\n    tags: {type: 'list<string>', default: [vip]}\n"
        "scores:\n  s:\n    rules: [{name: a, when: '\"vip\" in client.tags', points: 1}]\n"
    )
    assert rules.evaluate({"client": {}}).scores["s"] == 1
    for text in ["lists:\n  client: [a]\n", "lists:\n  now: [a]\n", "schema:\n  client:\n    and: string\n"]:
        with pytest.raises(crmcore.RuleError):
            crmcore.loads(text)


def test_a_computed_null_is_not_the_literal_null() -> None:
    rules = crmcore.loads("scores:\n  s:\n    rules: [{name: a, when: 'client.ftd_amount == 1 / 0', points: 1}]\n")
    assert rules.evaluate({"client": {"ftd_amount": None}}).scores["s"] == 0
