"""What the benchmarks share (run them as ``python bench/NAME.py``: this folder is on the path)."""

from __future__ import annotations

from pathlib import Path


def cpu_pressure() -> float | None:
    """Linux PSI: the share of the last 10 s in which runnable tasks waited for a CPU."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(first.split()[1].split("=")[1])
