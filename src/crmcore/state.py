"""Client state (SPEC §3, §5, §11 "Client state"): how events change a client's record.

Pure functions, no store and no I/O. :func:`new_client` builds the record of a
``client_registered`` event; :func:`apply` returns a *new* record with one event applied and
never mutates its input (the engine relies on this so that nothing is half-applied).

The record is a plain dict with every built-in client field of :data:`CLIENT_FIELDS`, the
rule set's ``schema`` fields, and a few bookkeeping keys: ``trading`` (the last account
snapshot), ``snapshot_at``, ``last_contact_at``, ``next_follow_up_at`` and ``contact_count``.

Semantics, event by event (events are applied in arrival order):

- ``client_registered`` (:func:`new_client` only): ``id`` = ``client_id``,
  ``registered_at`` = ``at``, the registration fields as given (``ib_id``, ``source``, ...;
  ``None`` when absent), stage ``registered``, the built-in defaults of
  :data:`CLIENT_DEFAULTS` (balance 0, email_opens/clicks 0, phone_verified False unless given,
  status ``new``), every other built-in field ``None``, and the schema fields as given, else
  their declared default, else ``None`` when nullable (a required one missing is a
  ``ValueError``; :func:`crmcore.events.parse_event` already refuses such events).
- ``client_updated``: each given field replaces the record's value, as the host sent it
  (a host correction; it may also set ``stage``).
- Stages only move forward: ``registered`` < ``kyc_submitted`` < ``kyc_approved`` <
  ``funded``. ``kyc_submitted`` sets ``kyc_submitted_at``; ``kyc_approved`` sets
  ``kyc_approved_at``; a KYC event for a client already further along keeps the stage.
  Both timestamps keep the latest time, so a re-submission after a rejection moves it on.
- ``kyc_rejected`` sets the client back to ``registered`` (SPEC §11), a funded one too, and
  changes nothing else: ``kyc_submitted_at``, ``kyc_approved_at`` and the FTD (``ftd_at``,
  ``ftd_amount``: it happened) are kept. A client with an FTD whose KYC is approved again
  is ``funded`` again.
- ``email_opened`` / ``email_clicked``: ``email_opens`` / ``email_clicks`` + 1.
- ``login``: ``last_login_at``; ``trade``: ``last_trade_at``. Every ``last_*_at`` keeps the
  latest time: an older event arriving later does not move it back.
- ``deposit`` (completed): the first one applied is the FTD and sets ``ftd_at``,
  ``ftd_amount`` and stage ``funded`` (also before KYC approval); every completed deposit
  sets ``last_deposit_at`` (latest). A failed deposit changes nothing.
- ``withdrawal``: no change (the balance comes from account snapshots).
- ``account_snapshot``: ``balance`` and ``trading`` (``balance``, ``equity``,
  ``margin_level``, ``open_positions``, ``floating_pnl``) from the snapshot with the latest
  ``at``, kept in ``snapshot_at``; an older snapshot arriving later changes nothing (one with
  the same ``at`` replaces it: arrival order breaks the tie). Before any snapshot
  ``trading.balance`` is 0 and the rest ``None``.
- ``contact``: ``status`` = the outcome, ``last_contact_at`` (latest),
  ``next_follow_up_at`` = ``callback_at`` when the outcome is ``callback``, else ``None``;
  ``contact_count`` + 1. Status and follow-up follow arrival order.
- ``agent_updated``, ``ib_updated``, ``campaign_cost`` are not client events, and
  ``client_registered`` is handled by :func:`new_client`: :func:`apply` raises
  ``ValueError`` for them, and for an event of another client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from crmcore.events import (
    AccountSnapshot,
    ClientRegistered,
    ClientUpdated,
    Contact,
    Deposit,
    EmailClicked,
    EmailOpened,
    Event,
    KycApproved,
    KycRejected,
    KycSubmitted,
    Login,
    Trade,
    Withdrawal,
)
from crmcore.rules.ruleset import RuleSet
from crmcore.rules.schema import CLIENT_DEFAULTS, CLIENT_FIELDS, STAGES

__all__ = ["STAGE_RANK", "apply", "new_client"]

STAGE_RANK: Mapping[str, int] = {stage: rank for rank, stage in enumerate(STAGES)}

_REGISTRATION_FIELDS = (
    "country", "language", "email", "ib_id", "source", "campaign", "manager_id", "region",
)


def _copy(value: Any) -> Any:
    """A deep copy of dicts, lists and sets; anything else is immutable here (strings,
    numbers, Decimals, datetimes, tuples of them) and is shared — far cheaper than
    ``copy.deepcopy`` on the hot path."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, set):
        return {_copy(item) for item in value}
    return value


def _empty_trading() -> dict[str, Any]:
    return {
        "balance": CLIENT_DEFAULTS["balance"],
        "equity": None,
        "margin_level": None,
        "open_positions": None,
        "floating_pnl": None,
    }


def new_client(event: ClientRegistered, rules: RuleSet | None = None) -> dict[str, Any]:
    """The record of a newly registered client (see the module docstring)."""
    client: dict[str, Any] = dict.fromkeys(CLIENT_FIELDS)
    client.update(CLIENT_DEFAULTS)
    client["id"] = event.client_id
    client["registered_at"] = event.at
    client["stage"] = STAGES[0]
    for name in _REGISTRATION_FIELDS:
        client[name] = getattr(event, name)
    if event.phone_verified is not None:
        client["phone_verified"] = event.phone_verified
    client.update(
        trading=_empty_trading(), snapshot_at=None,
        last_contact_at=None, next_follow_up_at=None, contact_count=0,
    )
    given = event.schema_fields
    if rules is not None:
        for name, t in rules.client_types.items():
            if name in CLIENT_FIELDS or name in given:
                continue
            if name in rules.defaults:
                client[name] = _copy(rules.defaults[name])
            elif t.nullable:
                client[name] = None
            else:
                raise ValueError(f"client_registered.{name}: required schema field missing")
    client.update(_copy(given))
    return client


def _latest(old: datetime | None, new: datetime) -> datetime:
    return new if old is None or new > old else old


def _forward(stage: str, to: str) -> str:
    return to if STAGE_RANK.get(stage, -1) < STAGE_RANK[to] else stage


def apply(client: Mapping[str, Any], event: Event) -> dict[str, Any]:
    """A new record: ``client`` with ``event`` applied (see the module docstring).

    Raises ``ValueError`` for an event that is not a client event (agent, IB, campaign cost),
    for a registration, or for an event of another client."""
    if isinstance(event, ClientRegistered):
        raise ValueError("client_registered starts a client: use new_client")
    client_id = getattr(event, "client_id", None)
    if client_id is None:
        raise ValueError(f"{event.type} is not a client event")
    if client_id != client.get("id"):
        raise ValueError(f"{event.type} is for client {client_id!r}, not {client.get('id')!r}")

    new: dict[str, Any] = _copy(dict(client))
    if isinstance(event, ClientUpdated):
        new.update(_copy(event.fields))
    elif isinstance(event, KycSubmitted):
        new["stage"] = _forward(new["stage"], "kyc_submitted")
        new["kyc_submitted_at"] = _latest(new.get("kyc_submitted_at"), event.at)
    elif isinstance(event, KycApproved):
        new["stage"] = _forward(new["stage"], "funded" if new.get("ftd_at") is not None else "kyc_approved")
        new["kyc_approved_at"] = _latest(new.get("kyc_approved_at"), event.at)
    elif isinstance(event, KycRejected):
        new["stage"] = "registered"
    elif isinstance(event, EmailOpened):
        new["email_opens"] = new.get("email_opens", 0) + 1
    elif isinstance(event, EmailClicked):
        new["email_clicks"] = new.get("email_clicks", 0) + 1
    elif isinstance(event, Login):
        new["last_login_at"] = _latest(new.get("last_login_at"), event.at)
    elif isinstance(event, Trade):
        new["last_trade_at"] = _latest(new.get("last_trade_at"), event.at)
    elif isinstance(event, Deposit):
        if event.status == "completed":
            if new.get("ftd_at") is None:
                new["ftd_at"] = event.at
                new["ftd_amount"] = event.amount
                new["stage"] = "funded"
            new["last_deposit_at"] = _latest(new.get("last_deposit_at"), event.at)
    elif isinstance(event, Withdrawal):
        pass
    elif isinstance(event, AccountSnapshot):
        seen = new.get("snapshot_at")
        if seen is None or event.at >= seen:
            new["snapshot_at"] = event.at
            new["balance"] = event.balance
            new["trading"] = {
                "balance": event.balance,
                "equity": event.equity,
                "margin_level": event.margin_level,
                "open_positions": event.open_positions,
                "floating_pnl": event.floating_pnl,
            }
    elif isinstance(event, Contact):
        new["status"] = event.outcome
        new["last_contact_at"] = _latest(new.get("last_contact_at"), event.at)
        new["next_follow_up_at"] = event.callback_at if event.outcome == "callback" else None
        new["contact_count"] = new.get("contact_count", 0) + 1
    else:  # pragma: no cover - every client event type is handled above
        raise ValueError(f"{event.type} is not a client event")
    return new
