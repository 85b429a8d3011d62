"""Notifications (SPEC §2, §11): what the engine tells agents, managers, admins and clients.

A :class:`Notification` is a frozen value. Its ``id`` is an idempotency key derived from the
event that decided it, its kind and its recipient, so the same decision replayed (a retried
event, a redelivery from the outbox) yields the same id and a notifier can drop the repeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, get_args

from crmcore.serialize import jsonable

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

_KINDS = frozenset(get_args(NotificationKind))

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
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("created_at must be a timezone-aware datetime")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient, decided by one event.

    ``recipient`` is an agent or manager id, ``client:<id>`` or ``admins``. ``payload`` holds
    what the recipient needs (the client's details, scores, the trigger's actions, ...; the
    notifications of one decision share it: read it, do not change it). Build it with
    :meth:`create` so that ``id`` is :func:`notification_id` of its parts. A frozen
    dataclass, not a pydantic model: the engine makes one or more per decision.
    """

    id: str
    kind: NotificationKind
    recipient: str
    event_id: str
    created_at: datetime
    client_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    rule_version: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown notification kind {self.kind!r}")
        if not (self.id and self.recipient and self.event_id):
            empty = next(n for n in ("id", "recipient", "event_id") if not getattr(self, n))
            raise ValueError(f"{empty} must be a non-empty string")
        created = self.created_at
        if type(created) is not datetime or created.tzinfo is not UTC:
            object.__setattr__(self, "created_at", _aware_utc(created))

    @classmethod
    def create(
        cls,
        *,
        kind: NotificationKind,
        recipient: str,
        event_id: str,
        created_at: datetime,
        client_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
        rule_version: str | None = None,
        subject: str | None = None,
    ) -> Notification:
        """A notification whose ``id`` is :func:`notification_id` of ``event_id``, ``kind``,
        ``recipient`` and ``subject`` (default: the client id)."""
        if subject is None:
            subject = client_id or ""
        return cls(
            notification_id(event_id, kind, recipient, subject), kind, recipient, event_id,
            created_at, client_id, payload if payload is not None else {}, rule_version,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 text, amounts as numbers."""
        return {
            "id": self.id, "kind": self.kind, "recipient": self.recipient,
            "event_id": self.event_id, "created_at": jsonable(self.created_at),
            "client_id": self.client_id, "payload": jsonable(self.payload),
            "rule_version": self.rule_version,
        }
