"""Run-time values and the few operations whose meaning must be identical on every back end.

Conventions (shared by the interpreter, the Python compiler and the SQL compiler):
time is exact to the microsecond. In Python a timestamp is a *stamp*, the
``timedelta`` since the Unix epoch (UTC), and a duration is a ``timedelta``; in
SQL both are BIGINT microseconds. Null is ``None``; ``lower``/``upper`` change
ASCII letters only and ``round`` rounds half away from zero, so that Python,
SQLite and PostgreSQL agree whatever the locale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)


def to_stamp(value: Any) -> timedelta | None:
    """A host's timestamp as a stamp (the exact ``timedelta`` since the epoch): an aware
    datetime, a naive one (taken as UTC), epoch seconds, or ISO 8601 text."""
    if value is None or value.__class__ is timedelta:
        return value
    if isinstance(value, datetime):
        return value - (EPOCH if value.tzinfo is not None else NAIVE_EPOCH)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day) - NAIVE_EPOCH
    if isinstance(value, str):
        return to_stamp(datetime.fromisoformat(value.replace("Z", "+00:00")))
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return timedelta(seconds=float(value)) if not isinstance(value, int) else timedelta(seconds=value)
    raise TypeError(f"not a timestamp: {value!r}")


def to_moment(value: Any, what: str = "now") -> datetime:
    """A time a host hands the engine's API (``scan(now)``, ``explain(..., now)``, ...) as
    an aware UTC datetime: an aware datetime, ISO 8601 text (without an offset: UTC) or epoch
    seconds. A naive datetime is refused (its zone is anyone's guess), as is anything else."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{what} must be timezone-aware (got the naive {value.isoformat()})")
        return value.astimezone(UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what} {value!r} is not an ISO 8601 time (such as 2026-03-01T12:00:00Z)") from None
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            return EPOCH + timedelta(seconds=value if isinstance(value, int) else float(value))
        except (OverflowError, ValueError):
            raise ValueError(f"{what} {value!r} is not a time in epoch seconds") from None
    raise TypeError(f"{what} must be a datetime, ISO 8601 text or epoch seconds, not {type(value).__name__}")


def to_number(value: Any) -> Any:
    """Decimal amounts become floats so that they mix with the rules' numbers."""
    if value.__class__ is Decimal:
        return float(value)
    return value


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


def divide(a: Any, b: Any) -> Any:
    """``a / b``, null when ``b`` is zero (0, 0.0 or a zero duration)."""
    if not b:
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
