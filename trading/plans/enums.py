"""The words of an order plan: why an order exists, its side and type, and the kind of stop loss."""

from __future__ import annotations

from enum import StrEnum

from trading.risk import Side


class IntentRole(StrEnum):
    """Why an intended order exists; its value is what Order.Role stores."""

    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    AVERAGE_DOWN = "average_down"
    EXIT = "exit"


class IntentAction(StrEnum):
    """An intended order's side, spelled as Tradovate spells it; its value is what Order.Action stores."""

    BUY = "Buy"
    SELL = "Sell"


class IntentType(StrEnum):
    """Order types the plans use, spelled as Tradovate spells them; the values Order.Type stores."""

    MARKET = "Market"
    LIMIT = "Limit"
    STOP = "Stop"
    TRAILING_STOP = "TrailingStop"


class StopKind(StrEnum):
    """A stop loss that stays put or trails the price; the values models.StopType stores."""

    FIXED = "fixed"
    TRAILING = "trailing"

    @classmethod
    def parse(cls, value: StopKind | str) -> StopKind:
        """Return the stop kind for `fixed` or `trailing` (any case)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"Unknown stop loss type {value!r}: use fixed or trailing.") from None


def entry_action(side: Side) -> IntentAction:
    """Return the order side that enters a position on `side`."""
    return IntentAction.BUY if side is Side.LONG else IntentAction.SELL


def exit_action(side: Side) -> IntentAction:
    """Return the order side that exits a position on `side`."""
    return IntentAction.SELL if side is Side.LONG else IntentAction.BUY
