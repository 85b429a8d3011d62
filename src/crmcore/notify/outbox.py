"""The outbox (SPEC §10): notifications are stored first, then delivered until they get through.

The engine adds a decision's notifications to the outbox in the same unit of work as the
decision; :func:`deliver_pending` later hands each due entry to a :class:`Notifier`. A failure
records the error and schedules the next attempt with a deterministic exponential
:class:`Backoff`; entries are never dropped, only delivered. Time is always passed in (``now``),
never read from the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from crmcore.notify.notification import Notification
from crmcore.notify.notifiers import Notifier
from crmcore.rules.diagnostics import CrmError

__all__ = [
    "Backoff", "DeliveryReport", "MemoryOutbox", "Outbox", "OutboxEntry", "UnknownNotification",
    "deliver_pending",
]


class UnknownNotification(CrmError):
    """An outbox was told about a notification id it does not hold."""

    def __init__(self, notification_id: str) -> None:
        self.notification_id = notification_id
        super().__init__(f"no notification {notification_id!r} in the outbox")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A notification in the outbox and the state of its delivery.

    ``attempts`` counts every send tried (failed or not); ``next_attempt_at`` is when it is due
    next (its ``created_at`` until the first failure); ``delivered_at`` is set once, on success.
    """

    notification: Notification
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None

    @property
    def id(self) -> str:
        """The notification's id (the outbox's key)."""
        return self.notification.id

    @property
    def pending(self) -> bool:
        """True until the notification has been delivered."""
        return self.delivered_at is None


@runtime_checkable
class Outbox(Protocol):
    """Where notifications wait for delivery; one entry per notification id."""

    def add(self, notifications: Iterable[Notification]) -> None:
        """Store notifications for delivery; an id already held is kept as it is (not reset)."""
        ...

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` undelivered entries with ``next_attempt_at <= now``, oldest due first."""
        ...

    def delivered(self, id: str, at: datetime) -> None:
        """Record a successful delivery (one more attempt); the entry is no longer pending."""
        ...

    def failed(self, id: str, at: datetime, error: str, next_attempt_at: datetime) -> None:
        """Record a failed attempt and when to try again; the entry stays pending."""
        ...

    def pending_count(self) -> int:
        """How many entries are not yet delivered."""
        ...


class MemoryOutbox:
    """An :class:`Outbox` in a dict, for tests and single-process use (not thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[str, OutboxEntry] = {}
        self._pending: dict[str, OutboxEntry] = {}  # the undelivered entries: what `due` scans

    def _put(self, entry: OutboxEntry) -> None:
        """Store ``entry`` (new or changed); subclasses make it part of a unit of work."""
        self._entries[entry.id] = entry
        if entry.pending:
            self._pending[entry.id] = entry
        else:
            self._pending.pop(entry.id, None)

    def add(self, notifications: Iterable[Notification]) -> None:
        for notification in notifications:
            if notification.id not in self._entries:
                self._put(OutboxEntry(notification=notification, next_attempt_at=notification.created_at))

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        ready = [e for e in self._pending.values() if e.next_attempt_at <= now]
        ready.sort(key=lambda e: (e.next_attempt_at, e.notification.created_at))  # stable: ties keep the order added
        return ready[:limit]

    def delivered(self, id: str, at: datetime) -> None:
        entry = self.entry(id)
        self._put(OutboxEntry(entry.notification, entry.next_attempt_at, entry.attempts + 1, entry.last_error, at))

    def failed(self, id: str, at: datetime, error: str, next_attempt_at: datetime) -> None:
        entry = self.entry(id)
        self._put(replace(entry, attempts=entry.attempts + 1, last_error=error, next_attempt_at=next_attempt_at))

    def pending_count(self) -> int:
        return len(self._pending)

    def entry(self, id: str) -> OutboxEntry:
        """The entry for a notification id; :class:`UnknownNotification` if there is none."""
        try:
            return self._entries[id]
        except KeyError:
            raise UnknownNotification(id) from None

    def entries(self) -> list[OutboxEntry]:
        """Every entry, delivered or not, in the order first added."""
        return list(self._entries.values())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Deterministic exponential backoff: after the n-th failure wait ``base * factor**(n-1)``,
    never more than ``cap``. No jitter: the same failures give the same schedule."""

    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise ValueError("backoff base must be positive")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if self.cap < self.base:
            raise ValueError("backoff cap must be >= base")

    def delay(self, failures: int) -> timedelta:
        """How long to wait after ``failures`` consecutive failed attempts (``failures >= 1``)."""
        if failures < 1:
            raise ValueError("failures must be >= 1")
        cap = self.cap.total_seconds()
        try:
            seconds = self.base.total_seconds() * float(self.factor) ** (failures - 1)
        except OverflowError:  # a huge attempt count: long past the cap
            return self.cap
        return self.cap if seconds >= cap else timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :func:`deliver_pending` run did: sent now, failed now, still pending after it."""

    delivered: int
    failed: int
    pending: int


def deliver_pending(
    outbox: Outbox,
    notifier: Notifier,
    now: datetime,
    *,
    limit: int = 100,
    backoff: Backoff = Backoff(),
) -> DeliveryReport:
    """Send up to ``limit`` entries due at ``now``, each once.

    A send that returns marks the entry delivered at ``now``; one that raises (any
    ``Exception``) records ``"Type: message"`` and makes the entry due again at
    ``now + backoff.delay(failed attempts so far)``. Nothing is ever dropped.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delivered = failed = 0
    for entry in outbox.due(now, limit):
        try:
            notifier.send(entry.notification)
        except Exception as exc:
            failures = entry.attempts + 1  # an entry is only retried while it keeps failing
            outbox.failed(entry.id, now, f"{type(exc).__name__}: {exc}", now + backoff.delay(failures))
            failed += 1
        else:
            outbox.delivered(entry.id, now)
            delivered += 1
    return DeliveryReport(delivered=delivered, failed=failed, pending=outbox.pending_count())
