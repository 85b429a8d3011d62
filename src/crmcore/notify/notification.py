"""Notifications (SPEC §2, §11): what the engine tells agents, managers, admins and clients.

A :class:`Notification` is a frozen value. Its ``id`` is an idempotency key derived from the
event that decided it, its kind and its recipient, so the same decision replayed (a retried
event, a redelivery from the outbox) yields the same id and a notifier can drop the repeat.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["ADMINS", "Notification", "NotificationKind", "client_recipient", "notification_id"]

NotificationKind: TypeAlias = Literal[
    "assigned",  # the agent a client was assigned to
    "assigned_to_team",  # that agent's manager
    "unassigned",  # nothing could be satisfied: the desk's managers
    "pooled",  # a `pool` rule: the desk's agents
    "unrouted",  # no rule matched at all: admins
    "sla_breach",  # first-contact SLA missed with `on_sla_breach: alert`: the manager
    "trigger",  # a trigger fired: its listed recipients
]

ADMINS = "admins"
"""The recipient of ``unrouted`` notifications."""


def client_recipient(client_id: str) -> str:
    """The recipient naming a client (``client:<id>``): a message for the host to deliver."""
    return f"client:{client_id}"


def notification_id(event_id: str, kind: str, recipient: str, subject: str = "") -> str:
    """The idempotency key: sha256 hex of the deciding event id, the kind, the recipient and
    the subject (the client, and the trigger, it is about: one event can re-route many
    clients or fire several triggers for one recipient).

    Stable across processes and runs; differs whenever any part differs. The parts are
    joined with a NUL so that ``("a", "bc")`` and ``("ab", "c")`` never collide.
    """
    key = "\0".join((event_id, kind, recipient, subject))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return value.astimezone(UTC)


Text = Annotated[str, StringConstraints(min_length=1)]


class Notification(BaseModel):
    """One message to one recipient, decided by one event.

    ``recipient`` is an agent or manager id, ``client:<id>`` or ``admins``. ``payload`` holds
    what the recipient needs (the client's details, the trigger's actions, ...). Build it with
    :meth:`create` so that ``id`` is :func:`notification_id` of its parts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text
    kind: NotificationKind
    recipient: Text
    event_id: Text
    created_at: Annotated[datetime, AfterValidator(_aware_utc)]
    client_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    rule_version: str | None = None

    @classmethod
    def create(
        cls,
        *,
        kind: NotificationKind,
        recipient: str,
        event_id: str,
        created_at: datetime,
        client_id: str | None = None,
        payload: dict[str, Any] | None = None,
        rule_version: str | None = None,
        subject: str | None = None,
    ) -> Notification:
        """A notification whose ``id`` is :func:`notification_id` of ``event_id``, ``kind``,
        ``recipient`` and ``subject`` (default: the client id)."""
        if subject is None:
            subject = client_id or ""
        return cls(
            id=notification_id(event_id, kind, recipient, subject),
            kind=kind,
            recipient=recipient,
            event_id=event_id,
            created_at=created_at,
            client_id=client_id,
            payload=payload or {},
            rule_version=rule_version,
        )
