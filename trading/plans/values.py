"""Checked values the plan modules share: whole numbers of contracts."""

from __future__ import annotations

from typing import Any

from trading.symbols import to_decimal


def contract_count(value: Any, *, name: str, minimum: int = 1) -> int:
    """Return `value` as contracts, or raise ValueError naming `name` unless it is whole and >= minimum."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number of contracts, not {value!r}.")
    number = to_decimal(value, name=name)
    if number != number.to_integral_value() or number < minimum:
        raise ValueError(f"{name} must be a whole number of contracts of at least {minimum}, not {value}.")
    return int(number)
