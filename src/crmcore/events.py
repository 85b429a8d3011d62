"""Events (SPEC §5): what a broker's back office tells crmcore, one JSON object per line.

Each event type is a frozen pydantic model with a ``type`` discriminator; :data:`Event` is
their union. Timestamps become aware UTC datetimes, money and volumes exact ``Decimal``.
``client_registered`` and ``client_updated`` also carry the rule set's ``schema`` fields,
so they are validated with :func:`parse_event` (given the rule set), not by pydantic alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from crmcore.rules.diagnostics import CrmError
from crmcore.rules.model import Agent
from crmcore.rules.ruleset import RuleSet
from crmcore.rules.schema import CLIENT_DEFAULTS, CLIENT_FIELDS
from crmcore.rules.types import Type

__all__ = [
    "AccountSnapshot", "AgentUpdated", "BadEvent", "CampaignCost", "ClientRegistered",
    "ClientUpdated", "Contact", "Deposit", "EmailClicked", "EmailOpened", "Event", "EventError",
    "Ib", "IbUpdated", "KycApproved", "KycRejected", "KycSubmitted", "Login", "Trade", "Withdrawal",
    "events_json_schema", "parse_event", "read_events",
]


class EventError(CrmError):
    """An event that fails validation; the message names the field (``deposit.amount: ...``)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems  # (field path, message), e.g. ("deposit.amount", "Input should be ...")
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))

    @property
    def field(self) -> str:
        """The first field at fault."""
        return self.problems[0][0]


def _to_utc(value: datetime) -> datetime:
    # Hosts send local offsets or nothing at all: both become UTC, naive text is read as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_to_utc)]
Text = Annotated[str, StringConstraints(min_length=1)]
Money = Annotated[Decimal, Field(allow_inf_nan=False)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text
    at: Timestamp

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name, as ``dict.get`` would: activity windows read events this way,
        so a store can hand them its event models without copying them into dicts."""
        return getattr(self, name, default)


class _ClientEvent(_Event):
    client_id: Text


class ClientRegistered(_ClientEvent):
    """A new client; ``at`` is their ``registered_at``. Schema fields are kept in ``model_extra``."""

    # The rule set decides which extra fields exist: parse_event checks them.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["client_registered"]
    country: Text
    language: str | None = None
    email: str | None = None
    phone_verified: bool | None = None
    ib_id: str | None = None
    source: str | None = None
    campaign: str | None = None
    manager_id: str | None = None
    region: str | None = None

    @property
    def schema_fields(self) -> dict[str, Any]:
        """The rule set's ``schema`` fields given at registration (with their defaults)."""
        return dict(self.model_extra or {})


class ClientUpdated(_ClientEvent):
    """New values of client fields (built in or schema); checked by parse_event."""

    type: Literal["client_updated"]
    fields: dict[str, Any]


class KycSubmitted(_ClientEvent):
    type: Literal["kyc_submitted"]


class KycApproved(_ClientEvent):
    type: Literal["kyc_approved"]


class KycRejected(_ClientEvent):
    type: Literal["kyc_rejected"]


class EmailOpened(_ClientEvent):
    type: Literal["email_opened"]


class EmailClicked(_ClientEvent):
    type: Literal["email_clicked"]


class Login(_ClientEvent):
    type: Literal["login"]


class Deposit(_ClientEvent):
    type: Literal["deposit"]
    amount: Annotated[Money, Field(gt=0)]
    currency: str | None = None
    status: Literal["completed", "failed"] = "completed"


class Withdrawal(_ClientEvent):
    """A failed withdrawal is also the ``withdrawal_failed`` trigger event."""

    type: Literal["withdrawal"]
    amount: Annotated[Money, Field(gt=0)]
    status: Literal["requested", "completed", "failed"]


class Trade(_ClientEvent):
    type: Literal["trade"]
    volume: Annotated[Money, Field(ge=0)]
    pnl: Money
    revenue: Money | None = None  # the broker's revenue
    symbol: str | None = None


class AccountSnapshot(_ClientEvent):
    type: Literal["account_snapshot"]
    balance: Money
    equity: Money
    margin_level: Money | None = None
    open_positions: Annotated[int, Field(ge=0)]
    floating_pnl: Money | None = None


class Contact(_ClientEvent):
    type: Literal["contact"]
    agent_id: Text
    channel: Literal["call", "email", "sms", "chat"]
    outcome: Literal["no_answer", "reached", "interested", "callback", "not_interested", "wrong_number"]
    callback_at: Timestamp | None = None  # the next follow-up, with outcome callback
    note: str | None = None


@cache
def _agent_field(name: str) -> TypeAdapter[Any]:
    info = Agent.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation)


class AgentUpdated(_Event):
    """An agent's fields, as in a rule file's ``agents:``; ``id`` names the agent, the rest is partial."""

    type: Literal["agent_updated"]
    agent: dict[str, Any]

    @field_validator("agent")
    @classmethod
    def _agent_fields(cls, agent: dict[str, Any]) -> dict[str, Any]:
        if "id" not in agent:
            raise ValueError("agent.id is required")
        checked: dict[str, Any] = {}
        for name, value in agent.items():
            if name not in Agent.model_fields:
                raise ValueError(f"field '{name}': unknown agent field")
            try:
                checked[name] = _agent_field(name).validate_python(value)
            except ValidationError as err:
                raise ValueError(f"field '{name}': {err.errors()[0]['msg']}") from None
        return checked


class Ib(BaseModel):
    """An introducing broker, as the rules see it under ``ib.*``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text
    quality: Money
    agent_id: str | None = None
    manager_id: str | None = None


class IbUpdated(_Event):
    type: Literal["ib_updated"]
    ib: Ib


class CampaignCost(_Event):
    """Marketing spend for a source (and campaign) over ``[period_start, period_end)``."""

    type: Literal["campaign_cost"]
    source: Text
    campaign: str | None = None
    amount: Annotated[Money, Field(ge=0)]
    period_start: date
    period_end: date

    @field_validator("period_end")
    @classmethod
    def _period_is_not_empty(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("period_start")
        if start is not None and start >= end:
            raise ValueError("must be after period_start (the end is exclusive)")
        return end


Event: TypeAlias = Annotated[
    ClientRegistered | ClientUpdated | KycSubmitted | KycApproved | KycRejected | EmailOpened
    | EmailClicked | Login | Deposit | Withdrawal | Trade | AccountSnapshot | Contact
    | AgentUpdated | IbUpdated | CampaignCost,
    Field(discriminator="type"),
]

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def events_json_schema() -> dict[str, Any]:
    """The JSON Schema of every event (hosts validate on their side with it)."""
    return _EVENT.json_schema()


# ---- schema fields ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClientSchema:
    extra: Mapping[str, Type]  # the rule set's schema fields
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, rules: RuleSet | Mapping[str, Type] | None) -> _ClientSchema:
        if rules is None:
            return cls({}, {})
        if isinstance(rules, RuleSet):
            extra = {name: t for name, t in rules.client_types.items() if name not in CLIENT_FIELDS}
            return cls(extra, {n: v for n, v in rules.defaults.items() if n not in CLIENT_DEFAULTS})
        return cls(dict(rules), {})


def _python_type(t: Type) -> Any:
    base: Any
    if t.base == "list":
        assert t.elem is not None
        base = list[_python_type(t.elem)]  # type: ignore[misc]
    else:
        base = {
            "bool": bool, "int": int, "number": Money, "string": str,
            "timestamp": Timestamp, "duration": timedelta,
        }[t.base]
    return base | None if t.nullable else base


@cache
def _adapter(t: Type) -> TypeAdapter[Any]:
    return TypeAdapter(_python_type(t))


def _check_value(where: str, t: Type, value: Any, problems: list[tuple[str, str]]) -> Any:
    try:
        return _adapter(t).validate_python(value)
    except ValidationError as err:
        problems.extend(_problems(err, where))
        return None


def _schema_fields(event: ClientRegistered, schema: _ClientSchema) -> ClientRegistered:
    problems: list[tuple[str, str]] = []
    given = event.model_extra or {}
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in schema.extra:
            problems.append((f"client_registered.{name}", "unknown field (neither built in nor in the rule set's schema)"))
        else:
            values[name] = _check_value(f"client_registered.{name}", schema.extra[name], value, problems)
    for name, t in schema.extra.items():
        if name in given:
            continue
        if name in schema.defaults:
            values[name] = schema.defaults[name]
        elif t.nullable:
            values[name] = None
        else:
            problems.append((f"client_registered.{name}", f"Field required (schema field of type {t} without a default)"))
    if problems:
        raise EventError(problems)
    return event.model_copy(update=values)


def _updated_fields(event: ClientUpdated, schema: _ClientSchema) -> ClientUpdated:
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for name, value in event.fields.items():
        where = f"client_updated.fields.{name}"
        t = schema.extra.get(name) or CLIENT_FIELDS.get(name)
        if t is None or name == "id":  # the id is the client's identity, not a field to update
            problems.append((where, "unknown client field (neither built in nor in the rule set's schema)"))
        else:
            values[name] = _check_value(where, t, value, problems)
    if problems:
        raise EventError(problems)
    return event.model_copy(update={"fields": values})


# ---- parsing and reading ----------------------------------------------------------------------


def _problems(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for error in err.errors(include_url=False):
        kind, data = error["type"], error["input"]
        if kind == "union_tag_not_found":
            problems.append(("type", "Field required (the event type)"))
        elif kind == "union_tag_invalid" and isinstance(data, dict):
            problems.append(("type", f"unknown event type {data.get('type')!r}"))
        else:
            where = ".".join(p for p in (prefix, *map(str, error["loc"])) if p) or "event"
            message = "unknown field" if kind == "extra_forbidden" else error["msg"]
            problems.append((where, message.removeprefix("Value error, ")))
    return problems


def parse_event(data: Mapping[str, Any], rules: RuleSet | Mapping[str, Type] | None = None) -> Event:
    """Validate one event. ``rules`` gives the ``schema`` client fields (a RuleSet or name -> Type);
    without it only built-in fields are accepted. Raises :class:`EventError` naming the field."""
    return _parse(data, _ClientSchema.of(rules))


def _parse(data: Mapping[str, Any], schema: _ClientSchema) -> Event:
    try:
        event = _EVENT.validate_python(data)
    except ValidationError as err:
        raise EventError(_problems(err)) from None
    if isinstance(event, ClientRegistered):
        return _schema_fields(event, schema)
    if isinstance(event, ClientUpdated):
        return _updated_fields(event, schema)
    return event


@dataclass(frozen=True, slots=True)
class BadEvent:
    """A line that is not a valid event; the engine dead-letters it with ``reason``."""

    line: int
    raw: str
    reason: str  # "line 7: deposit.amount: Input should be a valid decimal"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def read_events(
    source: str | Path | Iterable[str], rules: RuleSet | Mapping[str, Type] | None = None,
) -> Iterator[Event | BadEvent]:
    """Events from JSON Lines (a path or lines), in order; a bad line yields a :class:`BadEvent`
    instead of raising, so a batch goes on. Blank lines are skipped but counted."""
    schema = _ClientSchema.of(rules)
    if isinstance(source, str | Path):
        with Path(source).open(encoding="utf-8") as lines:
            yield from _read(lines, schema)
    else:
        yield from _read(source, schema)


def _read(lines: Iterable[str], schema: _ClientSchema) -> Iterator[Event | BadEvent]:
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            # Decimal straight from the text keeps amounts exact; NaN and Infinity are refused.
            data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
        except ValueError as err:
            yield BadEvent(number, text, f"line {number}: invalid JSON: {err}")
            continue
        if not isinstance(data, dict):
            yield BadEvent(number, text, f"line {number}: an event must be a JSON object")
            continue
        try:
            yield _parse(data, schema)
        except EventError as err:
            yield BadEvent(number, text, f"line {number}: {err}")
