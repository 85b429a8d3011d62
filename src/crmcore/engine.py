"""The engine: events in; scores, assignments, decisions and notifications out (SPEC §1, §2, §5).

Orchestration only: client state comes from :mod:`crmcore.state`, scores from the rule
set's generated evaluator, routing from :mod:`crmcore.routing`, persistence from a
:class:`~crmcore.storage.Store`, delivery from :mod:`crmcore.notify`.

Each event is one unit of work on the store: the event's id, the client's new record, the
scores, any assignment, the decision and its notifications (into the outbox) commit
together, or — when anything fails — nothing does and the event goes to the dead letters
with its reason. An event whose id was handled before is a duplicate and changes nothing.
While an event is handled, ``now`` is its ``at``; the engine never reads the wall clock
(a claim or a delivery without a time takes the latest event's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from crmcore.events import (
    AgentUpdated,
    BadEvent,
    CampaignCost,
    ClientRegistered,
    ClientUpdated,
    Contact,
    Deposit,
    Event,
    EventError,
    IbUpdated,
    Withdrawal,
    parse_event,
)
from crmcore.notify.notification import ADMINS, Notification, NotificationKind, client_recipient
from crmcore.notify.notifiers import CallbackNotifier, Notifier, NullNotifier
from crmcore.notify.outbox import Backoff, DeliveryReport, deliver_pending
from crmcore.routing.router import Roster, RoutingResult, route
from crmcore.rules import model
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.interpreter import Scope
from crmcore.rules.loader import load_rules
from crmcore.rules.ruleset import Evaluation, RuleSet, Trigger
from crmcore.rules.values import to_moment, to_stamp
from crmcore.rules.windows import from_events
from crmcore.state import apply, new_client
from crmcore.storage.base import DuplicateEvent, Store, StoreUnavailable
from crmcore.storage.memory import MemoryStore
from crmcore.storage.records import (
    Assignment,
    Cause,
    DeadLetter,
    Decision,
    EndReason,
    PoolEntry,
    QueueItem,
    jsonable,
    routing_dict,
)
from crmcore.views import PermissionDenied, QueueEntry, Task, View

__all__ = ["BatchSummary", "Engine", "EngineError", "Result"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")
_DELIVER_EVERY = 1000  # handle_many delivers the outbox after this many events, and at the end
_BACKOFF = Backoff()


class EngineError(CrmError):
    """An event the engine cannot apply (an unknown client, a second registration, ...);
    the event is dead-lettered with this message."""


Status = Literal["handled", "duplicate", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class Result:
    """What :meth:`Engine.handle` did with one event.

    ``decisions``: one for a client event (scores, and routing on registration or FTD);
    one per client routed again for an ``agent_updated`` that makes an agent inactive;
    none for IB and campaign events, duplicates and dead letters. The properties read the
    first decision (the event's own client).
    """

    event_id: str | None
    status: Status
    decisions: tuple[Decision, ...] = ()
    error: str | None = None

    @property
    def decision(self) -> Decision | None:
        return self.decisions[0] if self.decisions else None

    @property
    def scores(self) -> Mapping[str, float]:
        return self.decisions[0].scores if self.decisions else {}

    @property
    def bands(self) -> Mapping[str, str | None]:
        return self.decisions[0].bands if self.decisions else {}

    @property
    def routing(self) -> RoutingResult | None:
        return self.decisions[0].routing if self.decisions else None

    @property
    def breakdown(self) -> dict[str, dict[str, float]]:
        """Per score, the points of each rule that held."""
        return self.decisions[0].breakdown if self.decisions else {}

    @property
    def assignment(self) -> Assignment | None:
        """The assignment this event made for its client (registration or hand-over)."""
        return self.decisions[0].assignment if self.decisions else None

    @property
    def outcome(self) -> str | None:
        """The routing outcome (``assigned``, ``pooled``, ``unassigned``, ``unrouted``)."""
        routing = self.routing
        return None if routing is None else routing.outcome

    @property
    def agent(self) -> str | None:
        routing = self.routing
        return None if routing is None else routing.agent

    @property
    def desk(self) -> str | None:
        """The desk the client was assigned or pooled to."""
        assignment = self.assignment
        if assignment is not None:
            return assignment.desk
        routing = self.routing
        return None if routing is None else routing.desk

    @property
    def rule(self) -> str | None:
        routing = self.routing
        return None if routing is None else routing.rule

    @property
    def handled(self) -> bool:
        return self.status == "handled"

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    @property
    def dead_lettered(self) -> bool:
        return self.status == "dead_lettered"

    @property
    def triggers(self) -> tuple[str, ...]:
        """The triggers of this event for its client: the condition triggers that hold after
        it, then the ``on:`` triggers it fired (each once)."""
        if not self.decisions:
            return ()
        decision = self.decisions[0]
        return tuple(dict.fromkeys((*decision.triggers, *decision.fired)))

    @property
    def fired(self) -> tuple[str, ...]:
        """The triggers that fired on this event (cooldowns allowing), ``on:`` and condition."""
        return self.decisions[0].fired if self.decisions else ()

    @property
    def notifications(self) -> tuple[Notification, ...]:
        return tuple(n for decision in self.decisions for n in decision.notifications)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "status": self.status,
            "error": self.error,
            "decisions": [decision.as_dict() for decision in self.decisions],
        }


@dataclass(slots=True)
class BatchSummary:
    """What :meth:`Engine.handle_many` did: counts, and each event's result (in order)."""

    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    results: list[Result] = field(default_factory=list)

    def count(self, result: Result) -> None:
        if result.status == "handled":
            self.handled += 1
        elif result.status == "duplicate":
            self.duplicates += 1
        else:
            self.dead_lettered += 1


class Engine:
    """Events in; scores, assignments, decisions and notifications out.

    ``store`` defaults to a new :class:`MemoryStore`, ``notifier`` to one that drops
    everything; a notifier is an object with ``send(notification)`` (the :class:`Notifier`
    protocol) or a plain callable taking the notification. The rule file's desks and
    targets are written to the store (a reload replaces them); its agents are added when the
    store does not know them (``agent_updated`` events change them later, and a reload with
    an edited agent writes the edit).
    """

    def __init__(
        self,
        rules: RuleSet,
        store: Store | None = None,
        notifier: Notifier | Callable[[Notification], object] | None = None,
        *,
        backoff: Backoff = _BACKOFF,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.notifier: Notifier = _notifier(notifier)
        self.backoff = backoff
        self._roster_key: tuple[model.Agent, ...] = ()
        self._roster_cache = Roster.of(())
        with self.store.unit_of_work():
            self._seed(rules, previous=None)
        self._rules = rules

    @property
    def rules(self) -> RuleSet:
        """The rule set deciding now (replaced atomically by :meth:`reload`)."""
        return self._rules

    def _seed(self, rules: RuleSet, previous: RuleSet | None) -> list[str]:
        """Write the rule file's desks and targets, and its agents where they are new to the
        store or edited in the file (only the edited fields: what events changed stays).
        Returns the agents this made inactive."""
        store = self.store
        for desk in rules.desks.values():
            store.put_desk(desk)
        store.put_targets(rules.targets)  # the views read them from the store (no --rules needed)
        known = store.agents()
        deactivated = []
        for agent in rules.agents.values():
            stored = known.get(agent.id)
            before = previous.agents.get(agent.id) if previous is not None else None
            if stored is None:
                store.put_agent(agent)
                continue
            if previous is None or before == agent:
                continue
            edited = {
                name: getattr(agent, name)
                for name in (agent.model_fields_set if before is None else type(agent).model_fields)
                if before is None or getattr(before, name) != getattr(agent, name)
            }
            updated = model.Agent.model_validate({**stored.model_dump(), **edited})
            store.put_agent(updated)
            if stored.active and not updated.active:
                deactivated.append(agent.id)
        return deactivated

    def reload(self, rules: RuleSet | str | Path | Iterable[str | Path]) -> RuleSet:
        """Replace the rule set; paths are loaded first. Atomic: when loading fails
        (:class:`~crmcore.RuleError`) the running rule set stays. Returns the new one.

        Agents the new file makes inactive have their open clients routed again, by the
        new rules, at the time of the latest event."""
        new = rules if isinstance(rules, RuleSet) else load_rules(rules)
        store = self.store
        with store.unit_of_work():
            store.lock_routing()
            deactivated = self._seed(new, previous=self._rules)
            at = store.latest_event_at()
            if deactivated and at is not None:
                reload_id = f"reload:{new.version[:16]}"
                for agent_id in deactivated:
                    self._record(self._reroute_all(agent_id, reload_id, at, new))
            self._rules = new  # one assignment: an event is decided by one rule set or the other
        return new

    def _record(self, decisions: Iterable[Decision]) -> None:
        store = self.store
        for decision in decisions:
            store.add_decision(decision)
            store.outbox.add(decision.notifications)

    # --- events -------------------------------------------------------------------------------

    def handle(self, event: Event | BadEvent | Mapping[str, Any]) -> Result:
        """Handle one event (a model, a parsed line or a mapping to validate), then deliver
        the outbox. Never raises for a bad or failing event: it is dead-lettered."""
        result, at = self._handle(event)
        if at is not None:
            self._deliver(at)
        return result

    def handle_many(
        self,
        events: Iterable[Event | BadEvent | Mapping[str, Any]],
        *,
        keep_results: bool = True,
        progress: Callable[[Result], object] | None = None,
        batch: int | None = None,
        read_ahead: bool = True,
    ) -> BatchSummary:
        """Handle events in order; the batch goes on past bad ones. Each event is atomic:
        its own unit of work, or — in batches of ``batch`` events (default: the store's
        ``batch_size``, 1 if it has none) — a savepoint inside one unit of work per batch,
        which saves a commit per event (a batch holds the routing lock from its start, so
        batched workers on PostgreSQL take turns). ``progress`` sees each result once its batch is
        committed; the outbox is delivered after a batch commits, at least every 1,000
        events and at the end. A batch's events are read before its transaction begins
        (``events`` is never waited on while locks are held); with ``read_ahead=False`` they
        are read one at a time as each is handled, so that a generator that reads the store
        sees the batch's earlier events applied."""
        size = max(1, batch if batch is not None else getattr(self.store, "batch_size", 1))
        summary = BatchSummary()
        latest: datetime | None = None
        since_delivery = 0
        for handled in self._batches(events, size, self._handle, read_ahead=read_ahead):
            for result, at in handled:
                summary.count(result)
                if keep_results:
                    summary.results.append(result)
                if progress is not None:
                    progress(result)
                if at is not None and (latest is None or at > latest):
                    latest = at
            since_delivery += len(handled)
            if since_delivery >= _DELIVER_EVERY and latest is not None:
                self._deliver_all(latest)
                since_delivery = 0
        if latest is not None:
            self._deliver_all(latest)
        return summary

    def _handle(self, event: Event | BadEvent | Mapping[str, Any]) -> tuple[Result, datetime | None]:
        rules = self._rules  # one rule set decides the whole event
        if isinstance(event, BadEvent):
            return self._dead_letter(_id_in(event.raw), event.raw, event.reason, event.line), None
        if isinstance(event, Mapping):
            data = event
            try:
                event = parse_event(data, rules)
            except EventError as err:
                raw = json.dumps(jsonable(dict(data)), default=str)
                event_id = data.get("id")
                return self._dead_letter(event_id if isinstance(event_id, str) else None, raw, str(err)), None
        store = self.store
        try:
            with store.unit_of_work():
                rules = self._rules  # read under the unit of work: a reload is all or nothing
                # First: a repeated id raises DuplicateEvent (also when another worker has just
                # handled it), and the event counts in its own activity windows.
                store.record_event(event)
                decisions = self._apply(event, rules)
                self._record(decisions)
        except DuplicateEvent:
            return Result(event.id, "duplicate"), None
        except StoreUnavailable:
            raise  # not the event's fault: nothing was kept, the host retries
        except Exception as exc:
            return self._dead_letter(event.id, event.model_dump_json(), _reason(exc)), None
        return Result(event.id, "handled", tuple(decisions)), event.at

    def _dead_letter(self, event_id: str | None, raw: str, reason: str, line: int | None = None) -> Result:
        with self.store.unit_of_work():
            self.store.add_dead_letter(DeadLetter(event_id, raw, reason, line))
        return Result(event_id, "dead_lettered", error=reason)

    def _apply(self, event: Event, rules: RuleSet) -> list[Decision]:
        if _may_route(event):  # lock order: routing first, then the client's row
            self.store.lock_routing()
        if isinstance(event, ClientRegistered):
            return [self._register(event, rules)]
        if isinstance(event, AgentUpdated):
            return self._agent_updated(event, rules)
        if isinstance(event, IbUpdated):
            self.store.put_ib(event.ib.model_dump())
            return []
        if isinstance(event, CampaignCost):
            return []  # kept with the events, for cost KPIs
        return [self._client_event(event, rules)]

    def _register(self, event: ClientRegistered, rules: RuleSet) -> Decision:
        store = self.store
        if store.client(event.client_id) is not None:
            raise EngineError(f"client {event.client_id!r} is already registered")
        client = new_client(event, rules)
        evaluation = self._evaluate(client, event.at, rules)
        routed = self._route("registration", client, evaluation, event.id, event.at, rules, ending=None)
        fired = self._fire(client, evaluation, event, event.id, event.at, rules)
        store.put_client(client)
        store.put_scores(client["id"], evaluation.scores, evaluation.bands)
        return _decision(event.id, client["id"], event.at, "event", rules, evaluation, "registration", routed, fired)

    def _client_event(self, event: Event, rules: RuleSet) -> Decision:
        store = self.store
        client_id: str = event.client_id  # type: ignore[union-attr]  # every other event is a client's
        before = store.client(client_id)
        if before is None:
            raise EngineError(f"unknown client {client_id!r} (no client_registered before this event)")
        client = apply(before, event)
        manual: _Routed | None = None
        if isinstance(event, ClientUpdated) and ("agent_id" in event.fields or "desk_id" in event.fields):
            manual = self._reassign_by_hand(before, client, event, rules)
        if isinstance(event, Contact):
            current = store.assignment(client_id)
            if current is not None and current.agent_id == event.agent_id:
                store.mark_contacted(client_id, event.at)
        evaluation = self._evaluate(client, event.at, rules)
        routed: _Routed | None = None
        stage = "ftd"
        if before["ftd_at"] is None and client["ftd_at"] is not None and rules.routing["ftd"]:
            routed = self._route("ftd", client, evaluation, event.id, event.at, rules, ending="handover")
        elif manual is not None:
            routed, stage = manual, "manual"
        # after the hand-over: an `on:` trigger of the FTD sees the client's new desk and agent
        fired = self._fire(client, evaluation, event, event.id, event.at, rules)
        store.put_client(client)
        store.put_scores(client_id, evaluation.scores, evaluation.bands)
        return _decision(event.id, client_id, event.at, "event", rules, evaluation, stage, routed, fired)

    def _reassign_by_hand(
        self, before: Mapping[str, Any], client: dict[str, Any], event: ClientUpdated, rules: RuleSet
    ) -> _Routed | None:
        """A host's ``client_updated`` naming ``agent_id``: a manual reassignment. The old
        assignment ends (``reassigned``), the new agent gets it and is told; ``null`` leaves
        the client with nobody. ``desk_id`` follows the agent and cannot be set alone."""
        store = self.store
        if "desk_id" in event.fields and "agent_id" not in event.fields:
            raise EngineError("client_updated: desk_id follows the agent; set agent_id (or let routing decide)")
        agent_id = event.fields["agent_id"]
        current = store.assignment(client["id"])
        if agent_id == before["agent_id"] and current is not None:
            client["desk_id"] = before["desk_id"]
            return None
        agents = store.agents()
        agent = agents.get(agent_id) if agent_id is not None else None
        if agent_id is not None and agent is None:
            raise EngineError(f"client_updated: unknown agent {agent_id!r}")
        if agent is not None and not agent.active:
            raise EngineError(f"client_updated: agent {agent_id!r} is inactive")
        store.end_assignment(client["id"], event.at, "reassigned", event.id)
        store.take_from_pool(client["id"])
        if agent is None:
            client["agent_id"] = client["desk_id"] = None
            return None
        stage = current.stage if current is not None else "registration"
        assignment = Assignment(
            client["id"], agent.id, agent.desk, stage, None, "manual", event.at, event.id,
            rules.version, (), self._sla_due(agent.desk, event.at),
        )
        store.start_assignment(assignment)
        client["agent_id"], client["desk_id"] = agent.id, agent.desk
        result = RoutingResult("assigned", None, agent.desk, agent.id, "manual", ())
        payload = _payload(client, None, result)
        return _Routed(result, assignment, self._assigned_notes(agent, payload, event.id, event.at, client["id"], rules))

    def _agent_updated(self, event: AgentUpdated, rules: RuleSet) -> list[Decision]:
        store = self.store
        agent_id = event.agent["id"]
        current = store.agents().get(agent_id)
        fields = {**(current.model_dump() if current is not None else {}), **event.agent}
        agent = model.Agent.model_validate(fields)  # a new agent needs at least a desk
        store.put_agent(agent)
        if agent.active:
            return []
        return self._reroute_all(agent_id, event.id, event.at, rules)

    def _reroute_all(self, agent_id: str, event_id: str, at: datetime, rules: RuleSet) -> list[Decision]:
        """Nobody is left assigned to an inactive agent: their clients are routed again."""
        return [
            self._reroute(client_id, "agent_inactive", "agent_inactive", event_id, at, rules)
            for client_id in self.store.open_clients(agent_id)
        ]

    # --- scoring and routing ------------------------------------------------------------------

    def _evaluate(self, client: Mapping[str, Any], now: datetime, rules: RuleSet) -> Evaluation:
        return rules.evaluate(self._context(client, now, rules))

    def _context(self, client: Mapping[str, Any], now: datetime, rules: RuleSet) -> dict[str, Any]:
        ib_id = client.get("ib_id")
        context: dict[str, Any] = {
            "client": client,
            "ib": self.store.ib(ib_id) if ib_id is not None else None,
            "trading": client.get("trading"),
            "now": now,
        }
        if rules.uses_windows:
            context["events"] = self.store.history(client["id"])
        return context

    def _route(
        self,
        stage: str,
        client: dict[str, Any],
        evaluation: Evaluation,
        event_id: str,
        at: datetime,
        rules: RuleSet,
        *,
        ending: EndReason | None,
        exclude: frozenset[str] = frozenset(),
    ) -> _Routed:
        """Route ``client`` by ``stage``'s rules and record the outcome: an assignment, a pool
        entry, or nothing (``unrouted``). ``client`` gets its new ``agent_id`` and ``desk_id``.
        ``ending``: end the client's open assignment for this reason unless the outcome is
        ``unrouted`` (a hand-over nobody can take leaves the client where they are).
        """
        store = self.store
        agents = store.agents()
        state = store.routing_state()
        context = evaluation[2]  # what the rules were evaluated on: the same IB and history
        result, new_state = route(
            stage, rules, client,
            scores=evaluation.scores, bands=evaluation.bands,
            ib=context.get("ib"),
            trading=client.get("trading"), now=at,
            open_counts=store.open_counts(), state=state,
            agents=self._roster(agents), exclude=exclude,
            # The evaluator already found the first registration rule whose `when` holds.
            first_match=_first_match(evaluation, stage),
            history=context.get("events"),
        )
        if new_state is not state:
            store.put_routing_state(new_state)
        client_id = client["id"]
        if result.outcome == "unrouted":
            if ending is None:
                client["agent_id"] = client["desk_id"] = None
            payload = _payload(client, evaluation, result)
            return _Routed(result, None, _notes("unrouted", _admins(agents), payload, event_id, at, client_id, rules))
        if ending is not None:  # a hand-over: from the agent, or from the pool it waited in
            store.end_assignment(client_id, at, ending, event_id)
            store.take_from_pool(client_id)
        if result.outcome == "assigned":
            assert result.agent is not None
            agent = agents[result.agent]
            desk = result.desk or agent.desk
            assignment = Assignment(
                client_id, agent.id, desk, stage, result.rule, result.strategy, at, event_id,
                rules.version, result.trace, self._sla_due(desk, at),
            )
            store.start_assignment(assignment)
            client["agent_id"], client["desk_id"] = agent.id, desk
            payload = _payload(client, evaluation, result)
            return _Routed(result, assignment, self._assigned_notes(agent, payload, event_id, at, client_id, rules))
        pool = result.desk
        assert pool is not None
        reason: Literal["pooled", "unassigned"] = "pooled" if result.outcome == "pooled" else "unassigned"
        store.add_to_pool(PoolEntry(client_id, pool, stage, reason, at, event_id, result.rule))
        client["agent_id"], client["desk_id"] = None, pool
        if reason == "pooled":  # the desk's agents may claim the client
            recipients = [a.id for a in _desk_agents(agents, pool, "agent") if a.active]
        else:  # nothing could be satisfied: the desk's managers (admins when it has none)
            recipients = _desk_managers(agents, pool) or _admins(agents)
        payload = _payload(client, evaluation, result)
        return _Routed(result, None, _notes(reason, recipients, payload, event_id, at, client_id, rules))

    def _roster(self, agents: Mapping[str, model.Agent]) -> Roster:
        """The agents grouped for routing, rebuilt only when an agent changed (agents are
        frozen values, replaced on every change)."""
        key = tuple(agents.values())
        if key != self._roster_key:
            self._roster_key, self._roster_cache = key, Roster.of(key)
        return self._roster_cache

    def _sla_due(self, desk_id: str, at: datetime) -> datetime | None:
        desk = self.store.desks().get(desk_id)
        if desk is None or desk.sla.first_contact is None:
            return None
        return at + _duration(desk.sla.first_contact)

    def _reroute(
        self,
        client_id: str,
        cause: Cause,
        ending: EndReason,
        event_id: str,
        at: datetime,
        rules: RuleSet,
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        """End the client's assignment and route them again by the rules that assigned them."""
        store = self.store
        ended = store.end_assignment(client_id, at, ending, event_id)
        stage = ended.stage if ended is not None else "registration"
        stored = store.client(client_id)
        assert stored is not None
        client = dict(stored)
        evaluation = self._evaluate(client, at, rules)
        routed = self._route(stage, client, evaluation, event_id, at, rules, ending=None, exclude=exclude)
        store.put_client(client)
        store.put_scores(client_id, evaluation.scores, evaluation.bands)
        self._follow_client(client_id, client.get("desk_id"), client.get("agent_id"), at)
        return _decision(event_id, client_id, at, cause, rules, evaluation, stage, routed)

    # --- triggers -----------------------------------------------------------------------------

    def _fire(
        self, client: Mapping[str, Any], evaluation: Evaluation, event: Event | None,
        event_id: str, at: datetime, rules: RuleSet,
    ) -> _Fired:
        """Triggers after a client's event (or in a scan, ``event`` None), SPEC §2: the
        condition triggers that hold and the `on:` triggers of this event whose `when` holds
        fire unless a cooldown blocks them (``[t, t + cooldown)`` after the last firing);
        a firing puts or updates the client's item in its queue and notifies its recipients.
        Items whose reason no longer stands are resolved (see :meth:`_stale`); open items
        follow the client's desk and agent."""
        if not rules.triggers:
            return _Fired([], [])
        store = self.store
        client_id = client["id"]
        holding = set(evaluation.triggers)
        by_name = {t.name: t for t in rules.triggers}
        scopes: list[Scope] = []  # built once, when an `on:` trigger or a priority needs it

        def scope() -> Scope:
            if not scopes:
                scopes.append(_trigger_scope(client, evaluation, rules, event))
            return scopes[0]

        open_items = {item.queue: item for item in store.client_queue_items(client_id)}
        for queue, item in list(open_items.items()):
            if not self._stale(item, by_name, holding):
                continue
            standing = [t for t in rules.condition_triggers if t.queue == queue and t.name in holding]
            if not standing:  # no reason left: resolved
                store.put_queue_item(replace(item, resolved_at=at, updated_at=at))
                del open_items[queue]
                continue
            # another condition of the queue still holds (its cooldown may keep it from firing): it is the reason now
            trigger, priority = max(((t, _priority(t, scope)) for t in standing), key=lambda pair: pair[1])
            open_items[queue] = replace(item, trigger=trigger.name, priority=priority, actions=trigger.actions, updated_at=at)
            store.put_queue_item(open_items[queue])
        desk, agent_id = client.get("desk_id"), client.get("agent_id")
        self._follow(open_items, desk, agent_id, at)
        candidates = [t for t in rules.condition_triggers if t.name in holding]
        names = _event_names(event)
        on_event = [t for t in rules.triggers if t.on is not None and t.on in names]
        candidates += [t for t in on_event if t.when(scope()) is True]
        fired = _Fired([], [])
        agents = store.agents()
        for trigger in candidates:
            last = store.last_fired(client_id, trigger.name)
            if trigger.cooldown is not None and last is not None and at < last + timedelta(seconds=trigger.cooldown):
                continue  # blocked by its cooldown: changes nothing
            store.put_fired(client_id, trigger.name, at)
            fired.names.append(trigger.name)
            priority = _priority(trigger, scope)
            if trigger.queue is not None:
                current = open_items.get(trigger.queue)
                if (current is not None and current.trigger != trigger.name and current.priority > priority
                        and not self._stale(current, by_name, holding)):
                    item = replace(current, updated_at=at)  # a more urgent open reason stays the item's
                else:
                    item = QueueItem(
                        client_id, trigger.queue, trigger.name, priority, trigger.actions,
                        current.opened_at if current is not None else at, desk, agent_id, updated_at=at,
                    )
                store.put_queue_item(item)
                open_items[trigger.queue] = item
            payload = {
                **_payload(client, evaluation, None),
                "trigger": trigger.name, "queue": trigger.queue, "priority": priority, "actions": list(trigger.actions),
            }
            for recipient in _trigger_recipients(trigger.notify, client, agents):
                fired.notes.append(Notification.create(
                    kind="trigger", recipient=recipient, event_id=event_id, created_at=at,
                    client_id=client_id, payload=payload, rule_version=rules.version,
                    subject=f"{client_id}\0{trigger.name}",
                ))
        return fired

    def _follow(self, items: dict[str, QueueItem], desk: str | None, agent_id: str | None, at: datetime) -> None:
        """Open items (by queue) move with their client to its desk and agent now: after a
        hand-over, a reassignment or a claim, views and ``--desk`` see them where the client is."""
        for queue, item in items.items():
            if (item.desk, item.agent_id) != (desk, agent_id):
                items[queue] = replace(item, desk=desk, agent_id=agent_id, updated_at=at)
                self.store.put_queue_item(items[queue])

    def _follow_client(self, client_id: str, desk: str | None, agent_id: str | None, at: datetime) -> None:
        self._follow({item.queue: item for item in self.store.client_queue_items(client_id)}, desk, agent_id, at)

    @staticmethod
    def _stale(item: QueueItem, by_name: Mapping[str, Trigger], holding: set[str]) -> bool:
        """An item's reason no longer stands: its condition trigger stopped holding (an `on:`
        trigger's reason stands until the item is resolved)."""
        trigger = by_name.get(item.trigger)
        return trigger is not None and trigger.on is None and item.trigger not in holding

    # --- notifications ------------------------------------------------------------------------

    def _assigned_notes(
        self, agent: model.Agent, payload: dict[str, Any], event_id: str, at: datetime,
        client_id: str, rules: RuleSet,
    ) -> list[Notification]:
        """``assigned`` to the agent and ``assigned_to_team`` to their manager."""
        notes = _notes("assigned", [agent.id], payload, event_id, at, client_id, rules)
        if agent.manager is not None and agent.manager != agent.id:
            notes += _notes("assigned_to_team", [agent.manager], payload, event_id, at, client_id, rules)
        return notes

    def deliver_pending(self, now: datetime | str | float | None = None, *, limit: int = 100) -> DeliveryReport:
        """Send up to ``limit`` outbox entries due at ``now`` (failures wait with backoff).
        ``now`` defaults to the latest event's time (the engine reads no clock)."""
        return self._deliver(None if now is None else to_moment(now), limit)

    def _deliver(self, now: datetime | None, limit: int = 100) -> DeliveryReport:
        store = self.store
        if now is None:
            now = store.latest_event_at()
            if now is None:
                return DeliveryReport(0, 0, store.outbox.pending_count())
        # One unit of work: what one deliverer sends, no other sends (SqlStore locks the rows).
        with store.unit_of_work():
            return deliver_pending(store.outbox, self.notifier, now, limit=limit, backoff=self.backoff)

    def dead_letters(self) -> list[DeadLetter]:
        """The events (and scan checks) that could not be handled, with their reasons."""
        return self.store.dead_letters()

    def deliver_all(self, now: datetime | str | float) -> DeliveryReport:
        """Send every outbox entry due at ``now``, each once."""
        return self._deliver_all(to_moment(now))

    def _deliver_all(self, now: datetime) -> DeliveryReport:
        delivered = failed = 0
        while True:
            report = self._deliver(now, limit=1000)
            delivered += report.delivered
            failed += report.failed
            if report.delivered + report.failed < 1000:
                return DeliveryReport(delivered, failed, report.pending)

    # --- time: SLA checks ---------------------------------------------------------------------

    def scan(self, now: datetime | str | float, *, batch: int | None = None) -> list[Decision]:
        """Time-based checks at ``now``: every open assignment whose first-contact SLA has
        passed without a contact by its agent is a breach — ``alert`` notifies the agent's
        manager (the desk's managers when the agent has none), ``reassign`` also routes the
        client again without the agent who breached. Each breach is acted on once. Then the
        condition triggers of every client (see ``_scan_triggers``), ``batch`` clients per
        transaction, a savepoint each (default: the store's ``batch_size``, as
        ``handle_many``). ``now``: an aware datetime, ISO 8601 text or epoch seconds."""
        now = to_moment(now)
        rules = self._rules
        store = self.store
        decisions: list[Decision] = []
        for due in store.sla_due(now):
            scan_id = f"sla:{due.client_id}:{due.event_id}"
            try:
                with store.unit_of_work():
                    store.lock_routing()
                    if store.assignment(due.client_id) != due:  # handled meanwhile
                        continue
                    decision = self._breach(due, scan_id, now, rules)
                    self._record([decision])
            except StoreUnavailable:
                raise  # the database, not the client: nothing kept, the host retries
            except Exception as exc:  # one client's failure must not stop the others
                raw = json.dumps(due.as_dict())
                self._dead_letter(scan_id, raw, f"SLA check at {jsonable(now)}: {_reason(exc)}")
                continue
            decisions.append(decision)
        if rules.condition_triggers:
            decisions += self._scan_triggers(now, rules, batch)
        self._deliver_all(now)
        return decisions

    def _scan_triggers(self, now: datetime, rules: RuleSet, batch: int | None) -> list[Decision]:
        """The condition triggers of every client at ``now``, each client atomic: its own unit
        of work, or — ``batch`` clients per unit of work, as ``handle_many`` does events — a
        savepoint each: firings (cooldowns allowing), queue items, notifications; items whose
        condition no longer holds are resolved. A decision is kept for each client where a
        trigger fired."""
        store = self.store
        size = max(1, batch if batch is not None else getattr(store, "batch_size", 1))
        decisions: list[Decision] = []
        for checked in self._batches(self._scan_candidates(now, rules), size,
                                     lambda client_id: self._scan_client(client_id, now, rules)):
            decisions += [decision for decision in checked if decision is not None]
        return decisions

    def _batches(
        self, items: Iterable[_In], size: int, work: Callable[[_In], _Out], *, read_ahead: bool = True,
    ) -> Iterator[list[_Out]]:
        """``work`` on each item, each atomic by itself: alone (``size`` 1: ``work`` is its own
        unit of work), or ``size`` items in one unit of work, each in its savepoint. A batch
        takes the routing lock first: it may route at any item after locking clients' rows,
        and one lock order keeps batched workers deadlock-free. ``read_ahead``: a batch's
        items are taken before its transaction begins, else one at a time inside it."""
        iterator = iter(items)
        for first in iterator:
            if size == 1:
                yield [work(first)]
                continue
            rest = islice(iterator, size - 1)
            taken = chain((first,), list(rest) if read_ahead else rest)
            with self.store.unit_of_work():
                self.store.lock_routing()
                done = [work(item) for item in taken]
            yield done  # committed

    def _scan_client(self, client_id: str, now: datetime, rules: RuleSet) -> Decision | None:
        """One client's condition triggers at ``now``, atomic; a failure is dead-lettered."""
        store = self.store
        scan_id = f"scan:{now.isoformat()}:{client_id}"
        try:
            with store.unit_of_work():
                client = store.client(client_id)  # locked: no event of the client meanwhile
                if client is None:  # pragma: no cover - clients are never deleted
                    return None
                evaluation = self._evaluate(client, now, rules)
                fired = self._fire(client, evaluation, None, scan_id, now, rules)
                if not fired.names:
                    return None
                decision = _decision(scan_id, client_id, now, "scan", rules, evaluation, "", None, fired)
                self._record([decision])
        except StoreUnavailable:
            raise
        except Exception as exc:  # one client's failure must not stop the others
            self._dead_letter(scan_id, json.dumps({"client_id": client_id}), f"trigger scan at {jsonable(now)}: {_reason(exc)}")
            return None
        return decision

    def _scan_candidates(self, now: datetime, rules: RuleSet) -> Iterator[str]:
        """The clients a trigger scan must visit, in registration order: where some condition
        trigger holds, or an open item of one may have to be resolved. A SQL store finds them
        inside the database (``scan_candidates``: one query per trigger; a condition SQL
        cannot express is a :class:`~crmcore.rules.sql.SqlUnsupported` error naming it, never
        a silent fall-back to reading every client); other stores are read client by client.
        Either way each candidate is then re-evaluated in Python inside its unit of work."""
        store = self.store
        in_database = getattr(store, "scan_candidates", None)
        if in_database is not None:  # a condition SQL cannot express raises SqlUnsupported naming it
            yield from in_database(rules, now)
            return
        condition_names = {t.name for t in rules.condition_triggers}
        for listed in store.clients():
            client_id = listed["id"]
            try:
                # A read first: most clients match nothing and have nothing to resolve, and
                # need no unit of work (which, on SQLite, is the database's one writer).
                if self._evaluate(listed, now, rules).triggers or any(
                    item.trigger in condition_names for item in store.client_queue_items(client_id)
                ):
                    yield client_id
            except StoreUnavailable:
                raise
            except Exception:  # the unit of work repeats the evaluation and dead-letters it
                yield client_id

    def _breach(self, due: Assignment, scan_id: str, now: datetime, rules: RuleSet) -> Decision:
        store = self.store
        desk = store.desks().get(due.desk)
        mode: Literal["alert", "reassign"] = desk.on_sla_breach if desk is not None else "alert"
        if due.contacted_at is not None:  # contacted, but late: a breach to report, not to undo
            mode = "alert"
        store.mark_breached(due.client_id, now)
        agents = store.agents()
        breacher = agents.get(due.agent_id)
        managers = (
            [breacher.manager] if breacher is not None and breacher.manager is not None
            else _desk_managers(agents, due.desk) or _admins(agents)
        )
        client = store.client(due.client_id)
        assert client is not None
        extra = {"agent": due.agent_id, "desk": due.desk, "assigned_at": due.assigned_at,
                 "sla_due_at": due.sla_due_at, "action": mode}
        payload = {**_payload(client, None, None), **extra}  # times stay datetimes: as_dict() converts
        alerts = _notes("sla_breach", managers, payload, scan_id, now, due.client_id, rules)
        if mode == "alert":
            scores, bands = store.scores(due.client_id) or ({}, {})
            return Decision(
                scan_id, due.client_id, now, "sla_breach", rules.version, scores, bands,
                sla_breach="alert", notifications=tuple(alerts),
            )
        decision = self._reroute(
            due.client_id, "sla_breach", "sla_breach", scan_id, now, rules, exclude=frozenset({due.agent_id})
        )
        return replace(decision, sla_breach="reassign", notifications=(*alerts, *decision.notifications))

    # --- people -------------------------------------------------------------------------------

    def resolve(
        self, client_id: str, queue: str, at: datetime | str | float | None = None, *, by: str | None = None,
    ) -> bool:
        """Close the client's open item in ``queue`` (the reason was dealt with: an `on:`
        trigger's item stays open until then): ``True`` when there was one. With ``by`` (a
        viewer id) the viewer must see the client, else :class:`PermissionDenied`. ``at``
        defaults to the latest event's time (no wall clock)."""
        store = self.store
        with store.unit_of_work():
            store.client(client_id)  # locked (SqlStore): no event of the client reopens the item meanwhile
            if by is not None and not self.view(by).sees(client_id):
                raise PermissionDenied(f"{by} may not see client {client_id!r}")
            item = next((i for i in store.client_queue_items(client_id) if i.queue == queue), None)
            if item is None:
                return False
            when = to_moment(at, "at") if at is not None else store.latest_event_at() or item.opened_at
            store.put_queue_item(replace(item, resolved_at=when, updated_at=when))
            return True

    def claim(self, agent_id: str, client_id: str, at: datetime | str | float | None = None) -> bool:
        """Take a pooled client: ``True`` for the one claim that wins, ``False`` when the
        client is not (or no longer) in a pool. Raises :class:`PermissionDenied` for an
        agent not on the pool's desk, inactive or at capacity. ``at`` (the assignment's
        start) defaults to the latest event's time, never before the client was pooled."""
        rules = self._rules
        store = self.store
        with store.unit_of_work():
            store.lock_routing()  # capacity and the pool, as routing sees them
            agent = store.agents().get(agent_id)
            entry = store.pool_entry(client_id)
            if agent is None:
                raise PermissionDenied(f"unknown agent {agent_id!r}")
            if entry is None:
                return False
            if at is not None:
                at = to_moment(at, "at")
            else:  # no wall clock: the latest event, and never before the pooling
                latest = store.latest_event_at()
                at = entry.since if latest is None or latest < entry.since else latest
            if agent.role != "admin" and agent.desk != entry.desk:
                raise PermissionDenied(f"{agent_id} is not on desk {entry.desk!r}, whose pool holds {client_id}")
            if not agent.active:
                raise PermissionDenied(f"{agent_id} is inactive")
            if agent.capacity is not None and store.open_counts().get(agent_id, 0) >= agent.capacity:
                raise PermissionDenied(f"{agent_id} is at capacity ({agent.capacity} open clients)")
            if store.take_from_pool(client_id) is None:
                return False
            event_id = f"claim:{client_id}:{agent_id}:{at.isoformat()}"
            assignment = Assignment(
                client_id, agent_id, entry.desk, entry.stage, entry.rule, "claim", at, event_id,
                rules.version, (), self._sla_due(entry.desk, at),
            )
            store.start_assignment(assignment)
            stored = store.client(client_id)
            assert stored is not None
            client = {**stored, "agent_id": agent_id, "desk_id": entry.desk}
            store.put_client(client)
            self._follow_client(client_id, entry.desk, agent_id, at)
            scores, bands = store.scores(client_id) or ({}, {})
            notes = self._assigned_notes(agent, _payload(client, None, None), event_id, at, client_id, rules)
            decision = Decision(
                event_id, client_id, at, "claim", rules.version, scores, bands, entry.stage,
                assignment=assignment, notifications=tuple(notes),
            )
            self._record([decision])
        self._deliver_all(at)
        return True

    def view(self, viewer_id: str) -> View:
        """What ``viewer_id`` (an agent, manager or admin) may see; see :class:`crmcore.views.View`."""
        return View(self, viewer_id)

    def queue(
        self, name: str, desk: str | None = None, viewer: str | None = None, now: datetime | str | float | None = None,
    ) -> list[QueueEntry]:
        """``view(viewer).queue(name, desk, now)`` (SPEC 7's ``queue(name, desk, viewer)``):
        open items, highest priority first, with client summary, trigger, actions and age.
        Without a viewer, the host's own view: every desk's items."""
        return View(self, viewer).queue(name, desk, now)

    def tasks(self, agent_id: str) -> list[Task]:
        """``view(agent_id).tasks()``: each of the agent's clients with open items once, with
        every open reason, ordered by the highest priority among them (SPEC 2)."""
        return View(self, agent_id).tasks()

    # --- why ----------------------------------------------------------------------------------

    def explain(self, client_id: str, now: datetime | str | float | None = None) -> dict[str, Any]:
        """Why the client stands where they do, as JSON-ready data: each score with its
        per-rule points and band at ``now`` (default: the time of the client's latest
        decision), the condition triggers that hold then, the latest routing with its whole
        trace, and the rule-set versions (``rule_version`` now, ``routing.rule_version`` of
        the decision)."""
        store = self.store
        client = store.client(client_id)
        if client is None:
            raise EngineError(f"unknown client {client_id!r}")
        rules = self._rules
        decisions = store.decisions(client_id)
        if now is not None:
            now = to_moment(now)
        else:
            now = decisions[-1].at if decisions else client["registered_at"]
        evaluation = self._evaluate(client, now, rules)
        routed = next((d for d in reversed(decisions) if d.routing is not None), None)
        routing = None
        if routed is not None and routed.routing is not None:
            routing = {
                **routing_dict(routed.stage, routed.routing),
                "at": jsonable(routed.at), "cause": routed.cause, "event_id": routed.event_id,
                "rule_version": routed.rule_version,
            }
        assignment = store.assignment(client_id)
        pooled = store.pool_entry(client_id)
        return {
            "client_id": client_id,
            "now": jsonable(now),
            "rule_version": rules.version,
            "version": rules.version,
            "scores": jsonable(evaluation.scores),
            "bands": dict(evaluation.bands),
            "breakdown": jsonable(evaluation.breakdown),
            "triggers": list(evaluation.triggers),
            "routing": routing,
            "route": None if routing is None else {k: routing[k] for k in ("rule", "desk", "agent")},
            "assignment": None if assignment is None else assignment.as_dict(),
            "pool": None if pooled is None else pooled.as_dict(),
        }


def _notifier(notifier: Notifier | Callable[[Notification], object] | None) -> Notifier:
    """The engine's notifier: the given one, a plain callable wrapped, or one that drops all."""
    if notifier is None:
        return NullNotifier()
    if callable(getattr(notifier, "send", None)):
        return notifier  # type: ignore[return-value]
    if callable(notifier):
        return CallbackNotifier(notifier)
    raise TypeError(f"notifier {notifier!r} has no send(notification) method and is not callable")


def _may_route(event: Event) -> bool:
    """Events whose handling may route a client (and so must hold the routing lock first)."""
    if isinstance(event, ClientRegistered | AgentUpdated):
        return True
    if isinstance(event, Deposit):
        return event.status == "completed"
    return isinstance(event, ClientUpdated) and ("agent_id" in event.fields or "desk_id" in event.fields)


def _reason(exc: Exception) -> str:
    """A dead letter's reason: our own errors speak for themselves, others name their type."""
    return str(exc) if isinstance(exc, CrmError) else f"{type(exc).__name__}: {exc}"


def _payload(
    client: Mapping[str, Any], evaluation: Evaluation | None, result: RoutingResult | None
) -> dict[str, Any]:
    """What a notification says: the client's details, scores and bands, the routing.
    One dict is shared by the notifications of a decision (read it, do not change it)."""
    payload: dict[str, Any] = {"client": {name: client.get(name) for name in _DETAILS}}
    if evaluation is not None:
        payload["scores"] = evaluation.scores
        payload["bands"] = evaluation.bands
    if result is not None:
        payload.update(rule=result.rule, desk=client.get("desk_id"), agent=result.agent, strategy=result.strategy)
    return payload


def _notes(
    kind: NotificationKind, recipients: Iterable[str], payload: dict[str, Any], event_id: str,
    at: datetime, client_id: str, rules: RuleSet,
) -> list[Notification]:
    return [
        Notification.create(
            kind=kind, recipient=recipient, event_id=event_id, created_at=at,
            client_id=client_id, payload=payload, rule_version=rules.version,
        )
        for recipient in recipients
    ]


@lru_cache(maxsize=64)
def _duration(text: str) -> timedelta:
    return timedelta(seconds=model.duration_seconds(text))


def _first_match(evaluation: Evaluation, stage: str) -> str | None:
    if stage != "registration":
        return None
    target = evaluation.route
    return None if target is None else target.rule


class _Routed(NamedTuple):
    """A routing outcome as recorded: the result, the assignment made (if any), who to tell."""

    result: RoutingResult
    assignment: Assignment | None
    notes: list[Notification]


def _decision(
    event_id: str, client_id: str, at: datetime, cause: Cause, rules: RuleSet,
    evaluation: Evaluation, stage: str, routed: _Routed | None, fired: _Fired | None = None,
) -> Decision:
    notes = tuple(routed.notes) if routed is not None else ()
    return Decision(
        event_id, client_id, at, cause, rules.version, evaluation.scores, evaluation.bands,
        stage if routed is not None else None,
        routed.result if routed is not None else None,
        assignment=routed.assignment if routed is not None else None,
        triggers=tuple(evaluation.triggers),
        notifications=notes + (tuple(fired.notes) if fired is not None else ()),
        evaluation=evaluation,
        fired=tuple(fired.names) if fired is not None else (),
    )


class _Fired(NamedTuple):
    names: list[str]
    notes: list[Notification]


def _trigger_scope(
    client: Mapping[str, Any], evaluation: Evaluation, rules: RuleSet, event: Event | None
) -> Scope:
    context = evaluation[2]
    return Scope(
        client=client, ib=context.get("ib"), trading=client.get("trading"),
        now=to_stamp(context["now"]), scores=evaluation.scores,
        bands={k: v for k, v in evaluation.bands.items() if v is not None},
        lists=rules.lists, defaults=rules.defaults,
        window=from_events(context.get("events")) if rules.uses_windows else None,
        event=event,
    )


def _priority(trigger: Trigger, scope: Callable[[], Scope]) -> float:
    """A firing's priority: the trigger's ``priority`` expression, 0 when it has none or it is null."""
    if trigger.priority is None:
        return 0.0
    value = trigger.priority(scope())
    return float(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else 0.0


def _trigger_recipients(
    notify: Iterable[str], client: Mapping[str, Any], agents: Mapping[str, model.Agent]
) -> list[str]:
    """``agent`` the client's agent, ``manager`` that agent's manager, ``desk`` the managers
    of the client's desk, ``client`` a message for the host to deliver. A client with no agent
    (pooled) has ``agent`` and ``manager`` go to the desk's managers; missing ones are skipped."""
    agent = agents.get(client.get("agent_id") or "")
    recipients: list[str] = []
    for who in notify:
        if who in ("agent", "manager") and agent is None and client.get("desk_id") is not None:
            recipients += _desk_managers(agents, client["desk_id"])  # a pooled client: its desk's managers
        elif who == "agent" and agent is not None:
            recipients.append(agent.id)
        elif who == "manager" and agent is not None and agent.manager is not None:
            recipients.append(agent.manager)
        elif who == "desk" and client.get("desk_id") is not None:
            recipients += _desk_managers(agents, client["desk_id"])
        elif who == "client":
            recipients.append(client_recipient(client["id"]))
    return list(dict.fromkeys(recipients))


def _event_names(event: Event | None) -> frozenset[str]:
    """The names an `on:` trigger may give this event: its type, and `withdrawal_failed`."""
    if event is None:
        return frozenset()
    if isinstance(event, Withdrawal) and event.status == "failed":
        return frozenset({event.type, "withdrawal_failed"})
    return frozenset({event.type})


_DETAILS = (  # the client's fields a notification carries
    "id", "country", "language", "email", "region", "source", "campaign", "ib_id", "stage",
    "registered_at", "ftd_at", "ftd_amount", "balance",
)


def _admins(agents: Mapping[str, model.Agent]) -> list[str]:
    """The agents with role admin, or the ``admins`` recipient when there are none."""
    return sorted(a.id for a in agents.values() if a.role == "admin") or [ADMINS]


def _desk_managers(agents: Mapping[str, model.Agent], desk: str) -> list[str]:
    return [a.id for a in _desk_agents(agents, desk, "manager")]


def _desk_agents(agents: Mapping[str, model.Agent], desk: str, role: str) -> list[model.Agent]:
    return sorted((a for a in agents.values() if a.desk == desk and a.role == role), key=lambda a: a.id)




def _id_in(raw: str) -> str | None:
    """The ``id`` of a raw JSON line, when it has a usable one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None
