"""Run-time values and the few operations whose meaning must be identical on every back end.

Conventions (shared by the interpreter, the Python compiler and the SQL compiler):
a timestamp is float epoch seconds (UTC), a duration is float seconds, null is
``None``; ``lower``/``upper`` change ASCII letters only and ``round`` rounds half
away from zero, so that Python, SQLite and PostgreSQL agree whatever the locale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def to_epoch(value: Any) -> float | None:
    """A host's timestamp (aware/naive-UTC datetime, epoch seconds, ISO 8601 text) as epoch seconds."""
    if value is None:
        return None
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[no-any-return]
    if cls is int:
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        seconds: float = value.timestamp()
        return seconds
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        return to_epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return float(value)  # Decimal, numpy scalars and other number types
    raise TypeError(f"not a timestamp: {value!r}")


def to_number(value: Any) -> Any:
    """Decimal amounts become floats so that they mix with the rules' numbers."""
    if value.__class__ is Decimal:
        return float(value)
    return value


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def ascii_lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def ascii_upper(text: str) -> str:
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def mod(a: int, b: int) -> int | None:
    """``a % b`` with the sign of the dividend (as SQL does); null when ``b`` is 0."""
    if b == 0:
        return None
    r = abs(a) % abs(b)
    return r if a >= 0 else -r


def divide(a: float, b: float) -> float | None:
    if b == 0:
        return None
    return a / b


def round_half_away(x: float) -> int:
    """Half away from zero, exactly: ``x - floor(x)`` is exact for a double, ``x + 0.5`` is not."""
    magnitude = abs(x)
    whole = math.floor(magnitude)
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    return rounded if x >= 0 else -rounded


def infer_stage(client: Mapping[str, Any]) -> str:
    """A record without ``stage``: implied by the furthest timestamp it has (SPEC §11)."""
    if client.get("ftd_at") is not None:
        return "funded"
    if client.get("kyc_approved_at") is not None:
        return "kyc_approved"
    if client.get("kyc_submitted_at") is not None:
        return "kyc_submitted"
    return "registered"
