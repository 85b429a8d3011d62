"""The Store protocol: the small set of operations the engine needs, grouped by concept.

The engine runs every event inside ``with store.unit_of_work():``. Everything written
inside commits together or not at all: an exception leaves the store as it was before the
block (MemoryStore undoes its journal; SqlStore rolls back the transaction or savepoint).
Units of work may nest; an inner one that fails undoes only its own writes.

Records come back as the engine stored them: clients as dicts (see :mod:`crmcore.state`),
agents, desks and targets as the rule-file models, the rest as :mod:`crmcore.storage.records`. A
caller must not mutate what a store returns; it writes a new value with a ``put``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from crmcore.events import Event
from crmcore.notify.outbox import Outbox
from crmcore.routing.router import RoutingState
from crmcore.rules import model
from crmcore.rules.diagnostics import CrmError
from crmcore.storage.records import (
    Assignment,
    DeadLetter,
    Decision,
    EndReason,
    PoolEntry,
    QueueItem,
)

__all__ = ["DuplicateEvent", "SchemaVersionError", "Store", "StoreConfigError", "StoreUnavailable"]


class StoreUnavailable(CrmError):
    """The store could not do its work (the database is unreachable, a deadlock, a lost
    connection): nothing of the unit of work was kept. The engine does not dead-letter the
    event — it was not the event's fault — but raises, so that the host retries; handling
    the same events again is safe (idempotent by id)."""


class StoreConfigError(CrmError, ValueError):
    """Where the store's tables are meant to be cannot work: a table prefix of the wrong form,
    a schema SQLite does not have. Said before anything is written."""


def no_sqlite_schema(schema: str) -> StoreConfigError:
    """The error for a ``schema`` that a SQLite connection has not ATTACHed."""
    return StoreConfigError(
        f"schema {schema!r}: SQLite has no such schema (on SQLite a schema is a database the "
        f"connection has ATTACHed); keep crmcore's tables apart with a table prefix instead "
        f"(prefix= in Python, --prefix on the command line)"
    )


class SchemaVersionError(CrmError):
    """The database holds crmcore tables at another revision than this crmcore expects
    (defined here, not in :mod:`~crmcore.storage.migrate`, so that importing it needs no Alembic)."""

    def __init__(self, message: str, *, found: str | None, expected: str) -> None:
        super().__init__(message)
        self.found = found
        self.expected = expected


class DuplicateEvent(Exception):
    """``record_event`` of an id already handled (another worker may have just done it):
    the engine counts the event as a duplicate and undoes the unit of work."""


@runtime_checkable
class Store(Protocol):
    @property
    def outbox(self) -> Outbox:
        """Notifications waiting for delivery; written in the same unit of work as decisions."""
        ...

    def unit_of_work(self) -> AbstractContextManager[None]:
        """All writes inside commit together, or none of them when the block raises."""
        ...

    # --- events -------------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        """Whether an event with this id was handled (a repeat is a duplicate)."""
        ...

    def record_event(self, event: Event) -> None:
        """Remember a handled event: its id (idempotency), and the client's history.
        Raises :class:`DuplicateEvent` when the id was handled before."""
        ...

    def history(self, client_id: str) -> Sequence[Event]:
        """The client's handled events, in arrival order: what activity windows read
        (through ``event.get(field)``, as from a dict)."""
        ...

    def events(self) -> Iterator[Event]:
        """Every handled event, in arrival order."""
        ...

    def latest_event_at(self) -> datetime | None:
        """The latest ``at`` of the handled events: the engine's idea of "now" where no
        event gives one (a claim, delivery, a reload); ``None`` before any event."""
        ...

    # --- clients, agents, desks, IBs ----------------------------------------------------------

    def client(self, client_id: str) -> dict[str, Any] | None:
        """The client's record; inside a unit of work the row stays locked until it ends
        (two events of one client are applied one after the other)."""
        ...

    def put_client(self, client: dict[str, Any]) -> None: ...

    def clients(self) -> Iterator[dict[str, Any]]:
        """Every client, in registration order."""
        ...

    def agents(self) -> Mapping[str, model.Agent]: ...

    def put_agent(self, agent: model.Agent) -> None: ...

    def desks(self) -> Mapping[str, model.Desk]: ...

    def put_desk(self, desk: model.Desk) -> None: ...

    def ib(self, ib_id: str) -> dict[str, Any] | None: ...

    def put_ib(self, ib: dict[str, Any]) -> None: ...

    # --- targets ------------------------------------------------------------------------------

    def targets(self) -> tuple[model.Target, ...]:
        """The targets of the rule set the engine last started or reloaded with (what
        leaderboards measure attainment against); empty before any."""
        ...

    def put_targets(self, targets: Sequence[model.Target]) -> None:
        """Replace the stored targets with ``targets``."""
        ...

    # --- assignments --------------------------------------------------------------------------

    def assignment(self, client_id: str) -> Assignment | None:
        """The client's open assignment, if any."""
        ...

    def assignments(self, client_id: str) -> list[Assignment]:
        """The client's assignments, oldest first (the open one last)."""
        ...

    def start_assignment(self, assignment: Assignment) -> None:
        """Record a new open assignment; the client must have none open."""
        ...

    def end_assignment(
        self, client_id: str, at: datetime, reason: EndReason, ended_by: str
    ) -> Assignment | None:
        """End the client's open assignment (if any) and return it as ended."""
        ...

    def mark_contacted(self, client_id: str, at: datetime) -> None:
        """The open assignment's agent contacted the client at ``at`` (first time counts)."""
        ...

    def mark_breached(self, client_id: str, at: datetime) -> None:
        """The open assignment missed its first-contact SLA; reported once."""
        ...

    def sla_due(self, now: datetime) -> list[Assignment]:
        """Open assignments not yet breached whose ``sla_due_at < now`` (a contact at the deadline is in time) and whose first
        contact is missing or came after ``sla_due_at``, oldest due first."""
        ...

    def open_clients(self, agent_id: str) -> list[str]:
        """Ids of the clients an agent holds now, in the order assigned."""
        ...

    def open_counts(self) -> Mapping[str, int]:
        """Open clients per agent (agents with none may be missing)."""
        ...

    def lock_routing(self) -> None:
        """Inside a unit of work: hold the routing lock until it ends, so that routing,
        claims and capacity checks of concurrent workers never interleave. The engine takes
        it first in every unit of work that may route (lock order: routing, then clients)."""
        ...

    def routing_state(self) -> RoutingState:
        """The strategies' state (round-robin pointers, weighted current values)."""
        ...

    def put_routing_state(self, state: RoutingState) -> None: ...

    # --- pools --------------------------------------------------------------------------------

    def pool(self, desk: str) -> list[PoolEntry]:
        """The clients waiting in a desk's pool, oldest first."""
        ...

    def pool_entry(self, client_id: str) -> PoolEntry | None: ...

    def add_to_pool(self, entry: PoolEntry) -> None:
        """Put a client in a pool (replacing any entry they had)."""
        ...

    def take_from_pool(self, client_id: str) -> PoolEntry | None:
        """Remove and return the client's pool entry; ``None`` if someone took it first.
        Atomic: of two concurrent takers exactly one gets the entry."""
        ...

    # --- scores, decisions, dead letters, queues ----------------------------------------------

    def put_scores(
        self, client_id: str, scores: Mapping[str, float], bands: Mapping[str, str | None]
    ) -> None: ...

    def scores(self, client_id: str) -> tuple[Mapping[str, float], Mapping[str, str | None]] | None:
        """The client's latest scores and bands."""
        ...

    def add_decision(self, decision: Decision) -> None: ...

    def decisions(self, client_id: str | None = None) -> list[Decision]:
        """Decisions in the order made, of one client or of all."""
        ...

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Keep a dead letter; one identical to a kept one (same id, raw text and reason:
        the same bad input sent again) is kept once."""
        ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def put_queue_item(self, item: QueueItem) -> None:
        """Open or update the client's item in ``item.queue`` (one per client per queue)."""
        ...

    def client_queue_items(self, client_id: str) -> list[QueueItem]:
        """The client's open items, in any queue."""
        ...

    def last_fired(self, client_id: str, trigger: str) -> datetime | None:
        """When the trigger last fired for the client (cooldowns)."""
        ...

    def put_fired(self, client_id: str, trigger: str, at: datetime) -> None: ...

    def queue_items(self, queue: str | None = None, *, open_only: bool = True) -> list[QueueItem]:
        """Items of one queue (or all), highest priority first, then oldest."""
        ...
