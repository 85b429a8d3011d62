"""Events (SPEC §5): typed models, exact amounts, UTC times, schema fields and a forgiving reader."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.cli import main
from crmcore.events import (
    AccountSnapshot,
    AgentUpdated,
    BadEvent,
    CampaignCost,
    ClientRegistered,
    ClientUpdated,
    Contact,
    Deposit,
    EventError,
    IbUpdated,
    Trade,
    Withdrawal,
    events_json_schema,
    parse_event,
    read_events,
)
from crmcore.rules import CrmError
from crmcore.rules.types import BOOL, STRING

AT = '"at": "2024-05-01T10:00:00Z"'

# One realistic line per event type, as a back office would send it.
LINES = {
    "client_registered": f'{{"id": "e1", "type": "client_registered", "client_id": "c1", {AT}, "country": "DE", "language": "de", "email": "anna@example.de", "phone_verified": true, "ib_id": "ib-7", "source": "google", "campaign": "spring", "manager_id": "m1", "region": "EU"}}',
    "client_updated": f'{{"id": "e2", "type": "client_updated", "client_id": "c1", {AT}, "fields": {{"email": "anna@example.com", "phone_verified": true}}}}',
    "kyc_submitted": f'{{"id": "e3", "type": "kyc_submitted", "client_id": "c1", {AT}}}',
    "kyc_approved": f'{{"id": "e4", "type": "kyc_approved", "client_id": "c1", {AT}}}',
    "kyc_rejected": f'{{"id": "e5", "type": "kyc_rejected", "client_id": "c1", {AT}}}',
    "email_opened": f'{{"id": "e6", "type": "email_opened", "client_id": "c1", {AT}}}',
    "email_clicked": f'{{"id": "e7", "type": "email_clicked", "client_id": "c1", {AT}}}',
    "login": f'{{"id": "e8", "type": "login", "client_id": "c1", {AT}}}',
    "deposit": f'{{"id": "e9", "type": "deposit", "client_id": "c1", {AT}, "amount": 250.10, "currency": "EUR"}}',
    "withdrawal": f'{{"id": "e10", "type": "withdrawal", "client_id": "c1", {AT}, "amount": "100", "status": "failed"}}',
    "trade": f'{{"id": "e11", "type": "trade", "client_id": "c1", {AT}, "volume": 1.5, "pnl": -12.30, "revenue": 4.2, "symbol": "EURUSD"}}',
    "account_snapshot": f'{{"id": "e12", "type": "account_snapshot", "client_id": "c1", {AT}, "balance": 1000.00, "equity": 980.5, "margin_level": 350.0, "open_positions": 2, "floating_pnl": -19.5}}',
    "contact": f'{{"id": "e13", "type": "contact", "client_id": "c1", {AT}, "agent_id": "a1", "channel": "call", "outcome": "callback", "callback_at": "2024-05-02T09:00:00+02:00", "note": "call after lunch"}}',
    "agent_updated": f'{{"id": "e14", "type": "agent_updated", {AT}, "agent": {{"id": "a1", "desk": "sales-general", "capacity": 40, "active": false}}}}',
    "ib_updated": f'{{"id": "e15", "type": "ib_updated", {AT}, "ib": {{"id": "ib-7", "quality": 0.8, "agent_id": "a2"}}}}',
    "campaign_cost": f'{{"id": "e16", "type": "campaign_cost", {AT}, "source": "google", "campaign": "spring", "amount": 1200.00, "period_start": "2024-05-01", "period_end": "2024-06-01"}}',
}

RULES = crmcore.loads(
    "schema:\n  client:\n    utm_campaign: string?\n    vip: {type: bool, default: false}\n    declared_income: number\n"
)


def event(type_: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "e1", "type": type_, "client_id": "c1", "at": "2024-05-01T10:00:00Z"}
    return {**base, **fields}


def error_of(data: dict[str, Any], rules: Any = None) -> str:
    with pytest.raises(EventError) as info:
        parse_event(data, rules)
    return str(info.value)


@pytest.mark.parametrize("type_", sorted(LINES))
def test_every_event_type_parses_from_a_json_line(type_: str) -> None:
    (parsed,) = read_events([LINES[type_]])
    assert not isinstance(parsed, BadEvent), parsed
    assert parsed.type == type_
    assert parsed.at == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_fields_have_their_types() -> None:
    events = {e.type: e for e in read_events(list(LINES.values())) if not isinstance(e, BadEvent)}
    assert isinstance(events["client_registered"], ClientRegistered) and events["client_registered"].phone_verified is True
    assert isinstance(events["deposit"], Deposit) and events["deposit"].status == "completed"
    assert isinstance(events["withdrawal"], Withdrawal) and events["withdrawal"].amount == Decimal("100")
    assert isinstance(events["trade"], Trade) and events["trade"].pnl == Decimal("-12.30")
    assert isinstance(events["account_snapshot"], AccountSnapshot) and events["account_snapshot"].open_positions == 2
    contact = events["contact"]
    assert isinstance(contact, Contact) and contact.callback_at == datetime(2024, 5, 2, 7, tzinfo=UTC)
    agent = events["agent_updated"]
    assert isinstance(agent, AgentUpdated) and agent.agent == {"id": "a1", "desk": "sales-general", "capacity": 40, "active": False}
    ib = events["ib_updated"]
    assert isinstance(ib, IbUpdated) and ib.ib.quality == Decimal("0.8") and ib.ib.manager_id is None
    cost = events["campaign_cost"]
    assert isinstance(cost, CampaignCost) and (cost.period_start, cost.period_end) == (date(2024, 5, 1), date(2024, 6, 1))


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T00:30:00-01:00", datetime(2024, 5, 1, 1, 30, tzinfo=UTC)),
    ],
)
def test_at_becomes_aware_utc(text: str, utc: datetime) -> None:
    parsed = parse_event(event("login", at=text))
    assert parsed.at == utc and parsed.at.utcoffset() is not None and parsed.at.tzinfo is UTC


def test_amounts_are_exact_decimals() -> None:
    (deposit,) = read_events(['{"id": "d", "type": "deposit", "client_id": "c", "at": "2024-05-01T10:00:00Z", "amount": 0.1}'])
    assert isinstance(deposit, Deposit) and deposit.amount == Decimal("0.1")
    assert parse_event(event("deposit", amount="1234567.891")).amount == Decimal("1234567.891")  # type: ignore[union-attr]


def test_not_a_number_amount_is_refused() -> None:
    (bad,) = read_events(['{"id": "d", "type": "deposit", "client_id": "c", "at": "2024-05-01T10:00:00Z", "amount": NaN}'])
    assert isinstance(bad, BadEvent) and "invalid JSON" in bad.reason


def test_withdrawal_status_is_required_and_deposit_status_is_checked() -> None:
    assert error_of(event("withdrawal", amount=10)) == "withdrawal.status: Field required"
    assert "deposit.status: Input should be 'completed' or 'failed'" in error_of(event("deposit", amount=10, status="pending"))


def test_contact_literals_are_checked() -> None:
    message = error_of(event("contact", agent_id="a1", channel="fax", outcome="reached"))
    assert message.startswith("contact.channel: Input should be 'call', 'email', 'sms' or 'chat'")


def test_unknown_field_is_an_error_naming_it() -> None:
    assert error_of(event("deposit", amount=10, bonus=5)) == "deposit.bonus: unknown field"
    assert error_of(event("client_registered", country="DE", vip=True)).startswith("client_registered.vip: unknown field")


def test_unknown_event_type_and_missing_type() -> None:
    assert error_of(event("refund")) == "type: unknown event type 'refund'"
    assert error_of({"id": "e1", "client_id": "c1", "at": "2024-05-01T10:00:00Z"}) == "type: Field required (the event type)"


def test_empty_id_is_refused() -> None:
    assert error_of(event("login", id="")).startswith("login.id: String should have at least 1 character")


def test_event_error_is_a_crm_error_with_the_field() -> None:
    with pytest.raises(CrmError) as info:
        parse_event(event("deposit", amount="lots"))
    assert isinstance(info.value, EventError) and info.value.field == "deposit.amount"


def test_schema_fields_are_accepted_on_registration_with_the_rules() -> None:
    registered = parse_event(event("client_registered", country="DE", vip=True, declared_income=52000.5), RULES)
    assert isinstance(registered, ClientRegistered)
    assert registered.schema_fields == {"vip": True, "declared_income": Decimal("52000.5"), "utm_campaign": None}


def test_schema_field_defaults_fill_in() -> None:
    registered = parse_event(event("client_registered", country="DE", declared_income=1), RULES)
    assert isinstance(registered, ClientRegistered) and registered.schema_fields["vip"] is False


def test_schema_fields_may_be_given_as_a_mapping_of_types() -> None:
    registered = parse_event(event("client_registered", country="DE", vip=True, utm_campaign="x"), {"vip": BOOL, "utm_campaign": STRING.null()})
    assert isinstance(registered, ClientRegistered) and registered.schema_fields == {"vip": True, "utm_campaign": "x"}


def test_missing_non_nullable_schema_field_without_default_is_an_error() -> None:
    message = error_of(event("client_registered", country="DE"), RULES)
    assert message.startswith("client_registered.declared_income: Field required")


def test_schema_field_of_the_wrong_type_is_an_error() -> None:
    message = error_of(event("client_registered", country="DE", declared_income=1, vip="maybe"), RULES)
    assert message.startswith("client_registered.vip: Input should be a valid boolean")


def test_client_updated_takes_built_in_and_schema_fields() -> None:
    updated = parse_event(event("client_updated", fields={"country": "FR", "vip": True, "declared_income": "9.99"}), RULES)
    assert isinstance(updated, ClientUpdated)
    assert updated.fields == {"country": "FR", "vip": True, "declared_income": Decimal("9.99")}


def test_client_updated_with_an_unknown_field_is_an_error() -> None:
    assert error_of(event("client_updated", fields={"contry": "FR"}), RULES).startswith("client_updated.fields.contry: unknown client field")
    assert error_of(event("client_updated", fields={"vip": True})).startswith("client_updated.fields.vip: unknown client field")


def test_client_updated_with_a_wrong_value_is_an_error() -> None:
    assert error_of(event("client_updated", fields={"country": None})) == "client_updated.fields.country: Input should be a valid string"


def test_campaign_cost_period_must_not_be_empty() -> None:
    data = {"id": "k", "type": "campaign_cost", "at": "2024-05-01T00:00:00Z", "source": "google", "amount": 10,
            "period_start": "2024-06-01", "period_end": "2024-06-01"}
    assert error_of(data).startswith("campaign_cost.period_end: must be after period_start")


def test_agent_updated_checks_the_agent_fields() -> None:
    data = {"id": "k", "type": "agent_updated", "at": "2024-05-01T00:00:00Z", "agent": {"id": "a1", "capacty": 3}}
    assert "capacty" in error_of(data)


def test_read_events_yields_bad_events_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join([
            LINES["client_registered"],
            LINES["deposit"],
            "",
            '{"id": "x", "type": "deposit", ',
            LINES["login"],
            '{"id": "y", "type": "deposit", "client_id": "c1", "at": "2024-05-01T10:00:00Z", "amount": "ten"}',
            "[1, 2]",
        ]) + "\n"
    )
    results = list(read_events(path))
    assert [r.type if not isinstance(r, BadEvent) else r.line for r in results] == [
        "client_registered", "deposit", 4, "login", 6, 7,
    ]
    bad = [r for r in results if isinstance(r, BadEvent)]
    assert bad[0].reason.startswith("line 4: invalid JSON")
    assert bad[1].reason == "line 6: deposit.amount: Input should be a valid decimal"
    assert bad[1].raw.startswith('{"id": "y"')
    assert bad[2].reason == "line 7: an event must be a JSON object"


def test_read_events_checks_schema_fields_with_the_rules() -> None:
    line = f'{{"id": "e1", "type": "client_registered", "client_id": "c1", {AT}, "country": "DE", "declared_income": 1}}'
    assert isinstance(next(read_events([line], RULES)), ClientRegistered)
    bad = next(read_events([line]))
    assert isinstance(bad, BadEvent) and bad.reason.startswith("line 1: client_registered.declared_income: unknown field")


def test_json_schema_lists_every_event_type() -> None:
    schema = events_json_schema()
    assert sorted(schema["discriminator"]["mapping"]) == sorted(LINES)


def test_cli_prints_the_events_json_schema() -> None:
    out = io.StringIO()
    assert main(["schema", "events"], out) == 0
    schema = json.loads(out.getvalue())
    types = {d["properties"]["type"]["const"] for d in schema["$defs"].values() if "type" in d.get("properties", {})}
    assert types == set(LINES)
