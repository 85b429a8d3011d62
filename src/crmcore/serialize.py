"""JSON-ready values: what ``as_dict()`` methods, ``explain`` and the CLI print."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["jsonable"]

_PLAIN = frozenset({str, int, float, bool})


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 text and Decimals as numbers, recursively."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value
