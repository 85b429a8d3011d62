"""The :class:`Notifier` protocol and the built-in notifiers.

A notifier delivers one notification; raising any exception tells the outbox that delivery
failed and must be retried. Delivery is at least once, so a notifier that cares about
duplicates dedupes by ``notification.id`` (as :class:`InMemoryNotifier` does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from crmcore.notify.notification import Notification

__all__ = [
    "CallbackNotifier", "InMemoryNotifier", "LoggingNotifier", "NotificationFailed", "Notifier",
    "NullNotifier",
]

_log = logging.getLogger("crmcore.notify")


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications; ``send`` returns on success and raises on failure."""

    def send(self, notification: Notification) -> None: ...


class NotificationFailed(Exception):
    """Raised by :class:`InMemoryNotifier` for each of its ``fail_times`` deliberate failures."""


class NullNotifier:
    """Accepts and discards every notification: the engine's default."""

    def send(self, notification: Notification) -> None:
        return None


class InMemoryNotifier:
    """Keeps what it delivered in ``sent``, once per id, in delivery order (for tests).

    With ``fail_times=n`` the first ``n`` calls to :meth:`send` raise :class:`NotificationFailed`
    and record nothing, to exercise the outbox's retries.
    """

    def __init__(self, *, fail_times: int = 0) -> None:
        if fail_times < 0:
            raise ValueError("fail_times must be >= 0")
        self.sent: list[Notification] = []
        self.fail_times = fail_times
        self.attempts = 0  # every call to send, failed or not
        self._ids: set[str] = set()

    def send(self, notification: Notification) -> None:
        self.attempts += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise NotificationFailed(f"deliberate failure delivering {notification.id}")
        if notification.id in self._ids:
            return  # a redelivery of something already delivered
        self._ids.add(notification.id)
        self.sent.append(notification)


class LoggingNotifier:
    """Logs each notification at INFO on the ``crmcore.notify`` logger (or the one given)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or _log

    def send(self, notification: Notification) -> None:
        self.logger.info(
            "notification %s %s -> %s (client %s, event %s)",
            notification.id, notification.kind, notification.recipient,
            notification.client_id, notification.event_id,
        )


class CallbackNotifier:
    """Calls ``fn(notification)``; whatever ``fn`` raises is a failed delivery."""

    def __init__(self, fn: Callable[[Notification], object]) -> None:
        self.fn = fn

    def send(self, notification: Notification) -> None:
        self.fn(notification)
