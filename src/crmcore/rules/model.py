"""The rule-file format of SPEC §2 as pydantic models (structure only).

Expressions are kept here as their text; the loader checks and compiles them.
Both syntaxes (YAML, ``.crm``) produce this model, and its canonical dump is
what the rule-set version hashes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from crmcore.rules.hours import WorkingHours
from crmcore.rules.schema import EVENT_FIELDS
from crmcore.rules.yamlsource import expression_text

DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """``"14d"`` -> 1209600.0; raises ValueError for anything else."""
    match = DURATION_TEXT.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a duration (write e.g. 90s, 15m, 24h, 30d, 2w)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _expression(value: Any) -> str:
    if isinstance(value, bool | int | float | str) or value is None:
        return expression_text(value)
    raise ValueError("must be an expression (a string such as 'client.country in TIER1')")


def _duration(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"'{value}' has no unit (write e.g. {value}d or {value}h)")
    text = str(value).strip()
    duration_seconds(text)
    return text


Expression = Annotated[str, BeforeValidator(_expression)]
# a number, not a bool, NaN or inf; -0.0 is 0.0 (the same number, one canonical form)
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True), AfterValidator(lambda x: x + 0.0)]
WholeNumber = Annotated[int, Field(strict=True)]
DurationText = Annotated[str, BeforeValidator(_duration)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")]
ListName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(Strict):
    type: str
    default: Any = None


class SchemaBlock(Strict):
    client: dict[ListName, str | FieldSpec] = {}


class Sla(Strict):
    first_contact: DurationText | None = None


class Desk(Strict):
    id: Identifier
    name: str | None = None
    kind: Literal["sales", "retention"] = "sales"
    sla: Sla = Sla()
    on_sla_breach: Literal["reassign", "alert"] = "alert"


class Agent(Strict):
    id: Identifier
    name: str | None = None
    desk: str
    manager: str | None = None
    role: Literal["agent", "manager", "admin"] = "agent"
    languages: list[str] = []
    countries: list[str] = []
    capacity: int | None = Field(default=None, ge=0)
    weight: float = Field(default=1.0, gt=0)
    active: bool = True
    hours: str | None = None  # "Mon-Fri 09:00-18:00 Europe/Berlin" (see rules/hours.py)
    away_until: datetime | None = None
    email: str | None = None


    @field_validator("hours")
    @classmethod
    def _working_hours(cls, value: str | None) -> str | None:
        if value is not None:
            WorkingHours.parse(value)  # raises ValueError saying what is wrong
        return value


class ScoreRule(Strict):
    name: Identifier
    when: Expression = "true"
    points: Expression


class Score(Strict):
    rules: list[ScoreRule]
    bands: dict[str, Finite | None] = {}


Strategy = Literal["round_robin", "least_loaded", "weighted", "pool"]


class Assign(Strict):
    agent: Expression | None = None
    desk: str | None = None
    strategy: Strategy | None = None
    require: Expression | None = None


class RouteRule(Strict):
    name: Identifier
    when: Expression = "true"
    assign: Assign


class Routing(Strict):
    registration: list[RouteRule] = []
    ftd: list[RouteRule] = []


Recipient = Literal["agent", "manager", "desk", "client"]
TRIGGER_EVENTS = tuple(sorted(EVENT_FIELDS))


class Trigger(Strict):
    name: Identifier
    on: str | None = None
    when: Expression = "true"
    queue: str | None = None
    priority: Expression | None = None
    actions: list[str] = []
    notify: list[Recipient] = []
    cooldown: DurationText | None = None

    @field_validator("on")
    @classmethod
    def _known_event(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENT_FIELDS:
            raise ValueError(f"unknown event type '{value}' (one of {', '.join(TRIGGER_EVENTS)})")
        return value


KPI_METRICS = (
    "registrations", "ftd_count", "ftd_conversion_rate", "avg_time_to_ftd_days", "net_deposits",
    "revenue", "revenue_per_agent", "clv", "clv_net_deposits", "active_clients", "churn_rate",
    "reactivation_rate", "cpa", "first_contact_sla_rate",
)


class Target(Strict):
    metric: Literal[KPI_METRICS]  # type: ignore[valid-type]
    per: Literal["agent", "team", "desk"]
    period: Literal["day", "week", "month"]
    value: Finite
    desk: str | None = None


class RuleFile(Strict):
    """One rule file, or the merge of several."""

    version: Literal[1] = 1
    lists: dict[ListName, list[str | WholeNumber | Finite]] = {}
    schema_: SchemaBlock = Field(default=SchemaBlock(), alias="schema")
    desks: list[Desk] = []
    agents: list[Agent] = []
    scores: dict[ListName, Score] = {}
    routing: Routing = Routing()
    triggers: list[Trigger] = []
    targets: list[Target] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
