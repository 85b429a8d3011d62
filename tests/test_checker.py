"""The type checker: what each operator and function accepts, and the errors it gives."""

from __future__ import annotations

import pytest

from crmcore.rules.checker import check_text
from crmcore.rules.diagnostics import Code, RuleError
from crmcore.rules.schema import EVENT_FIELDS, Env
from crmcore.rules.types import STRING, Type, list_of, parse_type

ENV = Env(lists={"TIER1": list_of(STRING)}, bands={"lead": ("hot", "warm", "cold")})


def type_of(text: str, env: Env = ENV) -> str:
    node = check_text(text, env)
    assert node.type is not None
    return str(node.type)


def error_of(text: str, env: Env = ENV) -> tuple[str, int, str]:
    with pytest.raises(RuleError) as info:
        check_text(text, env)
    d = info.value.diagnostics[0]
    return d.code, d.column, d.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("client.country in TIER1", "bool"),
        ("client.kyc_submitted_at - client.registered_at", "duration?"),
        ("client.kyc_submitted_at - client.registered_at <= 24h", "bool"),
        ("now - 30d", "timestamp"),
        ("ib.quality * 0.2", "number?"),
        ("ib", "record?"),
        ("7 / 2", "number?"),
        ("7 % 2", "int?"),
        ("client.email_clicks + 1", "int"),
        ("client.balance + 1", "number"),
        ("days_since(client.last_trade_at)", "number?"),
        ("hours_since(client.registered_at)", "number"),
        ("days_between(client.registered_at, client.ftd_at)", "number?"),
        ("coalesce(client.language, 'en')", "string"),
        ("coalesce(client.language, client.region)", "string?"),
        ("len(TIER1)", "int"),
        ("round(client.balance)", "int"),
        ("min(client.balance, 10)", "number"),
        ("if client.phone_verified then 1 else 2.5", "number"),
        ("if client.phone_verified then 'a' else null", "string?"),
        ("score.lead", "number"),
        ("band.lead", "string"),
        ("deposits.sum(30d)", "number"),
        ("deposits.count(30d, 30d)", "int"),
        ("trading.margin_level", "number?"),
        ("trading.balance", "number"),
        ("-24h", "duration"),
        ("24h / 1h", "number?"),
        ("2 * 24h", "duration"),
        ("[1, 2.5]", "list<number>"),
        # SPEC 3: arithmetic with null is null, a comparison with null is false (a literal
        # null takes the other side's type)
        ("client.balance < null", "bool"),
        ("null + 1", "int?"),
        ("1.5 / null", "number?"),
        ("client.registered_at - null", "duration?"),
        ("abs(null)", "null"),
        ("-null", "null"),
        ("null in ['DE']", "bool"),
        ("min(null, 1)", "int?"),
        ("max(client.balance, null)", "number?"),
        ("now + null", "timestamp?"),
        ("null * 24h", "duration?"),
        ("upper(client.country)", "string"),
        ("startswith(client.email, 'vip')", "bool?"),
        ("startswith(client.country, 'D')", "bool"),
    ],
)
def test_expression_types(text: str, expected: str) -> None:
    assert type_of(text) == expected


@pytest.mark.parametrize(
    ("text", "code", "column", "fragment"),
    [
        ("client.contry == 'DE'", Code.UNKNOWN_NAME, 1, "did you mean 'country'"),
        ("clinet.country == 'DE'", Code.UNKNOWN_NAME, 1, "did you mean 'client'"),
        ("TIER2", Code.UNKNOWN_NAME, 1, "unknown name"),
        ("client.balance > 'x'", Code.TYPE_MISMATCH, 16, "'>' applied to (number, string)"),
        ("1 + 'a'", Code.TYPE_MISMATCH, 3, "'+' applied to (int, string)"),
        ("client.balance % 2", Code.TYPE_MISMATCH, 16, "'%' takes integers"),
        ("lower(client.email, 1)", Code.ARITY, 1, "takes 1 argument, got 2"),
        ("coalesce(1)", Code.ARITY, 1, "2 or more"),
        ("lower(1)", Code.TYPE_MISMATCH, 1, "expects a string"),
        ("frobnicate(1)", Code.UNKNOWN_NAME, 1, "unknown function"),
        ("client.email matches '(a'", Code.BAD_REGEX, 22, "invalid regex"),
        ("client.email matches '(a+)+$'", Code.BAD_REGEX, 22, "exponential"),
        ("client.email matches client.country", Code.BAD_REGEX, 22, "string literal"),
        ("agent.languages", Code.FORBIDDEN, 1, "only available inside"),
        ("event.amount > 1", Code.FORBIDDEN, 1, "only available in triggers"),
        ("client.__class__", Code.FORBIDDEN, 1, "not allowed"),
        ("client._secret", Code.FORBIDDEN, 1, "not allowed"),
        ("band.lead == 'hott'", Code.UNKNOWN_BAND, 14, "no band 'hott'"),
        ("client", Code.TYPE_MISMATCH, 1, "is a record"),
        ("ib == 1", Code.TYPE_MISMATCH, 4, "only be compared with null"),
        ("null < null", Code.TYPE_MISMATCH, 6, "no matching overload for '<' applied to (null, null)"),
        ("null + 'a'", Code.TYPE_MISMATCH, 6, "no matching overload for '+'"),
        # only a bare null stands for a value of the other side's type (SQL has no type for
        # an expression that is always null)
        ("(if client.phone_verified then null else null) + 1", Code.TYPE_MISMATCH, 46, "no matching overload for '+'"),
        ("[1, 'a']", Code.TYPE_MISMATCH, 5, "share a type"),
        ("[null]", Code.TYPE_MISMATCH, 2, "cannot hold null"),
        ("deposits.count", Code.UNKNOWN_NAME, 1, "activity window"),
        ("deposits.average(30d)", Code.UNKNOWN_NAME, 1, "unknown activity window"),
        ("not client.balance", Code.TYPE_MISMATCH, 5, "needs a bool"),
        ("if 1 then 2 else 3", Code.NOT_BOOL, 4, "must be a bool"),
        ("if true then 2 else 'x'", Code.TYPE_MISMATCH, 1, "different types"),
        ("client.country in client.country", Code.TYPE_MISMATCH, 19, "needs a list"),
        ("client.registered_at + client.registered_at", Code.TYPE_MISMATCH, 22, "(timestamp, timestamp)"),
    ],
)
def test_type_errors_name_the_problem_and_position(text: str, code: str, column: int, fragment: str) -> None:
    got_code, got_column, message = error_of(text)
    assert (got_code, got_column) == (code, column), message
    assert fragment in message


def test_every_error_of_an_expression_is_reported() -> None:
    with pytest.raises(RuleError) as info:
        check_text("client.contry == 'DE' and lower(1) == 'x' and frob(2)", ENV)
    assert [d.code for d in info.value.diagnostics] == [Code.UNKNOWN_NAME, Code.TYPE_MISMATCH, Code.UNKNOWN_NAME]


def test_a_mistake_is_reported_once_not_by_every_operator_above_it() -> None:
    with pytest.raises(RuleError) as info:
        check_text("(client.nope + 1) * 2 > 3 and true", ENV)
    assert len(info.value.diagnostics) == 1


def test_agent_is_available_inside_require() -> None:
    assert type_of("client.language in agent.languages and agent.open < 10", ENV.with_agent()) == "bool"


def test_event_fields_are_typed_by_the_trigger_event() -> None:
    env = ENV.with_event("deposit", EVENT_FIELDS["deposit"])
    assert type_of("event.amount > 1000 and event.currency == 'EUR'", env) == "bool"
    with pytest.raises(RuleError):
        check_text("event.volume > 1", env)


def test_schema_fields_extend_client() -> None:
    env = Env(client={**ENV.client, "vip": Type("bool"), "utm_campaign": STRING.null()})
    assert type_of("client.vip and client.utm_campaign != null", env) == "bool"


@pytest.mark.parametrize(("text", "expected"), [("string?", "string?"), ("bool", "bool"), ("list<string>", "list<string>"), ("timestamp?", "timestamp?")])
def test_schema_type_names(text: str, expected: str) -> None:
    assert str(parse_type(text)) == expected


@pytest.mark.parametrize("text", ["str", "list<list<int>>", "number??", ""])
def test_bad_schema_type_names(text: str) -> None:
    with pytest.raises(ValueError):
        parse_type(text)
