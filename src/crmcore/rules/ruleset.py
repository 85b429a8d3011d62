"""A loaded rule set: checked expressions, the domain view the engine uses, and
``evaluate`` — the hot path of every decision, one generated Python function."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crmcore.rules import ast
from crmcore.rules.diagnostics import Diagnostic, EvaluationError, Origin
from crmcore.rules.interpreter import Scope
from crmcore.rules.model import RuleFile, duration_seconds
from crmcore.rules.python import CodeGen, Reads, build_function, compile_expression
from crmcore.rules.types import Type
from crmcore.rules.windows import from_events


@dataclass(frozen=True, eq=False)
class Expr:
    """One checked expression: its text, typed tree, origin and (lazily) compiled function."""

    text: str
    canonical: str
    node: ast.Node
    origin: Origin
    _compiled: list[Callable[[Scope], Any]] = field(default_factory=list, repr=False)

    @property
    def location(self) -> str:
        line, column = self.origin.source.position(self.origin.file_offset(0))
        return f"{self.origin.source.path}:{line}:{column}"

    def bind(self, lists: Mapping[str, tuple[Any, ...]], defaults: Mapping[str, Any]) -> None:
        if not self._compiled:
            self._compiled.append(compile_expression(self.node, lists, defaults, self.location))

    def __call__(self, scope: Scope) -> Any:
        """The expression's value in ``scope`` (compiled Python)."""
        return self._compiled[0](scope)


@dataclass(frozen=True)
class ScoreRule:
    name: str
    when: Expr
    points: Expr


@dataclass(frozen=True)
class Score:
    name: str
    rules: tuple[ScoreRule, ...]
    bands: tuple[tuple[str, float | None], ...]

    def band(self, value: float) -> str | None:
        """The first band whose threshold the score reaches; below all, the last band."""
        for name, threshold in self.bands:
            if threshold is not None and value >= threshold:
                return name
        return self.bands[-1][0] if self.bands else None


@dataclass(frozen=True)
class Route:
    name: str
    stage: str
    when: Expr
    agent: Expr | None
    desk: str | None
    strategy: str | None
    require: Expr | None


@dataclass(frozen=True)
class Trigger:
    name: str
    on: str | None
    when: Expr
    queue: str | None
    priority: Expr | None
    actions: tuple[str, ...]
    notify: tuple[str, ...]
    cooldown: float | None  # seconds


@dataclass(frozen=True)
class RouteTarget:
    """The registration rule that matched, and what it assigns to (no agent is picked)."""

    rule: str
    desk: str | None
    strategy: str | None
    agent: str | None


class Evaluation:
    """The outcome of ``rules.evaluate``: scores, bands, breakdowns, route and triggers."""

    __slots__ = ("_raw", "_rules")

    def __init__(self, rules: RuleSet, raw: tuple[Any, ...]):
        self._rules = rules
        self._raw = raw

    @property
    def scores(self) -> dict[str, float]:
        return dict(zip(self._rules.score_order, self._raw[0], strict=True))

    @property
    def bands(self) -> dict[str, str | None]:
        return dict(zip(self._rules.score_order, self._raw[1], strict=True))

    @property
    def breakdown(self) -> dict[str, dict[str, float]]:
        """Per score, the points of each rule whose condition held."""
        result: dict[str, dict[str, float]] = {name: {} for name in self._rules.score_order}
        for (score, rule), points in zip(self._rules.point_names, self._raw[2], strict=True):
            if points is not None:
                result[score][rule] = points
        return result

    @property
    def route(self) -> RouteTarget | None:
        index, agent = self._raw[3], self._raw[4]
        if index < 0:
            return None
        rule = self._rules.routing["registration"][index]
        return RouteTarget(rule.name, rule.desk, rule.strategy, agent)

    @property
    def triggers(self) -> list[str]:
        """Names of the condition triggers (no ``on:``) that hold."""
        condition = self._rules.condition_triggers
        return [condition[i].name for i in self._raw[5]]

    def as_dict(self) -> dict[str, Any]:
        route = self.route
        return {
            "scores": self.scores,
            "bands": self.bands,
            "breakdown": self.breakdown,
            "route": None if route is None else {"rule": route.rule, "desk": route.desk, "strategy": route.strategy, "agent": route.agent},
            "triggers": self.triggers,
        }

    def __repr__(self) -> str:
        return f"Evaluation(scores={self.scores}, bands={self.bands}, route={self.route}, triggers={self.triggers})"


class RuleSet:
    """A checked, compiled rule set. Build it with :func:`crmcore.load_rules`."""

    def __init__(
        self,
        document: RuleFile,
        canonical: str,
        exprs: Mapping[tuple[str, ...], Expr],
        lists: Mapping[str, tuple[Any, ...]],
        client_types: Mapping[str, Type],
        defaults: Mapping[str, Any],
        score_order: tuple[str, ...],
        warnings: list[Diagnostic],
    ):
        self.document = document
        self.canonical = canonical
        self.version = hashlib.sha256(canonical.encode()).hexdigest()
        self.exprs = dict(exprs)
        self.lists = dict(lists)
        self.client_types = client_types
        self.defaults = dict(defaults)
        self.score_order = score_order
        self.warnings = warnings
        for expr in self.exprs.values():
            expr.bind(self.lists, self.defaults)
        self.desks = {desk.id: desk for desk in document.desks}
        self.agents = {agent.id: agent for agent in document.agents}
        self.scores = {
            name: Score(
                name,
                tuple(ScoreRule(r.name, exprs[("score", name, r.name, "when")], exprs[("score", name, r.name, "points")]) for r in document.scores[name].rules),
                tuple(document.scores[name].bands.items()),
            )
            for name in score_order
        }
        self.routing: dict[str, tuple[Route, ...]] = {
            stage: tuple(
                Route(
                    r.name, stage, exprs[("route", stage, r.name, "when")], exprs.get(("route", stage, r.name, "agent")),
                    r.assign.desk, (r.assign.strategy or "round_robin") if r.assign.desk else None,
                    exprs.get(("route", stage, r.name, "require")),
                )
                for r in getattr(document.routing, stage)
            )
            for stage in ("registration", "ftd")
        }
        self.triggers = tuple(
            Trigger(
                t.name, t.on, exprs[("trigger", t.name, "when")], t.queue, exprs.get(("trigger", t.name, "priority")),
                tuple(t.actions), tuple(t.notify), duration_seconds(t.cooldown) if t.cooldown else None,
            )
            for t in document.triggers
        )
        self.condition_triggers = tuple(t for t in self.triggers if t.on is None)
        self.targets = tuple(document.targets)
        self.point_names = tuple((name, rule.name) for name in score_order for rule in self.scores[name].rules)
        self._evaluate, self.uses_windows, self.uses_now = _fused_evaluator(self)

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version[:12]}, scores={list(self.scores)}, routes={len(self.routing['registration'])}, triggers={len(self.triggers)})"

    def evaluate(self, context: Mapping[str, Any]) -> Evaluation:
        """Scores, bands, breakdowns, the first matching registration route and the condition
        triggers that hold, for one client context; pure, no store, no side effects.

        ``context``: ``client`` (any mapping), optional ``ib``, ``trading``, ``events``
        (history for activity windows) and ``now`` (aware datetime or epoch seconds).
        """
        try:
            client = context["client"]
            window = from_events(context.get("events")) if self.uses_windows else None
            raw = self._evaluate(client, context.get("ib"), context.get("trading"), context.get("now"), window)
        except EvaluationError:
            raise
        except Exception as exc:
            raise self._failure(context, exc) from exc
        return Evaluation(self, raw)

    def evaluate_many(self, contexts: Iterable[Mapping[str, Any]]) -> list[Evaluation]:
        evaluate = self.evaluate
        return [evaluate(context) for context in contexts]

    def _failure(self, context: Mapping[str, Any], exc: Exception) -> EvaluationError:
        """Name the field that made evaluation fail (the fast path does not check types)."""
        if "client" not in context:
            return EvaluationError("the context has no 'client'")
        if self.uses_now and context.get("now") is None:
            return EvaluationError("the rules use 'now' (days_since, windows, ...) but the context has no 'now'")
        for key, expr in self.exprs.items():
            for node in expr.node.walk():
                if isinstance(node, ast.Name) and len(node.parts) == 2 and node.parts[0] in ("client", "ib", "trading"):
                    problem = _field_problem(context, node, self.defaults)
                    if problem:
                        return EvaluationError(f"{problem} (used by {'.'.join(key[:-1])} at {expr.location})")
        return EvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}")


def _field_problem(context: Mapping[str, Any], node: ast.Name, defaults: Mapping[str, Any]) -> str | None:
    root, name = node.parts
    record = context.get(root)
    if record is None or node.type is None:
        return None
    if name == "stage" and root == "client":
        return None
    value = record.get(name, defaults.get(name) if root == "client" else None)
    if value is None:
        return None if node.type.nullable or root != "client" else f"{node.dotted} is required ({node.type}) but missing"
    expected = {
        "timestamp": (datetime, date, int, float, str),
        "number": (int, float, Decimal),
        "int": (int,),
        "string": (str,),
        "bool": (bool, int),
        "list": (list, tuple, set, frozenset),
    }.get(node.type.base)
    if expected is not None and not isinstance(value, expected):
        return f"{node.dotted} should be {node.type.nonnull()}, got {type(value).__name__} {value!r}"
    if node.type.base == "timestamp" and isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"{node.dotted} is not an ISO 8601 timestamp: {value!r}"
    return None


def _fused_evaluator(rules: RuleSet) -> tuple[Callable[..., tuple[Any, ...]], bool, bool]:
    """Generate one function computing every score, band, the route and the condition triggers."""
    reads = Reads({"client": "client", "ib": "ib", "trading": "trading"}, {}, {}, rules.defaults)
    gen = CodeGen(reads, rules.lists)
    body: list[str] = []
    score_vars: list[str] = []
    band_vars: list[str] = []
    point_vars: list[str] = []
    for i, name in enumerate(rules.score_order):
        score = rules.scores[name]
        total, band = f"_score{i}", f"_band{i}"
        for rule in score.rules:
            p = f"_p{len(point_vars)}"
            point_vars.append(p)
            body.append(_comment(f"{name}.{rule.name}", rule.when))
            body.append(f"if {gen.test(rule.when.node)}:")
            body.append(f"    {p} = {gen.value(rule.points.node)}")
            if rule.points.node.type is None or rule.points.node.type.nullable:
                body.append(f"    if {p} is None: {p} = 0")
            body.append("else:")
            body.append(f"    {p} = None")
        held = [p for p in point_vars[len(point_vars) - len(score.rules):]]
        body.append(f"{total} = " + (" + ".join(f"(0 if {p} is None else {p})" for p in held) or "0"))
        chain = "None"
        if score.bands:
            chain = repr(score.bands[-1][0])
            for band_name, threshold in reversed(score.bands[:-1]):
                chain = f"{band_name!r} if {total} >= {threshold!r} else {chain}"
        body.append(f"{band} = {chain}")
        reads.score_locals[name] = total  # type: ignore[index]
        reads.band_locals[name] = band  # type: ignore[index]
        score_vars.append(total)
        band_vars.append(band)
    for i, route in enumerate(rules.routing["registration"]):
        body.append(_comment(f"route {route.name}", route.when))
        body.append(f"{'if' if i == 0 else 'elif'} {gen.test(route.when.node)}:")
        body.append(f"    _route = {i}")
        body.append(f"    _route_agent = {gen.value(route.agent.node) if route.agent else None}")
    if rules.routing["registration"]:
        body.append("else:")
        body.append("    _route = -1")
        body.append("    _route_agent = None")
    else:
        body.append("_route = -1")
        body.append("_route_agent = None")
    body.append("_held = []")
    for i, trigger in enumerate(rules.condition_triggers):
        body.append(_comment(f"trigger {trigger.name}", trigger.when))
        body.append(f"if {gen.test(trigger.when.node)}: _held.append({i})")
    body.append(f"return ({_tuple(score_vars)}, {_tuple(band_vars)}, {_tuple(point_vars)}, _route, _route_agent, _held)")
    function = build_function("_evaluate", "client, ib, trading, now, window", body, gen, "evaluate")
    uses_windows = any(isinstance(n, ast.Window) for e in rules.exprs.values() for n in e.node.walk())
    return function, uses_windows, gen.uses_now


def _comment(what: str, expr: Expr) -> str:
    """A source comment naming the rule; whatever a file path holds, it stays one comment line."""
    return "# " + repr(f"{what}: {expr.location}")


def _tuple(names: list[str]) -> str:
    return "(" + "".join(f"{n}, " for n in names) + ")"


def build_ruleset(**kwargs: Any) -> RuleSet:
    return RuleSet(**kwargs)
