"""Checked values the risk modules share: aware datetimes, whole numbers, cents."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from trading.symbols import to_decimal

CENT = Decimal("0.01")


def whole(value: Any, *, name: str, minimum: int = 0) -> int:
    """Return `value` as an int, or raise ValueError naming `name` unless a whole number >= minimum."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}.")
    number = to_decimal(value, name=name)
    if number != number.to_integral_value():
        raise ValueError(f"{name} must be a whole number, not {value}.")
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {number}.")
    return int(number)


def aware(moment: datetime, *, name: str) -> datetime:
    """Return `moment`, or raise ValueError naming `name` when it has no time zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {moment!r}.")
    return moment
