"""Running one rule-test case on a fresh engine (see :mod:`crmcore.ruletest`), comparing
what happened with what the case expects, and the explain trace of a failure."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmcore.case import CaseError, number_text, play_case
from crmcore.notify.notification import Notification, client_recipient
from crmcore.rules import RuleSet
from crmcore.rules.diagnostics import CrmError
from crmcore.ruletest.files import Expect, RuleTest, RuleTestError, case_error
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
    """Steps 1-5 of :mod:`crmcore.ruletest` (:func:`crmcore.case.play_case`); what the engine
    then keeps."""
    played = play_case(test.rules, test.case)
    engine, client_id, now = played.engine, played.client_id, played.now
    decisions = engine.store.decisions(client_id)
    return _Actual(
        client_id=client_id,
        now=now,
        explained=engine.explain(client_id, now=now),
        decisions=decisions,
        fired=tuple(dict.fromkeys(name for d in decisions for name in d.fired)),
        notifications=tuple(n for d in decisions for n in d.notifications),
        timeline=played.timeline,
    )


# --- comparing ----------------------------------------------------------------------------------


def _compare(expect: Expect, actual: _Actual) -> list[str]:
    failures: list[str] = []
    explained = actual.explained
    for name, wanted in (expect.score or {}).items():
        got = explained["scores"].get(name)
        if got is None or not math.isclose(float(got), wanted, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
            failures.append(f"score.{name}: expected {number_text(wanted)}, got {number_text(got)}")
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
        lines.append(f"  score {name} = {number_text(value)} (band {_text(explained['bands'].get(name))})"
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
    text = number_text(points)
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
