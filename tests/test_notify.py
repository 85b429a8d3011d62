"""Notifications: stable ids, built-in notifiers, and outbox delivery with retries."""

from __future__ import annotations

import logging
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone

import pytest

from crmcore.notify import (
    ADMINS,
    Backoff,
    CallbackNotifier,
    InMemoryNotifier,
    LoggingNotifier,
    MemoryOutbox,
    Notification,
    NotificationKind,
    Notifier,
    NullNotifier,
    Outbox,
    UnknownNotification,
    client_recipient,
    deliver_pending,
    notification_id,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def note(
    event_id: str = "e1", kind: NotificationKind = "assigned", recipient: str = "a1",
    at: datetime = T0,
) -> Notification:
    return Notification.create(
        kind=kind, recipient=recipient, event_id=event_id, created_at=at, client_id="c1",
        payload={"client": {"id": "c1", "country": "DE"}}, rule_version="v1",
    )


# --- ids --------------------------------------------------------------------------------------

def test_notification_id_is_stable_sha256_of_event_kind_and_recipient() -> None:
    first = notification_id("e1", "assigned", "a1", "c1")
    assert first == notification_id("e1", "assigned", "a1", "c1")
    assert len(first) == 64 and int(first, 16) >= 0
    assert note().id == first


def test_notification_id_differs_by_event_kind_and_recipient() -> None:
    ids = {
        notification_id("e1", "assigned", "a1"),
        notification_id("e2", "assigned", "a1"),
        notification_id("e1", "assigned_to_team", "a1"),
        notification_id("e1", "assigned", "m1"),
        notification_id("e1", "assigned", client_recipient("c1")),
        notification_id("e1", "unrouted", ADMINS),
        notification_id("e1", "assigned", "a1", "c2"),
    }
    assert len(ids) == 7


def test_notification_id_parts_do_not_run_together() -> None:
    assert notification_id("ab", "assigned", "c") != notification_id("a", "bassigned", "c")
    assert notification_id("e", "assigned", "ab", "c") != notification_id("e", "assigned", "a", "bc")


def test_notification_is_frozen_and_needs_an_aware_time() -> None:
    with pytest.raises(FrozenInstanceError):
        note().recipient = "a2"  # type: ignore[misc]
    with pytest.raises(ValueError, match="timezone-aware"):
        note(at=datetime(2024, 5, 1, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        Notification(id="x", kind="assigned", recipient="a1", event_id="e1", created_at=datetime(2024, 5, 1))
    berlin = note(at=datetime(2024, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))))
    assert berlin.created_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC) and berlin.created_at.tzinfo is UTC


def test_notification_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown notification kind"):
        Notification(id="x", kind="shout", recipient="a1", event_id="e1", created_at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown notification kind"):
        note(kind="shout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recipient must be a non-empty string"):
        note(recipient="")


def test_notification_as_dict_is_json_ready() -> None:
    data = note().as_dict()
    assert data["created_at"] == "2024-05-01T09:00:00Z"
    assert data["payload"] == {"client": {"id": "c1", "country": "DE"}} and data["kind"] == "assigned"


# --- notifiers --------------------------------------------------------------------------------

def test_builtins_satisfy_the_notifier_protocol() -> None:
    for notifier in (InMemoryNotifier(), LoggingNotifier(), CallbackNotifier(print), NullNotifier()):
        assert isinstance(notifier, Notifier)
    assert isinstance(MemoryOutbox(), Outbox)


def test_in_memory_notifier_dedupes_a_resend() -> None:
    notifier = InMemoryNotifier()
    notifier.send(note())
    notifier.send(note())
    notifier.send(note(recipient="m1", kind="assigned_to_team"))
    assert [n.recipient for n in notifier.sent] == ["a1", "m1"]


def test_in_memory_notifier_fails_its_first_n_sends() -> None:
    notifier = InMemoryNotifier(fail_times=2)
    for _ in range(2):
        with pytest.raises(Exception, match="deliberate failure"):
            notifier.send(note())
    notifier.send(note())
    assert notifier.sent == [note()] and notifier.attempts == 3


def test_callback_notifier_calls_its_function() -> None:
    received: list[Notification] = []
    CallbackNotifier(received.append).send(note())
    assert received == [note()]


def test_logging_notifier_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="crmcore.notify"):
        LoggingNotifier().send(note())
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "assigned" in record.getMessage() and "a1" in record.getMessage()


def test_null_notifier_accepts_everything() -> None:
    NullNotifier().send(note())


# --- outbox -----------------------------------------------------------------------------------

def test_duplicate_add_keeps_one_entry() -> None:
    outbox = MemoryOutbox()
    outbox.add([note(), note()])
    outbox.add([note()])
    assert outbox.pending_count() == 1 and len(outbox.entries()) == 1


def test_adding_a_delivered_id_again_does_not_resend_it() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier()
    outbox.add([note()])
    deliver_pending(outbox, notifier, T0)
    outbox.add([note()])
    assert deliver_pending(outbox, notifier, T0 + timedelta(hours=1)).delivered == 0
    assert outbox.pending_count() == 0


def test_delivery_sends_every_due_entry_and_marks_it_delivered() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier()
    outbox.add([note(), note(kind="assigned_to_team", recipient="m1")])
    report = deliver_pending(outbox, notifier, T0)
    assert (report.delivered, report.failed, report.pending) == (2, 0, 0)
    assert len(notifier.sent) == 2
    assert all(e.delivered_at == T0 and e.attempts == 1 for e in outbox.entries())


def test_failing_notifier_leaves_entries_pending_with_backoff_schedule() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier(fail_times=1000)
    outbox.add([note()])
    now = T0
    expected = [30, 60, 120, 240]
    for attempt, seconds in enumerate(expected, start=1):
        report = deliver_pending(outbox, notifier, now)
        assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
        [entry] = outbox.entries()
        assert entry.attempts == attempt
        assert entry.next_attempt_at == now + timedelta(seconds=seconds)
        assert entry.last_error is not None and "NotificationFailed" in entry.last_error
        assert entry.delivered_at is None
        now = entry.next_attempt_at
    assert notifier.sent == []


def test_later_delivery_past_next_attempt_delivers() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier(fail_times=1)
    outbox.add([note()])
    deliver_pending(outbox, notifier, T0)
    report = deliver_pending(outbox, notifier, T0 + timedelta(seconds=31))
    assert (report.delivered, report.failed, report.pending) == (1, 0, 0)
    [entry] = outbox.entries()
    assert entry.attempts == 2 and entry.delivered_at == T0 + timedelta(seconds=31)
    assert notifier.sent == [note()]


def test_entries_not_yet_due_are_not_sent() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier(fail_times=1)
    outbox.add([note(), note(event_id="e2", at=T0 + timedelta(minutes=5))])
    deliver_pending(outbox, notifier, T0)  # e1 fails: due again at T0 + 30s; e2 not yet created
    report = deliver_pending(outbox, notifier, T0 + timedelta(seconds=29))
    assert (report.delivered, report.failed, report.pending) == (0, 0, 2)
    assert notifier.attempts == 1 and notifier.sent == []


def test_limit_bounds_one_run_and_oldest_due_goes_first() -> None:
    outbox, notifier = MemoryOutbox(), InMemoryNotifier()
    outbox.add([note(event_id="late", at=T0 + timedelta(seconds=1)), note(event_id="early")])
    report = deliver_pending(outbox, notifier, T0 + timedelta(minutes=1), limit=1)
    assert (report.delivered, report.pending) == (1, 1)
    assert [n.event_id for n in notifier.sent] == ["early"]


def test_callback_failure_is_retried_not_dropped() -> None:
    calls: list[str] = []

    def flaky(notification: Notification) -> None:
        calls.append(notification.id)
        if len(calls) < 3:
            raise ConnectionError("smtp down")

    outbox = MemoryOutbox()
    outbox.add([note()])
    now = T0
    for _ in range(3):
        deliver_pending(outbox, CallbackNotifier(flaky), now)
        now += timedelta(hours=2)
    [entry] = outbox.entries()
    assert len(calls) == 3 and entry.attempts == 3 and entry.delivered_at is not None
    assert entry.last_error == "ConnectionError: smtp down"


def test_unknown_id_is_a_crmcore_error() -> None:
    with pytest.raises(UnknownNotification):
        MemoryOutbox().delivered("nope", T0)


def test_delivery_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        deliver_pending(MemoryOutbox(), NullNotifier(), datetime(2024, 5, 1))


# --- backoff ----------------------------------------------------------------------------------

def test_backoff_doubles_from_thirty_seconds() -> None:
    backoff = Backoff()
    assert [backoff.delay(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]


def test_backoff_caps_at_one_hour() -> None:
    backoff = Backoff()
    assert backoff.delay(8) == timedelta(hours=1)  # 30s * 2**7 = 3840s > 3600s
    assert backoff.delay(10_000) == timedelta(hours=1)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=timedelta(0))
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Backoff().delay(0)
