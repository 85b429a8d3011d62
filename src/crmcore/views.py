"""What each person may see (SPEC §7, §11): ``engine.view(viewer_id)``.

- an ``agent`` sees the clients assigned to them and their desk's pool; in queues and
  task lists, the items of their own clients;
- a ``manager`` sees everything of the agents they manage (and clients assigned to
  themselves), their desk's pool and their desk's queues;
- an ``admin`` sees everything.

Anything else raises :class:`PermissionDenied` — also for a client that does not exist,
so that a refusal never tells whether a client id is real. Every read path goes through
:meth:`View.sees`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crmcore.rules import model
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.values import to_moment
from crmcore.serialize import jsonable
from crmcore.storage.records import PoolEntry, QueueItem

if TYPE_CHECKING:
    from crmcore.engine import Engine
    from crmcore.storage.base import Store

__all__ = ["PermissionDenied", "QueueEntry", "Task", "View"]


class PermissionDenied(CrmError):
    """The viewer may not see or do this."""


@dataclass(frozen=True, slots=True)
class Task:
    """One client in a task list, once, with every open reason, highest priority first."""

    client_id: str
    priority: float
    items: tuple[QueueItem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "priority": self.priority,
            "reasons": [item.as_dict() for item in self.items],
        }


_SUMMARY = ("id", "country", "language", "stage", "balance", "ftd_at", "status", "last_contact_at",
            "next_follow_up_at", "agent_id", "desk_id")


@dataclass(frozen=True, slots=True)
class QueueEntry(QueueItem):
    """A queue item as the dashboard shows it: with the client's summary and its age."""

    client: dict[str, Any] = field(default_factory=dict)
    age: timedelta | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **QueueItem.as_dict(self), "client": jsonable(self.client),
            "age_hours": None if self.age is None else self.age.total_seconds() / 3600,
        }


HOST = model.Agent(id="host", desk="*", role="admin")
"""The viewer of :meth:`crmcore.Engine.queue` without a viewer: the host application itself,
which sees everything (as an admin does)."""


class View:
    """The engine's data as one viewer may see it (``viewer_id`` ``None``: the host itself)."""

    def __init__(self, source: Engine | Store, viewer_id: str | None) -> None:
        store = source.store if hasattr(source, "store") else source
        viewer = HOST if viewer_id is None else store.agents().get(viewer_id)
        if viewer is None:
            raise PermissionDenied(f"unknown viewer {viewer_id!r}")
        self._store: Store = store
        self.viewer: model.Agent = viewer
        self._team_ids: frozenset[str] | None = None

    @property
    def _role(self) -> str:
        return self.viewer.role

    def _team(self) -> frozenset[str]:
        """The agents whose clients the viewer sees: themselves, and a manager's team
        (worked out once per view: a view is read at one moment)."""
        if self._team_ids is None:
            me = self.viewer.id
            team = {me}
            if self._role == "manager":
                team |= {a.id for a in self._store.agents().values() if a.manager == me}
            self._team_ids = frozenset(team)
        return self._team_ids

    def sees(self, client_id: str) -> bool:
        """Whether the viewer may see this client."""
        if self._role == "admin":
            return self._store.client(client_id) is not None
        current = self._store.assignment(client_id)
        if current is not None:
            return current.agent_id in self._team()
        pooled = self._store.pool_entry(client_id)
        return pooled is not None and pooled.desk == self.viewer.desk

    def _check_desk(self, desk: str) -> None:
        if self._role != "admin" and desk != self.viewer.desk:
            raise PermissionDenied(f"{self.viewer.id} may not see desk {desk!r}")

    def client(self, client_id: str) -> dict[str, Any]:
        """The client's record with scores, bands, assignment and pool entry."""
        if not self.sees(client_id):
            raise PermissionDenied(f"{self.viewer.id} may not see client {client_id!r}")
        return self._summary(client_id)

    def clients(self) -> list[dict[str, Any]]:
        """Every client the viewer may see, in registration order."""
        store = self._store
        if self._role == "admin":
            ids = [client["id"] for client in store.clients()]
        else:
            ids = [c for agent in sorted(self._team()) for c in store.open_clients(agent)]
            ids += [entry.client_id for entry in store.pool(self.viewer.desk)]
            order = {client["id"]: n for n, client in enumerate(store.clients())}
            ids.sort(key=order.__getitem__)
        return [self._summary(client_id) for client_id in ids]

    def pool(self, desk: str) -> list[PoolEntry]:
        """The clients waiting in a desk's pool, oldest first (the viewer's own desk)."""
        self._check_desk(desk)
        return self._store.pool(desk)

    def queue(self, name: str, desk: str | None = None, now: datetime | str | float | None = None) -> list[QueueEntry]:
        """Open items of a queue, highest priority first, each with the client's summary and
        its age at ``now`` (default: the latest event's time): for an admin every desk's (or
        ``desk``'s), for a manager their desk's and their team's, for an agent their own
        clients'."""
        if desk is not None:
            self._check_desk(desk)
        moment = to_moment(now) if now is not None else self._store.latest_event_at()
        return [
            self._entry(item, moment) for item in self._store.queue_items(name)
            if (desk is None or item.desk == desk) and self._sees_item(item)
        ]

    def _entry(self, item: QueueItem, now: datetime | None) -> QueueEntry:
        client = self._store.client(item.client_id) or {}
        summary = {name: client.get(name) for name in _SUMMARY}
        age = None if now is None else now - item.opened_at
        values = {f.name: getattr(item, f.name) for f in fields(QueueItem)}
        return QueueEntry(**values, client=summary, age=age)

    def _sees_item(self, item: QueueItem) -> bool:
        if self._role == "admin":
            return True
        if self._role == "manager":  # their desk's queues (clients on the desk now), their team's
            return self._desk_of(item.client_id) == self.viewer.desk or self.sees(item.client_id)
        current = self._store.assignment(item.client_id)  # an agent: their own clients' items
        return current is not None and current.agent_id == self.viewer.id

    def _desk_of(self, client_id: str) -> str | None:
        current = self._store.assignment(client_id)
        if current is not None:
            return current.desk
        pooled = self._store.pool_entry(client_id)
        return None if pooled is None else pooled.desk

    def tasks(self) -> list[Task]:
        """Each visible client with open queue items once, with all of them, ordered by the
        highest priority among them (then the oldest item)."""
        by_client: dict[str, list[QueueItem]] = {}
        for item in self._store.queue_items():
            if self._sees_item(item):
                by_client.setdefault(item.client_id, []).append(item)
        tasks = [Task(client_id, items[0].priority, tuple(items)) for client_id, items in by_client.items()]
        tasks.sort(key=lambda task: (-task.priority, min(i.opened_at for i in task.items), task.client_id))
        return tasks

    def status(self, client_id: str, now: datetime | str | float | None = None) -> dict[str, Any]:
        """The client's contact status (SPEC §7): the current status, the last contact and
        the time since it, the next follow-up (a ``callback``) and whether it is due, and the
        contact history (oldest first), at ``now`` (default: the latest event's time)."""
        if not self.sees(client_id):
            raise PermissionDenied(f"{self.viewer.id} may not see client {client_id!r}")
        client = self._store.client(client_id)
        assert client is not None
        now = to_moment(now) if now is not None else self._store.latest_event_at() or client["registered_at"]
        last, follow_up = client.get("last_contact_at"), client.get("next_follow_up_at")
        contacts = [
            {"at": e.get("at"), "agent_id": e.get("agent_id"), "channel": e.get("channel"),
             "outcome": e.get("outcome"), "callback_at": e.get("callback_at"), "note": e.get("note")}
            for e in self._store.history(client_id) if e.get("type") == "contact"
        ]
        return {
            "client_id": client_id,
            "status": client.get("status"),
            "last_contact_at": last,
            "hours_since_contact": None if last is None else (now - last).total_seconds() / 3600,
            "next_follow_up_at": follow_up,
            "follow_up_due": follow_up is not None and follow_up <= now,
            "contacts": contacts,
        }

    def follow_ups_due(self, now: datetime | str | float) -> list[dict[str, Any]]:
        """Visible clients whose next follow-up (``callback_at``) is at or before ``now``,
        the most overdue first."""
        now = to_moment(now)
        due = [c for c in self._visible() if c.get("next_follow_up_at") is not None and c["next_follow_up_at"] <= now]
        due.sort(key=lambda c: (c["next_follow_up_at"], c["id"]))
        return due

    def not_contacted_since(self, since: datetime | str | float) -> list[dict[str, Any]]:
        """Visible clients with no contact at or after ``since`` (never contacted included),
        the longest waiting first."""
        since = to_moment(since, "since")
        waiting = [c for c in self._visible() if c.get("last_contact_at") is None or c["last_contact_at"] < since]
        waiting.sort(key=lambda c: (c.get("last_contact_at") is not None, c.get("last_contact_at") or c["registered_at"], c["id"]))
        return waiting

    def _visible(self) -> list[dict[str, Any]]:
        if self._role == "admin":
            return list(self._store.clients())
        return [c for c in self._store.clients() if self.sees(c["id"])]

    def _summary(self, client_id: str) -> dict[str, Any]:
        store = self._store
        client = store.client(client_id)
        assert client is not None
        scores, bands = store.scores(client_id) or ({}, {})
        current = store.assignment(client_id)
        pooled = store.pool_entry(client_id)
        return {
            **client,
            "scores": dict(scores),
            "bands": dict(bands),
            "assignment": None if current is None else current.as_dict(),
            "pool": None if pooled is None else pooled.as_dict(),
        }
