"""The words of an order plan: why an order exists, its side and type, and the kind of stop loss."""

from __future__ import annotations

from enum import StrEnum

from trading.risk import Side


class OrderRole(StrEnum):
    """Why an order exists."""

    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    AVERAGE_DOWN = "average_down"
    EXIT = "exit"


class OrderAction(StrEnum):
    """Order side, spelled as Tradovate spells it."""

    BUY = "Buy"
    SELL = "Sell"


class OrderType(StrEnum):
    """Order types the plans use, spelled as Tradovate spells them."""

    MARKET = "Market"
    LIMIT = "Limit"
    STOP = "Stop"
    TRAILING_STOP = "TrailingStop"


class StopType(StrEnum):
    """A stop loss that stays put or trails the price."""

    FIXED = "fixed"
    TRAILING = "trailing"

    @classmethod
    def parse(cls, value: StopType | str) -> StopType:
        """Return the stop type for `fixed` or `trailing` (any case)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"Unknown stop loss type {value!r}: use fixed or trailing.") from None


def entry_action(side: Side) -> OrderAction:
    """Return the order side that enters a position on `side`."""
    return OrderAction.BUY if side is Side.LONG else OrderAction.SELL


def exit_action(side: Side) -> OrderAction:
    """Return the order side that exits a position on `side`."""
    return OrderAction.SELL if side is Side.LONG else OrderAction.BUY
