"""Notifications (SPEC §2, §10): what the engine tells people, and how it gets delivered.

Decisions produce :class:`Notification` values with a stable id (the idempotency key). They are
added to an :class:`Outbox` with the decision, then :func:`deliver_pending` hands them to a
:class:`Notifier`, retrying failures with a deterministic :class:`Backoff` until delivered.
"""

from crmcore.notify.notification import (
    ADMINS,
    Notification,
    NotificationKind,
    client_recipient,
    notification_id,
)
from crmcore.notify.notifiers import (
    CallbackNotifier,
    InMemoryNotifier,
    LoggingNotifier,
    NotificationFailed,
    Notifier,
    NullNotifier,
)
from crmcore.notify.outbox import (
    Backoff,
    DeliveryReport,
    MemoryOutbox,
    Outbox,
    OutboxEntry,
    UnknownNotification,
    deliver_pending,
)

__all__ = [
    "ADMINS", "Backoff", "CallbackNotifier", "DeliveryReport", "InMemoryNotifier",
    "LoggingNotifier", "MemoryOutbox", "Notification", "NotificationFailed", "NotificationKind",
    "Notifier", "NullNotifier", "Outbox", "OutboxEntry", "UnknownNotification", "client_recipient",
    "deliver_pending", "notification_id",
]
