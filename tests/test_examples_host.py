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
