"""MemoryStore: the Store protocol in dicts, for tests, rule tests, backtests and one process.

A unit of work keeps a journal of undo steps; when the block raises, the steps run in
reverse and the store is exactly as before. Writes replace values (records are frozen or
copied by the engine), so an undo step only has to put the old value back. A lock makes
units of work from several threads run one at a time (a claim is atomic).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from crmcore.events import Event
from crmcore.notify.outbox import MemoryOutbox, OutboxEntry
from crmcore.routing.router import RoutingState
from crmcore.rules import model
from crmcore.rules.windows import History
from crmcore.storage.base import DuplicateEvent
from crmcore.storage.records import (
    Assignment,
    DeadLetter,
    Decision,
    EndReason,
    PoolEntry,
    QueueItem,
)

__all__ = ["MemoryStore"]

_MISSING: Any = object()
_APPEND: Any = object()


class _Journal:
    """Undo steps of the open units of work (none open: nothing is recorded).

    A step is ``(table, key, old)``: put ``old`` back under ``key`` (``_MISSING``: remove
    the key), or, with ``key is _APPEND``, pop the last item of the list ``table``.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[Any, Any, Any]] = []
        self.depth = 0

    def set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        """``table[key] = value``, undoable."""
        if self.depth:
            self.steps.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def pop(self, table: dict[Any, Any], key: Any) -> Any:
        """``table.pop(key, None)``, undoable."""
        old = table.pop(key, _MISSING)
        if old is _MISSING:
            return None
        if self.depth:
            self.steps.append((table, key, old))
        return old

    def append(self, items: list[Any], item: Any) -> None:
        items.append(item)
        if self.depth:
            self.steps.append((items, _APPEND, None))

    def undo(self, mark: int) -> None:
        """Undo every step after the first ``mark``, newest first."""
        steps = self.steps
        while len(steps) > mark:
            table, key, old = steps.pop()
            if key is _APPEND:
                table.pop()
            elif old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old


class _Outbox(MemoryOutbox):
    """The store's outbox: additions are part of the unit of work."""

    def __init__(self, journal: _Journal) -> None:
        super().__init__()
        self._journal = journal

    def _put(self, entry: OutboxEntry) -> None:
        self._journal.set(self._entries, entry.id, entry)
        if entry.pending:
            self._journal.set(self._pending, entry.id, entry)
        else:
            self._journal.pop(self._pending, entry.id)


class MemoryStore:
    """The :class:`~crmcore.storage.Store` protocol in memory (see the module docstring)."""

    def __init__(self) -> None:
        self._journal = _Journal()
        self._lock = threading.RLock()
        self.outbox = _Outbox(self._journal)
        self._seen: dict[str, None] = {}
        self._events: list[Event] = []
        self._meta: dict[str, Any] = {}
        self._history: dict[str, list[Event]] = {}
        self._clients: dict[str, dict[str, Any]] = {}
        self._agents: dict[str, model.Agent] = {}
        self._desks: dict[str, model.Desk] = {}
        self._ibs: dict[str, dict[str, Any]] = {}
        self._assignments: dict[str, list[Assignment]] = {}  # per client, oldest first
        self._open: dict[str, Assignment] = {}  # client -> open assignment
        self._open_by_agent: dict[str, dict[str, int]] = {}  # agent -> client -> order assigned
        self._started = 0
        self._open_counts: dict[str, int] = {}
        self._state: dict[str, RoutingState] = {"": RoutingState.empty()}
        self._pool: dict[str, PoolEntry] = {}
        self._scores: dict[str, tuple[Mapping[str, float], Mapping[str, str | None]]] = {}
        self._decisions: list[Decision] = []
        self._decisions_by_client: dict[str, list[Decision]] = {}
        self._dead: list[DeadLetter] = []
        self._queue: dict[tuple[str, str], QueueItem] = {}
        self._queue_by_client: dict[str, dict[str, QueueItem]] = {}  # the same items, per client
        self._fired: dict[tuple[str, str], datetime] = {}

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        journal = self._journal
        with self._lock:
            mark = len(journal.steps)
            journal.depth += 1
            try:
                yield
            except BaseException:
                journal.undo(mark)
                raise
            finally:
                journal.depth -= 1
                if not journal.depth:
                    journal.steps.clear()

    # --- events -------------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def record_event(self, event: Event) -> None:
        if event.id in self._seen:
            raise DuplicateEvent(event.id)
        self._journal.set(self._seen, event.id, None)
        latest = self._meta.get("latest_at")
        if latest is None or event.at > latest:
            self._journal.set(self._meta, "latest_at", event.at)
        self._journal.append(self._events, event)
        client_id = getattr(event, "client_id", None)
        if client_id is not None:
            history = self._history.get(client_id)
            if history is None:
                history = History()  # windows by bisection (see rules/windows.py)
                self._journal.set(self._history, client_id, history)
            self._journal.append(history, event)

    def history(self, client_id: str) -> Sequence[Event]:
        return self._history.get(client_id, ())

    def events(self) -> Iterator[Event]:
        return iter(list(self._events))

    def latest_event_at(self) -> datetime | None:
        latest: datetime | None = self._meta.get("latest_at")
        return latest

    # --- clients, agents, desks, IBs ----------------------------------------------------------

    def client(self, client_id: str) -> dict[str, Any] | None:
        return self._clients.get(client_id)

    def put_client(self, client: dict[str, Any]) -> None:
        self._journal.set(self._clients, client["id"], client)

    def clients(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._clients.values()))

    def agents(self) -> Mapping[str, model.Agent]:
        return self._agents

    def put_agent(self, agent: model.Agent) -> None:
        self._journal.set(self._agents, agent.id, agent)

    def desks(self) -> Mapping[str, model.Desk]:
        return self._desks

    def put_desk(self, desk: model.Desk) -> None:
        self._journal.set(self._desks, desk.id, desk)

    def ib(self, ib_id: str) -> dict[str, Any] | None:
        return self._ibs.get(ib_id)

    def put_ib(self, ib: dict[str, Any]) -> None:
        self._journal.set(self._ibs, ib["id"], ib)

    # --- targets ------------------------------------------------------------------------------

    def targets(self) -> tuple[model.Target, ...]:
        targets: tuple[model.Target, ...] = self._meta.get("targets", ())
        return targets

    def put_targets(self, targets: Sequence[model.Target]) -> None:
        self._journal.set(self._meta, "targets", tuple(targets))

    # --- assignments --------------------------------------------------------------------------

    def assignment(self, client_id: str) -> Assignment | None:
        return self._open.get(client_id)

    def assignments(self, client_id: str) -> list[Assignment]:
        return list(self._assignments.get(client_id, ()))

    def _replace_open(self, old: Assignment, new: Assignment) -> None:
        """Swap the client's open assignment, the last of its history, for ``new``."""
        history = list(self._assignments[old.client_id])
        history[-1] = new
        self._journal.set(self._assignments, old.client_id, history)

    def start_assignment(self, assignment: Assignment) -> None:
        client_id, agent_id = assignment.client_id, assignment.agent_id
        if client_id in self._open:
            raise ValueError(f"client {client_id!r} already has an open assignment")
        history = [*self._assignments.get(client_id, ()), assignment]
        self._journal.set(self._assignments, client_id, history)
        self._journal.set(self._open, client_id, assignment)
        clients = self._open_by_agent.get(agent_id)
        if clients is None:
            clients = {}
            self._journal.set(self._open_by_agent, agent_id, clients)
        self._started += 1  # the order assigned (a counter; gaps after a rollback are harmless)
        self._journal.set(clients, client_id, self._started)
        self._journal.set(self._open_counts, agent_id, len(clients))

    def end_assignment(
        self, client_id: str, at: datetime, reason: EndReason, ended_by: str
    ) -> Assignment | None:
        current = self._open.get(client_id)
        if current is None:
            return None
        ended = replace(current, ended_at=at, end_reason=reason, ended_by=ended_by)
        self._replace_open(current, ended)
        self._journal.pop(self._open, client_id)
        clients = self._open_by_agent[current.agent_id]
        self._journal.pop(clients, client_id)
        self._journal.set(self._open_counts, current.agent_id, len(clients))
        return ended

    def _update_open(self, client_id: str, **changes: Any) -> None:
        current = self._open.get(client_id)
        if current is None:
            return
        updated = replace(current, **changes)
        self._replace_open(current, updated)
        self._journal.set(self._open, client_id, updated)

    def mark_contacted(self, client_id: str, at: datetime) -> None:
        current = self._open.get(client_id)
        if current is not None and current.contacted_at is None:
            self._update_open(client_id, contacted_at=at)

    def mark_breached(self, client_id: str, at: datetime) -> None:
        current = self._open.get(client_id)
        if current is not None and current.breached_at is None:
            self._update_open(client_id, breached_at=at)

    def sla_due(self, now: datetime) -> list[Assignment]:
        due = [
            a for a in self._open.values()
            if a.sla_due_at is not None and a.sla_due_at < now and a.breached_at is None
            and (a.contacted_at is None or a.contacted_at > a.sla_due_at)
        ]
        due.sort(key=lambda a: (a.sla_due_at, a.client_id))
        return due

    def open_clients(self, agent_id: str) -> list[str]:
        clients = self._open_by_agent.get(agent_id, {})
        return sorted(clients, key=clients.__getitem__)

    def open_counts(self) -> Mapping[str, int]:
        return self._open_counts

    def lock_routing(self) -> None:
        return None  # a unit of work holds the store's lock already

    def routing_state(self) -> RoutingState:
        return self._state[""]

    def put_routing_state(self, state: RoutingState) -> None:
        self._journal.set(self._state, "", state)

    # --- pools --------------------------------------------------------------------------------

    def pool(self, desk: str) -> list[PoolEntry]:
        entries = [entry for entry in self._pool.values() if entry.desk == desk]
        entries.sort(key=lambda entry: entry.since)  # stable: ties keep the order pooled
        return entries

    def pool_entry(self, client_id: str) -> PoolEntry | None:
        return self._pool.get(client_id)

    def add_to_pool(self, entry: PoolEntry) -> None:
        self._journal.pop(self._pool, entry.client_id)  # a re-pooled client goes to the back
        self._journal.set(self._pool, entry.client_id, entry)

    def take_from_pool(self, client_id: str) -> PoolEntry | None:
        with self._lock:
            taken: PoolEntry | None = self._journal.pop(self._pool, client_id)
            return taken

    # --- scores, decisions, dead letters, queues ----------------------------------------------

    def put_scores(
        self, client_id: str, scores: Mapping[str, float], bands: Mapping[str, str | None]
    ) -> None:
        self._journal.set(self._scores, client_id, (scores, bands))

    def scores(self, client_id: str) -> tuple[Mapping[str, float], Mapping[str, str | None]] | None:
        return self._scores.get(client_id)

    def add_decision(self, decision: Decision) -> None:
        self._journal.append(self._decisions, decision)
        mine = self._decisions_by_client.get(decision.client_id)
        if mine is None:
            mine = []
            self._journal.set(self._decisions_by_client, decision.client_id, mine)
        self._journal.append(mine, decision)

    def decisions(self, client_id: str | None = None) -> list[Decision]:
        if client_id is None:
            return list(self._decisions)
        return list(self._decisions_by_client.get(client_id, ()))

    def add_dead_letter(self, letter: DeadLetter) -> None:
        if letter not in self._dead:
            self._journal.append(self._dead, letter)

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def put_queue_item(self, item: QueueItem) -> None:
        self._journal.set(self._queue, (item.client_id, item.queue), item)
        mine = self._queue_by_client.get(item.client_id)
        if mine is None:
            mine = {}
            self._journal.set(self._queue_by_client, item.client_id, mine)
        self._journal.set(mine, item.queue, item)

    def client_queue_items(self, client_id: str) -> list[QueueItem]:
        return [item for item in self._queue_by_client.get(client_id, {}).values() if item.open]

    def last_fired(self, client_id: str, trigger: str) -> datetime | None:
        return self._fired.get((client_id, trigger))

    def put_fired(self, client_id: str, trigger: str, at: datetime) -> None:
        self._journal.set(self._fired, (client_id, trigger), at)

    def queue_items(self, queue: str | None = None, *, open_only: bool = True) -> list[QueueItem]:
        items = [
            item for item in self._queue.values()
            if (queue is None or item.queue == queue) and (item.open or not open_only)
        ]
        items.sort(key=lambda item: (-item.priority, item.opened_at, item.client_id))
        return items
