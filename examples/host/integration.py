"""A broker's back office embedding crmcore, in plain Python.

    python examples/host/integration.py

It shows the two seams a host usually fills:

- a **Notifier**: crmcore hands every notification (new lead assigned, SLA breach, a
  retention trigger...) to ``send``; raise to have it retried from the outbox later. Here it
  formats a message for the host's chat and keeps it; a real one would call the chat's API.
- a **Store adapter**: the engine reads and writes state through the Store protocol. Here
  the adapter extends the embedded SQLite store and mirrors every new assignment into the
  host's own audit log (a list standing in for the host's table). Rows wait with their unit
  of work and reach the log only when it commits (a savepoint's rows go to the unit around
  it), so the audit row exists exactly when the assignment does: an event that fails and
  is rolled back leaves none.

Then it feeds the example events, asks why a client went where it went, and shows an
agent's task list and a manager's queue.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import crmcore
from crmcore.notify import Notification
from crmcore.storage.records import Assignment

ROOT = Path(__file__).resolve().parents[2]  # the repository


class ChatNotifier:
    """Posts each notification to the recipient's chat channel (kept in ``posted`` here)."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    def send(self, notification: Notification) -> None:
        self.posted.append(f"@{notification.recipient}: {notification.kind} for client {notification.client_id or '-'}")


class AuditedStore(crmcore.SqlStore):
    """SqlStore that also writes each new assignment to the host's audit log, on commit."""

    def __init__(self, url: str, audit: list[tuple[str, str, str]]) -> None:
        super().__init__(url)
        self.audit = audit
        self._pending: list[list[tuple[str, str, str]]] = []  # one list per open unit of work

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        self._pending.append([])
        try:
            with super().unit_of_work():
                yield
        except BaseException:
            self._pending.pop()  # rolled back: so are its audit rows
            raise
        rows = self._pending.pop()
        if self._pending:
            self._pending[-1].extend(rows)  # a savepoint: the unit around it decides
        else:
            self.audit.extend(rows)  # committed

    def start_assignment(self, assignment: Assignment) -> None:
        super().start_assignment(assignment)  # raises (and writes nothing) if the client is taken
        self._pending[-1].append((assignment.client_id, assignment.desk, assignment.agent_id))


def main() -> None:
    rules = crmcore.load_rules(ROOT / "examples" / "rules")
    audit: list[tuple[str, str, str]] = []
    database = Path(tempfile.mkdtemp()) / "host.db"
    notifier = ChatNotifier()
    engine = crmcore.Engine(rules, store=AuditedStore(f"sqlite:///{database}", audit), notifier=notifier)

    summary = engine.handle_many(crmcore.read_events(ROOT / "examples" / "events" / "events.jsonl", rules))
    print(f"handled {summary.handled}, duplicates {summary.duplicates}, dead-lettered {summary.dead_lettered}")
    print(f"audit log: {len(audit)} assignments, first {audit[0]}")
    print(f"chat: {len(notifier.posted)} messages, first: {notifier.posted[0]}")

    why = engine.explain("c-1001")  # its latest routing: the FTD hand-over to retention
    routing = why["routing"]
    print(f"c-1001: lead score {why['scores']['lead']}, {routing['stage']} routing by {routing['rule']}"
          f" to {routing['desk']}/{routing['agent']}")

    agent = engine.view(routing["agent"])
    print(f"{routing['agent']} sees {len(agent.clients())} client(s) and {len(agent.tasks())} task(s)")
    manager = engine.view("m-retention")
    print(f"m-retention: {len(manager.queue('at_risk'))} item(s) in at_risk")


if __name__ == "__main__":
    main()
