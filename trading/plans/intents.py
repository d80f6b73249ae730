"""Intents: one order to place, and a plan (the orders for one verdict, with their brackets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from trading.plans.enums import IntentAction, IntentRole, IntentType
from trading.plans.values import contract_count


@dataclass(frozen=True)
class OrderIntent:
    """One order to place; prices are absolute and on the tick grid, trail_distance is in points."""

    role: IntentRole
    action: IntentAction
    order_type: IntentType
    quantity: int
    price: Decimal | None = None  # limit price
    stop_price: Decimal | None = None  # trigger of a stop, first trigger of a trailing stop
    trail_distance: Decimal | None = None  # positive points; Tradovate's pegDifference carries the sign
    key: str = ""  # unique within its plan: entry, exit, tp1, sl1, sl, avg1
    oco: str = ""  # intents sharing a non-empty oco form one one-cancels-other pair

    def __post_init__(self) -> None:
        contract_count(self.quantity, name="An order's quantity")
        needs = {
            IntentType.MARKET: (False, False, False),
            IntentType.LIMIT: (True, False, False),
            IntentType.STOP: (False, True, False),
            IntentType.TRAILING_STOP: (False, True, True),
        }[self.order_type]
        for needed, name in zip(needs, ("price", "stop_price", "trail_distance"), strict=True):
            if needed != (getattr(self, name) is not None):
                state = "needs" if needed else "takes no"
                raise ValueError(f"A {self.order_type.value} order {state} {name.replace('_', ' ')}.")


@dataclass(frozen=True)
class OrderPlan:
    """The orders for one verdict, in the order to send them."""

    intents: tuple[OrderIntent, ...] = ()
    # Groups of keys sent as one OSO order (Tradovate's placeoso): an entry first, then at most one
    # take-profit and one stop of exactly its quantity, because a bracket's exits take the entry's quantity.
    brackets: tuple[tuple[str, ...], ...] = ()
    cancel_working_orders: bool = False  # cancel the position's working exits and average-downs first
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [intent.key for intent in self.intents]
        if len(set(keys)) != len(keys) or "" in keys:
            raise ValueError(f"Every order of a plan needs a unique key, not {keys}.")
        bracketed = [key for group in self.brackets for key in group]
        if not set(bracketed) <= set(keys) or len(set(bracketed)) != len(bracketed):
            raise ValueError(f"Brackets {self.brackets} name orders not in the plan, or one twice.")
        for group in self.brackets:
            self._check_bracket([self.by_key(key) for key in group])

    @staticmethod
    def _check_bracket(group: Sequence[OrderIntent]) -> None:
        entry, legs = group[0], group[1:]
        roles = {leg.role for leg in legs}
        if (
            entry.role is not IntentRole.ENTRY
            or not legs
            or len(roles) != len(legs)
            or not roles <= {IntentRole.TAKE_PROFIT, IntentRole.STOP_LOSS}
            or any(leg.quantity != entry.quantity for leg in legs)
        ):
            raise ValueError(
                "A bracket is an entry with a take-profit, a stop or both, of the entry's quantity: "
                f"not {[intent.key for intent in group]}."
            )

    def by_key(self, key: str) -> OrderIntent:
        """Return the intent with this key."""
        for intent in self.intents:
            if intent.key == key:
                return intent
        raise KeyError(key)

    def with_role(self, role: IntentRole) -> tuple[OrderIntent, ...]:
        """Return the intents of one role, in plan order."""
        return tuple(intent for intent in self.intents if intent.role is role)

    @property
    def entries(self) -> tuple[OrderIntent, ...]:
        """Return the entry orders: one, or one per take-profit pair when several targets split it."""
        return self.with_role(IntentRole.ENTRY)

    @property
    def take_profits(self) -> tuple[OrderIntent, ...]:
        """Return the take-profit limit orders."""
        return self.with_role(IntentRole.TAKE_PROFIT)

    @property
    def stops(self) -> tuple[OrderIntent, ...]:
        """Return the stop-loss orders (one per take-profit pair, or one for the whole position)."""
        return self.with_role(IntentRole.STOP_LOSS)

    def bracket_of(self, key: str) -> tuple[str, ...] | None:
        """Return the bracket group holding this key, if any."""
        return next((group for group in self.brackets if key in group), None)

    @property
    def separate_intents(self) -> tuple[OrderIntent, ...]:
        """Return the intents sent on their own, in plan order."""
        bracketed = {key for group in self.brackets for key in group}
        return tuple(intent for intent in self.intents if intent.key not in bracketed)
