"""What an expression may name: the built-in roots and fields of SPEC §3, and the environment
of one position in a rule file (which roots, lists, scores and bands it may use)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from crmcore.rules.types import BOOL, INT, NUMBER, STRING, TIMESTAMP, Type, list_of

STAGES = ("registered", "kyc_submitted", "kyc_approved", "funded")

CLIENT_FIELDS: Mapping[str, Type] = MappingProxyType({
    "id": STRING,
    "registered_at": TIMESTAMP,
    "country": STRING,
    "region": STRING.null(),
    "language": STRING.null(),
    "email": STRING.null(),
    "phone_verified": BOOL,
    "ib_id": STRING.null(),
    "source": STRING.null(),
    "campaign": STRING.null(),
    "manager_id": STRING.null(),
    "stage": STRING,
    "kyc_submitted_at": TIMESTAMP.null(),
    "kyc_approved_at": TIMESTAMP.null(),
    "ftd_at": TIMESTAMP.null(),
    "ftd_amount": NUMBER.null(),
    "balance": NUMBER,
    "last_login_at": TIMESTAMP.null(),
    "last_trade_at": TIMESTAMP.null(),
    "last_deposit_at": TIMESTAMP.null(),
    "email_opens": INT,
    "email_clicks": INT,
    "status": STRING,
    "desk_id": STRING.null(),
    "agent_id": STRING.null(),
})

# Built-in fields that a host's record may leave out: their value before any event says otherwise.
CLIENT_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "phone_verified": False,
    "balance": 0,
    "email_opens": 0,
    "email_clicks": 0,
    "status": "new",
})

IB_FIELDS: Mapping[str, Type] = MappingProxyType({
    "id": STRING,
    "quality": NUMBER,
    "agent_id": STRING.null(),
    "manager_id": STRING.null(),
})

TRADING_FIELDS: Mapping[str, Type] = MappingProxyType({
    "balance": NUMBER,
    "equity": NUMBER.null(),
    "margin_level": NUMBER.null(),
    "open_positions": INT.null(),
    "floating_pnl": NUMBER.null(),
})

AGENT_FIELDS: Mapping[str, Type] = MappingProxyType({
    "id": STRING,
    "name": STRING.null(),
    "desk": STRING,
    "role": STRING,
    "languages": list_of(STRING),
    "countries": list_of(STRING),
    "capacity": INT.null(),
    "weight": NUMBER,
    "open": INT,
})

_EVENT_COMMON: dict[str, Type] = {"id": STRING, "type": STRING, "client_id": STRING, "at": TIMESTAMP}

EVENT_FIELDS: Mapping[str, Mapping[str, Type]] = MappingProxyType({
    "client_registered": {
        **_EVENT_COMMON,
        **{name: CLIENT_FIELDS[name] for name in (
            "country", "language", "email", "ib_id", "source", "campaign", "manager_id", "region",
        )},
        "phone_verified": BOOL.null(),
    },
    "client_updated": {**_EVENT_COMMON},
    "kyc_submitted": {**_EVENT_COMMON},
    "kyc_approved": {**_EVENT_COMMON},
    "kyc_rejected": {**_EVENT_COMMON},
    "email_opened": {**_EVENT_COMMON},
    "email_clicked": {**_EVENT_COMMON},
    "login": {**_EVENT_COMMON},
    "deposit": {**_EVENT_COMMON, "amount": NUMBER, "currency": STRING.null(), "status": STRING},
    "withdrawal": {**_EVENT_COMMON, "amount": NUMBER, "status": STRING},
    "withdrawal_failed": {**_EVENT_COMMON, "amount": NUMBER, "status": STRING},
    "trade": {**_EVENT_COMMON, "volume": NUMBER, "pnl": NUMBER, "revenue": NUMBER.null(), "symbol": STRING.null()},
    "account_snapshot": {
        **_EVENT_COMMON,
        "balance": NUMBER,
        "equity": NUMBER,
        "margin_level": NUMBER.null(),
        "open_positions": INT,
        "floating_pnl": NUMBER.null(),
    },
    "contact": {
        **_EVENT_COMMON,
        "agent_id": STRING,
        "channel": STRING,
        "outcome": STRING,
        "callback_at": TIMESTAMP.null(),
        "note": STRING.null(),
    },
})

# (source, metric) -> result type of an activity window such as deposits.sum(30d)
WINDOWS: Mapping[tuple[str, str], Type] = MappingProxyType({
    ("emails", "opens"): INT,
    ("emails", "clicks"): INT,
    ("contacts", "count"): INT,
    ("deposits", "count"): INT,
    ("deposits", "sum"): NUMBER,
    ("withdrawals", "sum"): NUMBER,
    ("withdrawals", "failed"): INT,
    ("trades", "count"): INT,
    ("trades", "volume"): NUMBER,
    ("trades", "pnl"): NUMBER,
    ("logins", "count"): INT,
})

ROOTS = ("client", "ib", "trading", "agent", "event", "score", "band", "now")


@dataclass(frozen=True)
class Env:
    """The names one expression position may use.

    ``agent`` is available only inside ``require``; ``event`` only in ``on:`` triggers,
    typed by the trigger's event type.
    """

    client: Mapping[str, Type] = field(default_factory=lambda: CLIENT_FIELDS)
    lists: Mapping[str, Type] = field(default_factory=dict)
    bands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # score name -> its bands
    agent: bool = False
    event: Mapping[str, Type] | None = None
    event_type: str | None = None

    @property
    def scores(self) -> frozenset[str]:
        return frozenset(self.bands)

    def with_agent(self) -> Env:
        return replace(self, agent=True)

    def with_event(self, event_type: str, fields: Mapping[str, Type]) -> Env:
        return replace(self, event=fields, event_type=event_type)


def client_fields(extra: Mapping[str, Type]) -> Mapping[str, Type]:
    """Built-in client fields plus a rule set's ``schema: client:`` fields."""
    return MappingProxyType({**CLIENT_FIELDS, **extra})
