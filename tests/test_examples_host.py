"""examples/host/integration.py — a host with its own notifier and Store adapter — runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_host_integration_example_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "host" / "integration.py")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "handled 41, duplicates 1, dead-lettered 1"
    assert lines[1].startswith("audit log: 10 assignments, first ('c-1001', 'sales-dach', 'a04')")
    assert lines[2].startswith("chat: ") and "@a04: assigned for client c-1001" in lines[2]
    assert lines[3] == "c-1001: lead score 85, ftd routing by dach_to_retention to retention/r02"


def test_the_host_audit_log_keeps_only_committed_assignments(tmp_path: Path) -> None:
    import importlib.util
    from datetime import UTC, datetime

    import pytest

    from crmcore.storage.records import Assignment

    spec = importlib.util.spec_from_file_location("integration", ROOT / "examples" / "host" / "integration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    audit: list[tuple[str, str, str]] = []
    store = module.AuditedStore(f"sqlite:///{tmp_path / 'host.db'}", audit)
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)

    def assignment(client: str) -> Assignment:
        return Assignment(client, "a1", "sales", "registration", "r", "round_robin", at, f"e-{client}", "v", ())

    with pytest.raises(RuntimeError), store.unit_of_work():
        store.start_assignment(assignment("c1"))
        raise RuntimeError("the event fails after the assignment")
    with store.unit_of_work():
        with pytest.raises(RuntimeError), store.unit_of_work():  # a savepoint rolled back
            store.start_assignment(assignment("c2"))
            raise RuntimeError("this event fails")
        store.start_assignment(assignment("c3"))
    assert audit == [("c3", "sales", "a1")]
    store.close()
