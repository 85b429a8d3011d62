"""Client state: what each event does to a client's record (SPEC §5, §11)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crmcore
from crmcore.events import ClientRegistered, Event, parse_event
from crmcore.rules.schema import CLIENT_FIELDS, STAGES
from crmcore.state import apply, new_client

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
_ids = count()


def ev(type_: str, at: datetime = T0, **fields: Any) -> Event:
    data: dict[str, Any] = {"id": f"e{next(_ids)}", "type": type_, "client_id": "c1", "at": at.isoformat()}
    return parse_event({**data, **fields})


def registered(rules: Any = None, **fields: Any) -> dict[str, Any]:
    data = {"id": "r", "type": "client_registered", "client_id": "c1", "at": T0.isoformat(), "country": "DE", **fields}
    event = parse_event(data, rules)
    assert isinstance(event, ClientRegistered)
    return new_client(event, rules)


def run(*events: Event) -> dict[str, Any]:
    client = registered()
    for event in events:
        client = apply(client, event)
    return client


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# ---- registration ----------------------------------------------------------------------------


def test_registration_sets_identity_fields_and_built_in_defaults() -> None:
    client = registered(ib_id="ib-7", source="google", language="de")
    assert set(CLIENT_FIELDS) <= set(client)
    assert (client["id"], client["registered_at"], client["country"]) == ("c1", T0, "DE")
    assert (client["ib_id"], client["source"], client["language"]) == ("ib-7", "google", "de")
    assert client["stage"] == "registered"
    assert (client["balance"], client["email_opens"], client["email_clicks"]) == (0, 0, 0)
    assert client["phone_verified"] is False and client["status"] == "new"
    assert client["ftd_at"] is None and client["agent_id"] is None and client["campaign"] is None
    assert client["trading"] == {"balance": 0, "equity": None, "margin_level": None, "open_positions": None, "floating_pnl": None}


def test_registration_keeps_a_given_phone_verified() -> None:
    assert registered(phone_verified=True)["phone_verified"] is True


def test_registration_fills_schema_fields_with_their_defaults() -> None:
    rules = crmcore.loads("schema:\n  client:\n    vip: {type: bool, default: false}\n    tier: int?\n    income: number\n")
    client = registered(rules, income=5000)
    assert client["vip"] is False and client["tier"] is None and client["income"] == Decimal(5000)
    assert registered(rules, income=1, vip=True)["vip"] is True


# ---- each event --------------------------------------------------------------------------------


def test_client_updated_replaces_the_given_fields() -> None:
    client = run(ev("client_updated", fields={"email": "a@example.com", "phone_verified": True}))
    assert client["email"] == "a@example.com" and client["phone_verified"] is True
    assert client["country"] == "DE"


def test_kyc_submitted_moves_the_stage_and_sets_its_time() -> None:
    client = run(ev("kyc_submitted", later(1)))
    assert (client["stage"], client["kyc_submitted_at"]) == ("kyc_submitted", later(1))


def test_kyc_approved_moves_the_stage_and_sets_its_time() -> None:
    client = run(ev("kyc_submitted", later(1)), ev("kyc_approved", later(2)))
    assert (client["stage"], client["kyc_approved_at"]) == ("kyc_approved", later(2))


def test_stage_never_moves_backwards() -> None:
    client = run(ev("kyc_approved", later(1)), ev("kyc_submitted", later(2)))
    assert client["stage"] == "kyc_approved"
    funded = run(ev("deposit", later(1), amount=100), ev("kyc_submitted", later(2)), ev("kyc_approved", later(3)))
    assert funded["stage"] == "funded"


def test_kyc_rejected_sets_the_stage_back_and_keeps_kyc_submitted_at() -> None:
    client = run(ev("kyc_submitted", later(1)), ev("kyc_rejected", later(2)))
    assert (client["stage"], client["kyc_submitted_at"]) == ("registered", later(1))


def test_kyc_rejected_sets_a_funded_client_back_too_and_keeps_the_ftd() -> None:
    # SPEC 11: "a deposit before KYC approval is still the FTD (stage funded); kyc_rejected
    # sets the stage back to registered"
    client = run(ev("deposit", later(1), amount=100), ev("kyc_rejected", later(2)))
    assert (client["stage"], client["ftd_at"], client["ftd_amount"]) == ("registered", later(1), 100)
    again = run(ev("deposit", later(1), amount=100), ev("kyc_rejected", later(2)),
                ev("kyc_submitted", later(3)), ev("kyc_approved", later(4)))
    assert again["stage"] == "funded"  # approved again, with the money in


def test_email_events_count() -> None:
    client = run(ev("email_opened"), ev("email_opened"), ev("email_clicked"))
    assert (client["email_opens"], client["email_clicks"]) == (2, 1)


def test_login_and_trade_set_their_last_times() -> None:
    client = run(ev("login", later(1)), ev("trade", later(2), volume=1, pnl=-3))
    assert (client["last_login_at"], client["last_trade_at"]) == (later(1), later(2))


def test_an_older_login_does_not_move_last_login_back() -> None:
    client = run(ev("login", later(5)), ev("login", later(1)))
    assert client["last_login_at"] == later(5)


def test_first_completed_deposit_is_the_ftd_and_the_second_is_not() -> None:
    client = run(ev("deposit", later(1), amount="250.10"), ev("deposit", later(2), amount=500))
    assert (client["ftd_at"], client["ftd_amount"], client["stage"]) == (later(1), Decimal("250.10"), "funded")
    assert client["last_deposit_at"] == later(2)


def test_a_deposit_before_kyc_approval_is_still_the_ftd() -> None:
    client = run(ev("kyc_submitted", later(1)), ev("deposit", later(2), amount=100))
    assert (client["stage"], client["ftd_at"]) == ("funded", later(2))


def test_a_failed_deposit_changes_nothing() -> None:
    before = registered()
    assert apply(before, ev("deposit", later(1), amount=100, status="failed")) == before


def test_a_withdrawal_changes_nothing() -> None:
    before = registered()
    assert apply(before, ev("withdrawal", later(1), amount=100, status="completed")) == before


def test_account_snapshot_sets_balance_and_trading() -> None:
    client = run(ev("account_snapshot", later(1), balance="1000.5", equity=980, margin_level=350, open_positions=2, floating_pnl="-19.5"))
    assert client["balance"] == Decimal("1000.5") and client["snapshot_at"] == later(1)
    assert client["trading"] == {
        "balance": Decimal("1000.5"), "equity": Decimal(980), "margin_level": Decimal(350),
        "open_positions": 2, "floating_pnl": Decimal("-19.5"),
    }


def test_an_older_snapshot_arriving_later_changes_nothing() -> None:
    newer = run(ev("account_snapshot", later(5), balance=700, equity=700, open_positions=0))
    assert apply(newer, ev("account_snapshot", later(1), balance=100, equity=100, open_positions=1)) == newer


def test_contact_sets_status_follow_up_and_count() -> None:
    client = run(ev("contact", later(1), agent_id="a1", channel="call", outcome="callback", callback_at=later(24).isoformat()))
    assert (client["status"], client["last_contact_at"], client["next_follow_up_at"]) == ("callback", later(1), later(24))
    assert client["contact_count"] == 1
    client = apply(client, ev("contact", later(2), agent_id="a1", channel="call", outcome="reached"))
    assert (client["status"], client["next_follow_up_at"], client["contact_count"]) == ("reached", None, 2)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "agent_updated", "agent": {"id": "a1"}},
        {"type": "ib_updated", "ib": {"id": "ib-7", "quality": 1}},
        {"type": "campaign_cost", "source": "google", "amount": 1, "period_start": "2024-05-01", "period_end": "2024-06-01"},
    ],
)
def test_apply_refuses_events_that_are_not_client_events(data: dict[str, Any]) -> None:
    event = parse_event({"id": "x", "at": T0.isoformat(), **data})
    with pytest.raises(ValueError, match="not a client event"):
        apply(registered(), event)


def test_apply_refuses_an_event_of_another_client() -> None:
    event = parse_event({"id": "x", "type": "login", "client_id": "c2", "at": T0.isoformat()})
    with pytest.raises(ValueError, match="c2"):
        apply(registered(), event)


# ---- purity and properties ---------------------------------------------------------------------


_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("client_updated", {"fields": {"email": "b@example.com"}}),
    ("kyc_submitted", {}), ("kyc_approved", {}), ("kyc_rejected", {}),
    ("email_opened", {}), ("email_clicked", {}), ("login", {}),
    ("deposit", {"amount": 100}), ("deposit", {"amount": 100, "status": "failed"}),
    ("withdrawal", {"amount": 50, "status": "requested"}),
    ("trade", {"volume": 1, "pnl": 2}),
    ("account_snapshot", {"balance": 10, "equity": 9, "open_positions": 1}),
    ("contact", {"agent_id": "a1", "channel": "sms", "outcome": "callback", "callback_at": "2024-06-01T00:00:00Z"}),
]


@pytest.mark.parametrize(("type_", "fields"), _EXAMPLES, ids=[t for t, _ in _EXAMPLES])
def test_apply_never_mutates_its_input(type_: str, fields: dict[str, Any]) -> None:
    client = run(ev("account_snapshot", later(1), balance=5, equity=5, open_positions=0))
    before = copy.deepcopy(client)
    after = apply(client, ev(type_, later(2), **fields))
    assert client == before
    assert after is not client and after["trading"] is not client["trading"]


@given(
    st.lists(
        st.tuples(st.integers(0, len(_EXAMPLES) - 1), st.integers(-1000, 1000)),
        max_size=30,
    )
)
def test_any_sequence_of_events_keeps_the_record_consistent(steps: list[tuple[int, int]]) -> None:
    client = registered()
    applied: list[str] = []
    for index, minutes in steps:
        type_, fields = _EXAMPLES[index]
        client = apply(client, ev(type_, T0 + timedelta(minutes=minutes), **fields))
        applied.append(f"{type_}:{fields.get('status', 'completed')}")
    assert client["stage"] in STAGES
    assert (client["ftd_at"] is not None) == ("deposit:completed" in applied)
    funded = has_ftd = False  # the FTD funds; kyc_rejected sets back; approved again, funded again
    for step in applied:
        if step == "deposit:completed" and not has_ftd:
            funded = has_ftd = True
        elif step.startswith("kyc_rejected"):
            funded = False
        elif step.startswith("kyc_approved") and has_ftd:
            funded = True
    assert (client["stage"] == "funded") == funded
    assert client["email_opens"] == applied.count("email_opened:completed")
    assert client["email_clicks"] == applied.count("email_clicked:completed")
    assert client["contact_count"] == applied.count("contact:completed")
