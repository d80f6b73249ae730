"""The words of the risk engine: what a signal asks for, the side of a position, the kind of move."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a signal asks for."""

    BUY = "buy"
    SELL = "sell"
    CLOSE = "close"

    @classmethod
    def parse(cls, value: Action | str) -> Action:
        """Return the action for `buy`/`long`, `sell`/`short` or `close`/`exit`/`flat` (any case)."""
        if isinstance(value, cls):
            return value
        action = _ACTION_ALIASES.get(str(value).strip().lower())
        if action is None:
            raise ValueError(f"Unknown action {value!r}: use buy, sell or close.")
        return action


_ACTION_ALIASES = {
    "buy": Action.BUY,
    "long": Action.BUY,
    "sell": Action.SELL,
    "short": Action.SELL,
    "close": Action.CLOSE,
    "exit": Action.CLOSE,
    "flat": Action.CLOSE,
    "flatten": Action.CLOSE,
}


class MarketPosition(StrEnum):
    """The strategy's position after its order, as TradingView reports it."""

    LONG = "long"
    SHORT = "short"
    FLAT = "flat"

    @classmethod
    def parse(cls, value: MarketPosition | str | None) -> MarketPosition | None:
        """Return the market position for `long`/`short`/`flat`, None for an empty value."""
        if value is None or isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        if not text:
            return None
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"Unknown market position {value!r}: use long, short or flat.") from None


class Direction(StrEnum):
    """Which positions a direction filter lets a signal open."""

    BOTH = "both"
    LONG = "long"
    SHORT = "short"

    @classmethod
    def parse(cls, value: Direction | str) -> Direction:
        """Return the direction for `both`, `long`/`long_only` or `short`/`short_only`."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        text = {"long_only": "long", "short_only": "short", "": "both"}.get(text, text)
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"Unknown direction filter {value!r}: use both, long or short.") from None


class Side(StrEnum):
    """The side of a position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        """Return +1 for long, -1 for short."""
        return 1 if self is Side.LONG else -1

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SHORT if self is Side.LONG else Side.LONG

    @classmethod
    def of(cls, position: int) -> Side | None:
        """Return the side of a signed position, None when flat."""
        if position > 0:
            return cls.LONG
        if position < 0:
            return cls.SHORT
        return None


class Move(StrEnum):
    """The kind of change a verdict makes to a position."""

    OPEN = "open"
    ADD = "add"
    REDUCE = "reduce"
    CLOSE = "close"
    REVERSE = "reverse"
