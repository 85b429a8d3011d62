"""Running one rule-test case on a fresh engine (see :mod:`crmcore.ruletest`), comparing
what happened with what the case expects, and the explain trace of a failure."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmcore.case import CaseError, case_context
from crmcore.engine import Engine
from crmcore.events import ClientRegistered
from crmcore.notify.notification import Notification, client_recipient
from crmcore.rules import RuleSet
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.values import infer_stage
from crmcore.ruletest.files import Expect, RuleTest, RuleTestError, case_error, field_line
from crmcore.serialize import jsonable
from crmcore.storage.records import Decision, routing_dict

__all__ = ["Exercised", "Outcome", "run_case"]

_TOLERANCE = 1e-9  # expected scores compare numerically, floats within this


# --- running ------------------------------------------------------------------------------------


@dataclass
class Exercised:
    """What one case exercised, for ``--coverage``."""

    score_rules: set[tuple[str, str]] = field(default_factory=set)  # (score, rule) whose `when` held
    bands: set[tuple[str, str]] = field(default_factory=set)  # (score, band) the client landed in
    routes: set[tuple[str, str]] = field(default_factory=set)  # (stage, rule) whose `when` held
    triggers: set[str] = field(default_factory=set)  # triggers that fired


@dataclass
class Outcome:
    """The result of one case: failures (expected vs actual), the explain trace, what it
    exercised; ``error`` when the case could not run."""

    test: RuleTest | None
    failures: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    exercised: Exercised = field(default_factory=Exercised)
    error: RuleTestError | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    @property
    def name(self) -> str:
        return self.test.name if self.test is not None else "(file)"

    def render(self) -> str:
        """The failure as the runner prints it: a head, each difference, the explain trace."""
        if self.error is not None:
            return f"ERROR {self.error}"
        assert self.test is not None
        lines = [f"FAIL {self.test.location}: {self.test.name}"]
        lines += [f"  {failure}" for failure in self.failures]
        lines += ["  explain:", *(f"    {line}" for line in self.trace)]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Actual:
    client_id: str
    now: datetime
    explained: Mapping[str, Any]
    decisions: Sequence[Decision]
    fired: tuple[str, ...]
    notifications: tuple[Notification, ...]
    timeline: tuple[str, ...]  # what the engine handled, in order, with its time


def run_case(test: RuleTest) -> Outcome:
    """Run one case on a fresh engine (see the module docstring) and check its expectations."""
    started = time.perf_counter()
    outcome = Outcome(test)
    try:
        actual = _play(test)
    except RuleTestError as err:
        outcome.error = err
    except CaseError as err:
        outcome.error = case_error(test.path, test.line, err, test.field_lines)
    except CrmError as err:  # the rules fail on this client (an evaluation error), ...
        outcome.error = RuleTestError(test.path, test.line, str(err))
    except Exception as err:  # ... or crmcore itself: one case must not end the whole run
        outcome.error = RuleTestError(test.path, test.line, f"the case could not run: {type(err).__name__}: {err}")
    else:
        outcome.failures = _compare(test.expect, actual)
        outcome.trace = _trace(actual)
        outcome.exercised = _exercised(test.rules, actual)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _play(test: RuleTest) -> _Actual:
    """Steps 1-5 of :mod:`crmcore.ruletest`; what the engine then keeps."""
    context = case_context(test.rules, test.case)
    now: datetime = context["now"]
    record, registered_at, first_deposit = _starting_record(test, context)
    client_id: str = record["id"]
    engine = Engine(test.rules)  # a clean state: no other client, every rotation at its start
    if context["ib"] is not None:
        engine.handle({"id": "case:ib", "type": "ib_updated", "at": registered_at, "ib": context["ib"]})
    timeline: list[str] = []
    for event, what in _timeline(record, registered_at, first_deposit, context["events"]):
        result = engine.handle(event)
        if result.dead_lettered:
            raise _failure(test, f"{what}: the engine cannot apply it: {result.error}")
        timeline.append(_moment(event))
    engine.scan(now)
    timeline.append(f"{jsonable(now)} scan")
    decisions = engine.store.decisions(client_id)
    return _Actual(
        client_id=client_id,
        now=now,
        explained=engine.explain(client_id, now=now),
        decisions=decisions,
        fired=tuple(dict.fromkeys(name for d in decisions for name in d.fired)),
        notifications=tuple(n for d in decisions for n in d.notifications),
        timeline=tuple(timeline),
    )


def _moment(event: ClientRegistered | Mapping[str, Any]) -> str:
    """One line of the timeline: ``2026-03-10T10:00:00Z withdrawal failed 800``."""
    if isinstance(event, ClientRegistered):
        return f"{jsonable(event.at)} registration"
    if event["id"] == "case:ftd":
        return f"{jsonable(event['at'])} first deposit (ftd_at)"
    details = [event["type"]]
    if event["type"] in ("deposit", "withdrawal"):
        details += [str(event.get("status") or "completed"), _number(event["amount"])]
    elif event["type"] == "contact":
        details += [str(event["outcome"]), f"by {event['agent_id']}"]
    return f"{jsonable(event['at'])} {' '.join(details)}"


def _starting_record(
    test: RuleTest, context: Mapping[str, Any],
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
        raise _failure(test, f"client.registered_at {jsonable(registered_at)} is after now ({jsonable(now)})")
    if record["ftd_at"] is None:
        return record, registered_at, None
    if not registered_at <= record["ftd_at"] <= now:
        raise _failure(test, f"client.ftd_at {jsonable(record['ftd_at'])} is not between registered_at and now")
    given_stage = test.case.client.get("stage")
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


def _failure(test: RuleTest, message: str) -> RuleTestError:
    return RuleTestError(test.path, field_line(message, test.field_lines, test.line), message)


# --- comparing ----------------------------------------------------------------------------------


def _compare(expect: Expect, actual: _Actual) -> list[str]:
    failures: list[str] = []
    explained = actual.explained
    for name, wanted in (expect.score or {}).items():
        got = explained["scores"].get(name)
        if got is None or not math.isclose(float(got), wanted, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
            failures.append(f"score.{name}: expected {_number(wanted)}, got {_number(got)}")
    for name, wanted_band in (expect.band or {}).items():
        got_band = explained["bands"].get(name)
        if got_band != wanted_band:
            failures.append(f"band.{name}: expected {_text(wanted_band)}, got {_text(got_band)}")
    if expect.route is not None:
        routing = _route(actual.decisions)
        for key, wanted_value in expect.route.items():
            got_value = routing.get(key)
            if got_value != wanted_value:
                failures.append(f"route.{key}: expected {_text(wanted_value)}, got {_text(got_value)}")
    if expect.triggers is not None and set(expect.triggers) != set(actual.fired):
        missing = [t for t in expect.triggers if t not in actual.fired]
        extra = [t for t in actual.fired if t not in expect.triggers]
        detail = "; ".join(part for part in (
            f"did not fire: {', '.join(missing)}" if missing else "",
            f"fired unexpectedly: {', '.join(extra)}" if extra else "",
        ) if part)
        failures.append(f"triggers: expected {_list(expect.triggers)}, got {_list(actual.fired)} ({detail})")
    if expect.notifications is not None:
        failures += _compare_notifications(expect.notifications, actual)
    return failures


def _route(decisions: Sequence[Decision]) -> dict[str, Any]:
    """What ``route`` is compared with: the latest routing the client's own events made (the
    registration, or the FTD hand-over). A re-routing the scan makes after a first-contact SLA
    breach is not the rules' routing of the client but what happens when nobody calls them;
    the trace and the notifications show it."""
    for decision in reversed(decisions):
        if decision.routing is not None and decision.cause == "event":
            return routing_dict(decision.stage, decision.routing)
    return {}


def _notification_view(note: Notification, client_id: str) -> dict[str, str]:
    view = {"kind": note.kind, "recipient": "client" if note.recipient == client_recipient(client_id) else note.recipient}
    trigger = note.payload.get("trigger") if note.kind == "trigger" else None
    if isinstance(trigger, str):
        view["trigger"] = trigger
    return view


def _compare_notifications(expected: Sequence[Mapping[str, str]], actual: _Actual) -> list[str]:
    """Exactly these notifications, in any order: a one-to-one matching of the expected ones
    (each naming some of kind, recipient, trigger) with the notifications sent."""
    sent = [_notification_view(n, actual.client_id) for n in actual.notifications]
    fits = [[j for j, got in enumerate(sent) if all(got.get(k) == v for k, v in want.items())] for want in expected]
    match: dict[int, int] = {}  # sent index -> expected index

    def place(i: int, seen: set[int]) -> bool:  # augmenting path (Kuhn's matching)
        for j in fits[i]:
            if j not in seen:
                seen.add(j)
                if j not in match or place(match[j], seen):
                    match[j] = i
                    return True
        return False

    missing = [expected[i] for i in range(len(expected)) if not place(i, set())]
    extra = [sent[j] for j in range(len(sent)) if j not in match]
    failures = []
    if missing or extra:
        failures.append(f"notifications: expected {len(expected)}, got {len(sent)}")
        failures += [f"  not sent: {_flow(m)}" for m in missing]
        failures += [f"  sent unexpectedly: {_flow(e)}" for e in extra]
    return failures


def _number(value: Any) -> str:
    if value is None:
        return "null"
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def _list(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _flow(mapping: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"


# --- explaining ---------------------------------------------------------------------------------


def _trace(actual: _Actual) -> list[str]:
    """Why the case came out as it did: scores with their points, the routings with their
    traces, the triggers that fired, the notifications."""
    explained = actual.explained
    lines = [f"timeline: {'; '.join(actual.timeline)}", f"at {jsonable(actual.now)}:"]
    for name, value in explained["scores"].items():
        points = ", ".join(f"{rule} {_signed(p)}" for rule, p in explained["breakdown"].get(name, {}).items())
        lines.append(f"  score {name} = {_number(value)} (band {_text(explained['bands'].get(name))})"
                     + (f": {points}" if points else ": no rule held"))
    holding = explained["triggers"]
    lines.append(f"  condition triggers holding: {', '.join(holding) if holding else 'none'}")
    for decision in actual.decisions:
        routing = decision.routing
        if routing is None:
            continue
        head = f"routing {decision.stage} at {jsonable(decision.at)} ({_cause(decision)}): {routing.outcome}"
        if routing.rule is not None:
            head += f" by {routing.rule}"
        if routing.desk is not None:
            head += f", desk {routing.desk}"
        if routing.agent is not None:
            head += f", agent {routing.agent}"
        lines.append(head)
        for step in routing.trace:
            line = f"  {step.rule}: {step.outcome}"
            if step.agent is not None:
                line += f" {step.agent}"
            if step.excluded:
                line += " (" + ", ".join(f"{agent}: {reason}" for agent, reason in step.excluded.items()) + ")"
            lines.append(line)
    fired = [f"{name} at {jsonable(d.at)}" for d in actual.decisions for name in d.fired]
    lines.append(f"triggers fired: {', '.join(fired) if fired else 'none'}")
    notes = [_flow(_notification_view(n, actual.client_id)) for n in actual.notifications]
    lines.append(f"notifications: {', '.join(notes) if notes else 'none'}")
    return lines


def _cause(decision: Decision) -> str:
    if decision.cause == "event":
        named = {"case:registration": "registration", "case:ftd": "first deposit (ftd_at)"}
        if decision.event_id in named:
            return named[decision.event_id]
        source, _, index = decision.event_id.rpartition("#")  # the case's history: `{case}#{index}`
        return f"events[{index}]" if source and index.isdigit() else f"event {decision.event_id}"
    return decision.cause.replace("_", " ")


def _signed(points: Any) -> str:
    text = _number(points)
    return text if text.startswith("-") else f"+{text}"


# --- what a case exercised ---------------------------------------------------------------------


def _exercised(rules: RuleSet, actual: _Actual) -> Exercised:
    seen = Exercised()
    breakdowns = [actual.explained["breakdown"], *(d.breakdown for d in actual.decisions)]
    for breakdown in breakdowns:
        for score, points in breakdown.items():
            seen.score_rules.update((score, rule) for rule in points)
    for bands in [actual.explained["bands"], *(d.bands for d in actual.decisions)]:
        seen.bands.update((score, band) for score, band in bands.items() if band is not None)
    for decision in actual.decisions:
        if decision.routing is not None and decision.stage is not None:
            seen.routes.update((decision.stage, s.rule) for s in decision.routing.trace if s.outcome != "no_match")
    seen.triggers.update(actual.fired)
    return seen
