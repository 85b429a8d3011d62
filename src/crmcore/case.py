"""One client as a rule-test case describes them (SPEC §9), and what the rules make of them.

A *case* is a mapping (a YAML or JSON file for ``crmcore explain --client``, one entry of
``cases:`` in a ``*_test.yaml``)::

    client: {id: c1, country: DE, language: de, registered_at: 2026-03-01T10:00:00Z,
             kyc_submitted_at: 2026-03-01T11:00:00Z, email_clicks: 2}
    ib: {id: IB1, quality: 90}                 # optional
    trading: {balance: 1200, equity: 900}      # optional: the last account snapshot
    events:                                    # optional history up to and including now
      - {type: deposit, amount: 500, ago: 40d} # `ago` (before now) or an explicit `at`
      - {type: trade, ago: 3d}                 # a trade's volume and pnl default to 0
    now: 2026-03-01T12:00:00Z                  # required (or given by the caller)

The client record is the client as the case gives them: the fields given, the built-in defaults
(balance 0, email counters 0, ...), the rule set's ``schema`` defaults, ``stage`` implied by
the timestamps when not given (SPEC §11), timestamps parsed from ISO 8601 text, and the
balance of ``trading`` when the client gives none (the balance is the last snapshot's). The
``events`` are the client's history up to ``now``: :func:`case_context` hands them to
``rules.evaluate`` as the activity windows' history only; :func:`play_case` also applies them
to the client, as the engine would.

:func:`load_case` reads and checks a case; :func:`case_context` gives the context of
``rules.evaluate`` (the record as given, the events only as the history of the activity
windows); :func:`play_case` plays it on a fresh engine as a rule test does (the events
applied to the client); :func:`explain_case` gives the JSON of ``crmcore explain`` from
the played case. Every problem
is a :class:`CaseError` naming the case's source and the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from crmcore.engine import Engine
from crmcore.events import ClientRegistered, EventError, parse_event
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.model import duration_seconds
from crmcore.rules.ruleset import RuleSet
from crmcore.rules.schema import CLIENT_DEFAULTS, CLIENT_FIELDS, IB_FIELDS, TRADING_FIELDS
from crmcore.rules.types import Type
from crmcore.rules.values import infer_stage
from crmcore.storage.records import jsonable

__all__ = ["Case", "CaseError", "Played", "case_context", "explain_case", "load_case", "play_case"]

DEFAULT_CLIENT_ID = "client"
"""The client's id when the case gives none."""

_KEYS = frozenset({"name", "client", "ib", "trading", "events", "now", "expect"})

# A history entry may leave these out ({type: trade, ago: 40d}): a trade of no volume and no
# P&L (it counts in trades.count and moves last_trade_at), a completed withdrawal.
_HISTORY_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "trade": {"volume": 0, "pnl": 0},
    "withdrawal": {"status": "completed"},
}


class CaseError(CrmError):
    """A case that cannot be read or evaluated; the message names the source and the field."""


@dataclass(frozen=True)
class Case:
    """A checked case. ``client``, ``ib`` and ``trading`` hold the values as given (timestamps
    parsed); ``events`` the history entries as given (``ago`` is resolved against ``now`` by
    :func:`case_context`). ``expect`` is kept as given, for rule tests."""

    source: str
    client: Mapping[str, Any]
    ib: Mapping[str, Any] | None = None
    trading: Mapping[str, Any] | None = None
    events: tuple[Mapping[str, Any], ...] = ()
    now: datetime | None = None
    name: str | None = None
    expect: Mapping[str, Any] | None = None

    @property
    def client_id(self) -> str | None:
        """The client's ``id`` when the case gives one."""
        value = self.client.get("id")
        return value if isinstance(value, str) else None

    def error(self, message: str) -> CaseError:
        return CaseError(f"{self.source}: {message}")


def load_case(
    source: str | Path | Mapping[str, Any], *, now: datetime | str | None = None, name: str | None = None,
) -> Case:
    """Read a case from a YAML or JSON file, or take it from a mapping, and check its shape.

    ``now`` overrides the case's ``now``; ``name`` names a mapping in error messages
    (default ``case``, or the case's own ``name``). Raises :class:`CaseError`.
    """
    if isinstance(source, Mapping):
        data: Any = source
        label = name or (source.get("name") if isinstance(source.get("name"), str) else None) or "case"
    else:
        label = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CaseError(f"{label}: no such file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise CaseError(f"{label}: cannot read the file: {err}") from None
        try:
            data = yaml.safe_load(text)  # JSON is YAML too
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            raise CaseError(f"{label}: not valid YAML or JSON{at}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, Mapping):
        raise CaseError(f"{label}: a case must be a mapping with 'client' (and optional ib, trading, events, now)")
    unknown = sorted(str(key) for key in data if key not in _KEYS)
    if unknown:
        raise CaseError(f"{label}: unknown key(s) {', '.join(map(repr, unknown))} (a case has {', '.join(sorted(_KEYS))})")
    client = data.get("client")
    if not isinstance(client, Mapping):
        raise CaseError(f"{label}: 'client' is required and must be a mapping of client fields")
    ib, trading = data.get("ib"), data.get("trading")
    for key, value in (("ib", ib), ("trading", trading)):
        if value is not None and not isinstance(value, Mapping):
            raise CaseError(f"{label}: '{key}' must be a mapping")
    events = data.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        raise CaseError(f"{label}: 'events' must be a list of mappings such as {{type: deposit, amount: 500, ago: 40d}}")
    expect = data.get("expect")
    if expect is not None and not isinstance(expect, Mapping):
        raise CaseError(f"{label}: 'expect' must be a mapping")
    given_now = now if now is not None else data.get("now")
    case_name = data.get("name")
    return Case(
        source=label,
        client={str(k): _timestamp_field(label, f"client.{k}", v) for k, v in client.items()},
        ib=None if ib is None else dict(ib),
        trading=None if trading is None else dict(trading),
        events=tuple(dict(e) for e in events),
        now=None if given_now is None else _timestamp(label, "now", given_now),
        name=case_name if isinstance(case_name, str) else None,
        expect=expect,
    )


def case_context(rules: RuleSet, case: Case, *, now: datetime | str | None = None) -> dict[str, Any]:
    """The context of ``rules.evaluate`` for ``case``: ``client`` (a full record), ``ib``,
    ``trading``, ``events`` (history records, as the engine keeps them) and ``now``.
    ``now`` overrides the case's. Raises :class:`CaseError`."""
    at = _timestamp(case.source, "now", now) if now is not None else case.now
    if at is None:
        raise case.error("'now' is required (give it in the case, or with --now)")
    ib = _ib(case)
    client = _client(rules, case, ib)
    trading = _record(case, "trading", case.trading, TRADING_FIELDS) if case.trading is not None else None
    if trading is None:
        trading = {"balance": client["balance"], **dict.fromkeys(f for f in TRADING_FIELDS if f != "balance")}
    else:
        trading = {**dict.fromkeys(TRADING_FIELDS), **trading}
        if trading["balance"] is None:
            trading["balance"] = client["balance"]
        elif case.client.get("balance") is None:  # the client's balance is the snapshot's (SPEC 11)
            client["balance"] = trading["balance"]
    return {
        "client": client,
        "ib": ib,
        "trading": trading,
        "events": _history(rules, case, client["id"], at),
        "now": at,
    }


def explain_case(rules: RuleSet, case: Case, *, now: datetime | str | None = None) -> dict[str, Any]:
    """Why the rules score, route and flag the case's client as they do, as JSON-ready data:
    the case played as a rule test plays it (:func:`play_case`), then
    :meth:`crmcore.Engine.explain` at ``now`` — ``scores``, ``bands``, ``breakdown`` (per
    score, the points of each rule that held), ``triggers`` (condition triggers that hold at
    ``now``), ``routing`` (the client's latest routing, with its whole trace: an SLA
    reassignment at the scan included), ``assignment`` — and ``fired``: every trigger that
    fired while the case played (what a rule test's ``triggers`` compares)."""
    played = play_case(rules, case, now=now)
    decisions = played.engine.store.decisions(played.client_id)
    return {
        **played.engine.explain(played.client_id, now=played.now),
        "fired": list(dict.fromkeys(name for decision in decisions for name in decision.fired)),
    }


@dataclass(frozen=True)
class Played:
    """A case played on a fresh engine (:func:`play_case`): the engine, the client's id,
    ``now``, and what the engine handled, in order, a line each."""

    engine: Engine
    client_id: str
    now: datetime
    timeline: tuple[str, ...]


def play_case(rules: RuleSet, case: Case, *, now: datetime | str | None = None) -> Played:
    """Play the case as a rule test does (steps 1-5 of :mod:`crmcore.ruletest`): on a fresh
    engine with a MemoryStore (no other client, every rotation at its start) the IB is known,
    the client registers, makes the first deposit of ``ftd_at``, has the ``events`` handled
    in time order, and a scan runs at ``now``. Raises :class:`CaseError`."""
    context = case_context(rules, case, now=now)
    at: datetime = context["now"]
    record, registered_at, first_deposit = _starting_record(case, context)
    client_id: str = record["id"]
    engine = Engine(rules)
    if context["ib"] is not None:
        engine.handle({"id": "case:ib", "type": "ib_updated", "at": registered_at, "ib": context["ib"]})
    timeline: list[str] = []
    for event, what in _timeline(record, registered_at, first_deposit, context["events"]):
        result = engine.handle(event)
        if result.dead_lettered:
            raise case.error(f"{what}: the engine cannot apply it: {result.error}")
        timeline.append(_moment(event))
    engine.scan(at)
    timeline.append(f"{jsonable(at)} scan")
    return Played(engine, client_id, at, tuple(timeline))


def number_text(value: Any) -> str:
    """A number as a person writes it: ``500``, ``12.5``, ``null``."""
    if value is None:
        return "null"
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _moment(event: ClientRegistered | Mapping[str, Any]) -> str:
    """One line of the timeline: ``2026-03-10T10:00:00Z withdrawal failed 800``."""
    if isinstance(event, ClientRegistered):
        return f"{jsonable(event.at)} registration"
    if event["id"] == "case:ftd":
        return f"{jsonable(event['at'])} first deposit (ftd_at)"
    details = [event["type"]]
    if event["type"] in ("deposit", "withdrawal"):
        details += [str(event.get("status") or "completed"), number_text(event["amount"])]
    elif event["type"] == "contact":
        details += [str(event["outcome"]), f"by {event['agent_id']}"]
    return f"{jsonable(event['at'])} {' '.join(details)}"


def _starting_record(
    case: Case, context: Mapping[str, Any],
) -> tuple[dict[str, Any], datetime, dict[str, Any] | None]:
    """The client as they register (every field the case gives), when they register, and
    the fields their first deposit sets later when the case gives ``ftd_at``.

    A case without ``registered_at`` registers before anything it knows of the client: at
    the earliest of their timestamps and events, else at ``now``."""
    now: datetime = context["now"]
    record: dict[str, Any] = dict(context["client"])
    record["trading"] = context["trading"]
    registered_at: datetime | None = record["registered_at"]
    if registered_at is None:
        known = [value for name, value in record.items() if name.endswith("_at") and isinstance(value, datetime)]
        registered_at = record["registered_at"] = min([*known, *(event["at"] for event in context["events"]), now])
    if registered_at > now:
        raise case.error(f"client.registered_at {jsonable(registered_at)} is after now ({jsonable(now)})")
    for index, event in enumerate(context["events"]):
        if event["at"] < registered_at:  # the history is played after the registration, in time order
            raise case.error(f"events[{index}] ({event['type']}) at {jsonable(event['at'])} is before "
                             f"client.registered_at {jsonable(registered_at)}")
    if record["ftd_at"] is None:
        return record, registered_at, None
    if not registered_at <= record["ftd_at"] <= now:
        raise case.error(f"client.ftd_at {jsonable(record['ftd_at'])} is not between registered_at and now")
    given_stage = case.client.get("stage")
    first_deposit = {"ftd_at": record["ftd_at"], "ftd_amount": record["ftd_amount"], "stage": given_stage or "funded"}
    record["ftd_at"] = record["ftd_amount"] = None
    record["stage"] = infer_stage(record) if given_stage in (None, "funded") else given_stage
    return record, registered_at, first_deposit


def _timeline(
    record: Mapping[str, Any], registered_at: datetime, first_deposit: Mapping[str, Any] | None,
    history: Sequence[Mapping[str, Any]],
) -> list[tuple[ClientRegistered | Mapping[str, Any], str]]:
    """The events the engine handles, in order, each with how a failure names it: the
    registration, then the first deposit of ``ftd_at`` and the history by time."""
    client_id = record["id"]
    registration = ClientRegistered.model_construct(  # every field of the record: none is dropped
        type="client_registered", id="case:registration", client_id=client_id, at=registered_at,
        **{name: value for name, value in record.items() if name != "id"},
    )
    later: list[tuple[datetime, int, Mapping[str, Any], str]] = []
    if first_deposit is not None:  # a client_updated: it hands over, and counts in no activity window
        at = first_deposit["ftd_at"]
        update = {"id": "case:ftd", "type": "client_updated", "client_id": client_id, "at": at, "fields": first_deposit}
        later.append((at, 0, update, "client.ftd_at (the first deposit)"))
    for index, event in enumerate(history):
        later.append((event["at"], 1, event, f"events[{index}] ({event['type']})"))
    later.sort(key=lambda entry: (entry[0], entry[1]))
    return [(registration, "the client's registration"), *((event, what) for _, _, event, what in later)]



# --- records ------------------------------------------------------------------------------------


def _client(rules: RuleSet, case: Case, ib: Mapping[str, Any] | None) -> dict[str, Any]:
    types = {**CLIENT_FIELDS, **rules.client_types}
    given = _record(case, "client", case.client, types)
    client: dict[str, Any] = dict.fromkeys(types)
    client.update(CLIENT_DEFAULTS)
    client.update({name: value for name, value in rules.defaults.items() if name in types})
    client.update(given)
    if client["id"] is None:
        client["id"] = DEFAULT_CLIENT_ID
    if client["stage"] is None:
        client["stage"] = infer_stage(client)
    if ib is not None and client["ib_id"] is None:
        client["ib_id"] = ib["id"]
    return client


def _ib(case: Case) -> dict[str, Any] | None:
    if case.ib is None:
        return None
    ib = {**dict.fromkeys(IB_FIELDS), **_record(case, "ib", case.ib, IB_FIELDS)}
    for name in ("id", "quality"):
        if ib[name] is None:
            raise case.error(f"ib.{name} is required")
    return ib


def _record(case: Case, root: str, values: Mapping[str, Any], types: Mapping[str, Type]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name, value in values.items():
        t = types.get(name)
        if t is None:
            raise case.error(f"{root}.{name}: unknown field (known: {', '.join(sorted(types))})")
        record[name] = _checked(case.source, f"{root}.{name}", t, value)
    return record


def _checked(source: str, where: str, t: Type, value: Any) -> Any:
    if value is None:
        if t.nullable:
            return None
        raise CaseError(f"{source}: {where} must not be null ({t})")
    base = t.base
    ok: bool
    if base == "timestamp":
        return _timestamp(source, where, value)
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "number":
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    elif base == "string":
        ok = isinstance(value, str)
    elif base == "list":
        ok = isinstance(value, list)
    elif base == "duration":
        ok = isinstance(value, timedelta)
        if isinstance(value, str):
            try:
                return timedelta(seconds=duration_seconds(value))
            except ValueError as err:
                raise CaseError(f"{source}: {where}: {err}") from None
    else:  # pragma: no cover - every field type is above
        ok = True
    if not ok:
        raise CaseError(f"{source}: {where} should be {t.nonnull()}, got {type(value).__name__} {value!r}")
    return value


def _timestamp_field(source: str, where: str, value: Any) -> Any:
    """Timestamps in the client as datetimes right away (other fields are checked later,
    against the rule set's types)."""
    if isinstance(value, datetime | date) or (isinstance(value, str) and where.endswith("_at")):
        return _timestamp(source, where, value)
    return value


def _timestamp(source: str, where: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return _timestamp(source, where, parsed)
    raise CaseError(f"{source}: {where} is not an ISO 8601 timestamp: {value!r}")


# --- history ------------------------------------------------------------------------------------


def _history(rules: RuleSet, case: Case, client_id: str, now: datetime) -> list[dict[str, Any]]:
    """The case's events as the engine's history records (``event.model_dump()``), oldest first."""
    records: list[dict[str, Any]] = []
    for index, entry in enumerate(case.events):
        where = f"events[{index}]"
        data = dict(entry)
        ago = data.pop("ago", None)
        if ago is not None and "at" in data:
            raise case.error(f"{where}: give 'ago' or 'at', not both")
        if ago is not None:
            try:
                at = now - timedelta(seconds=duration_seconds(str(ago).strip()))
            except ValueError as err:
                raise case.error(f"{where}.ago: {err}") from None
        elif "at" in data:
            at = _timestamp(case.source, f"{where}.at", data["at"])
        else:
            raise case.error(f"{where}: 'ago' (such as 40d) or 'at' is required")
        if at > now:
            raise case.error(f"{where}: at {jsonable(at)} is after now ({jsonable(now)})")
        data["at"] = at
        for name, value in _HISTORY_DEFAULTS.get(str(data.get("type")), {}).items():
            data.setdefault(name, value)
        data.setdefault("id", f"{case.source}#{index}")
        data.setdefault("client_id", client_id)
        try:
            event = parse_event(_json_values(data), rules)
        except EventError as err:
            raise case.error(f"{where}: {err}") from None
        if getattr(event, "client_id", client_id) != client_id:
            raise case.error(f"{where}: an event of another client ({event.client_id!r})")  # type: ignore[union-attr]
        records.append(event.model_dump())
    records.sort(key=lambda record: record["at"])
    return records


def _json_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Floats as exact decimals, as ``read_events`` reads them from JSON."""
    return {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in data.items()}
