"""Order plans: the orders that carry out a risk decision, every price on the contract's tick grid.

Pure functions on dataclasses: no ORM, no I/O. Take-profits and stops are OCO pairs of equal quantity
(take-profit i with stop i), so a partial take-profit never leaves a stop larger than the position.
A new position's entry rides with its exits as bracket orders (Tradovate's placeoso), protected the moment
it fills; a bracket's exits take its entry's quantity, so several targets split the entry, one per pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum
from typing import Any

from trading.risk import Decision, Move, Side
from trading.symbols import (
    ContractInfo,
    OffsetUnit,
    offset_in_points,
    round_to_tick,
    stop_ticks_for_dollar_loss,
    to_decimal,
)

__all__ = [
    "PLAN_FIELDS",
    "OrderAction",
    "OrderIntent",
    "OrderPlan",
    "OrderRole",
    "OrderType",
    "PlanSettings",
    "StopType",
    "TakeProfitTarget",
    "allocate_trims",
    "blended_average",
    "merge_plan_settings",
    "plan_add",
    "plan_close",
    "plan_for_decision",
    "plan_open",
    "plan_protection",
    "plan_reduce",
    "plan_reverse",
    "replan_after_average_down",
]


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


def _entry_action(side: Side) -> OrderAction:
    return OrderAction.BUY if side is Side.LONG else OrderAction.SELL


def _exit_action(side: Side) -> OrderAction:
    return OrderAction.SELL if side is Side.LONG else OrderAction.BUY


def _contracts(value: Any, *, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number of contracts, not {value!r}.")
    number = to_decimal(value, name=name)
    if number != number.to_integral_value() or number < minimum:
        raise ValueError(f"{name} must be a whole number of contracts of at least {minimum}, not {value}.")
    return int(number)


@dataclass(frozen=True)
class TakeProfitTarget:
    """One take-profit: a distance from the entry (in the plan's units) and the contracts it closes."""

    value: Decimal
    trim: int | None = None  # None: everything still open

    def __post_init__(self) -> None:
        value = to_decimal(self.value, name="take-profit distance")
        if value <= 0:
            raise ValueError(f"A take-profit distance must be more than 0, not {value}.")
        object.__setattr__(self, "value", value)
        if self.trim is not None:
            object.__setattr__(self, "trim", _contracts(self.trim, name="A take-profit's trim"))

    @classmethod
    def parse(cls, item: TakeProfitTarget | Mapping[str, Any]) -> TakeProfitTarget:
        """Return a target from `{"value": 8, "trim": 1}` (the recorder API's form)."""
        if isinstance(item, cls):
            return item
        if not isinstance(item, Mapping) or "value" not in item:
            raise ValueError(f'A take-profit target must look like {{"value": 8, "trim": 1}}, not {item!r}.')
        return cls(value=item["value"], trim=item.get("trim"))


@dataclass(frozen=True)
class PlanSettings:
    """Take-profit, stop loss and average-down settings of a recorder, under the recorder API's names."""

    tp_units: OffsetUnit = OffsetUnit.TICKS
    tp_targets: tuple[TakeProfitTarget, ...] = ()
    sl_enabled: bool = False
    sl_amount: Decimal = Decimal(0)  # 0 places no stop, leaving exits to the strategy's alerts
    sl_units: OffsetUnit = OffsetUnit.TICKS
    sl_type: StopType = StopType.FIXED
    avg_down_enabled: bool = False
    avg_down_amount: int = 0  # contracts
    avg_down_point: Decimal = Decimal(0)  # distance from the entry
    avg_down_units: OffsetUnit = OffsetUnit.TICKS

    def __post_init__(self) -> None:
        for name in ("tp_units", "sl_units", "avg_down_units"):
            object.__setattr__(self, name, OffsetUnit.parse(getattr(self, name)))
        for name in ("tp_units", "avg_down_units"):
            if getattr(self, name) is OffsetUnit.DOLLARS:
                label = "Take-profit" if name == "tp_units" else "Average-down"
                raise ValueError(f"{label} distances are in ticks, points or percent, not dollars.")
        targets = self.tp_targets or ()
        if isinstance(targets, Mapping) or not isinstance(targets, Iterable):
            raise ValueError(f"Take-profit targets must be a list, not {targets!r}.")
        object.__setattr__(self, "tp_targets", tuple(TakeProfitTarget.parse(item) for item in targets))
        object.__setattr__(self, "sl_type", StopType.parse(self.sl_type))
        for name in ("sl_enabled", "avg_down_enabled"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        for name, label in (("sl_amount", "stop loss amount"), ("avg_down_point", "average-down distance")):
            amount = to_decimal(getattr(self, name), name=label)
            if amount < 0:
                raise ValueError(f"The {label} cannot be negative ({amount}).")
            object.__setattr__(self, name, amount)
        amount = _contracts(self.avg_down_amount, name="The average-down quantity", minimum=0)
        object.__setattr__(self, "avg_down_amount", amount)

    @property
    def places_stop(self) -> bool:
        """Return whether a stop loss is placed (on, with an amount above 0)."""
        return self.sl_enabled and self.sl_amount > 0

    def as_fields(self) -> dict[str, Any]:
        """Return the settings under the recorder API's names, targets as `[{"value", "trim"}]`."""
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        values["tp_targets"] = [{"value": target.value, "trim": target.trim} for target in self.tp_targets]
        return values

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> PlanSettings:
        """Build settings from the recorder API's names (a model's fields); other keys are ignored."""
        return cls(**{name: values[name] for name in PLAN_FIELDS if values.get(name) is not None})


PLAN_FIELDS: frozenset[str] = frozenset(spec.name for spec in fields(PlanSettings))


def merge_plan_settings(recorder: PlanSettings, overrides: Mapping[str, Any]) -> PlanSettings:
    """Return the recorder's plan settings with every override that is not None (or empty text) applied."""
    values = recorder.as_fields()
    for key, value in overrides.items():
        if key not in PLAN_FIELDS:
            raise ValueError(
                f"{key!r} is not an order plan setting; known: {', '.join(sorted(PLAN_FIELDS))}."
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        values[key] = value
    return PlanSettings.from_fields(values)


@dataclass(frozen=True)
class OrderIntent:
    """One order to place; prices are absolute and on the tick grid, trail_distance is in points."""

    role: OrderRole
    action: OrderAction
    order_type: OrderType
    quantity: int
    price: Decimal | None = None  # limit price
    stop_price: Decimal | None = None  # trigger of a stop, first trigger of a trailing stop
    trail_distance: Decimal | None = None  # positive points; Tradovate's pegDifference carries the sign
    key: str = ""  # unique within its plan: entry, exit, tp1, sl1, sl, avg1
    oco: str = ""  # intents sharing a non-empty oco form one one-cancels-other pair

    def __post_init__(self) -> None:
        _contracts(self.quantity, name="An order's quantity")
        needs = {
            OrderType.MARKET: (False, False, False),
            OrderType.LIMIT: (True, False, False),
            OrderType.STOP: (False, True, False),
            OrderType.TRAILING_STOP: (False, True, True),
        }[self.order_type]
        for needed, name in zip(needs, ("price", "stop_price", "trail_distance"), strict=True):
            if needed != (getattr(self, name) is not None):
                state = "needs" if needed else "takes no"
                raise ValueError(f"A {self.order_type.value} order {state} {name.replace('_', ' ')}.")


@dataclass(frozen=True)
class OrderPlan:
    """The orders for one decision, in the order to send them."""

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
            entry.role is not OrderRole.ENTRY
            or not legs
            or len(roles) != len(legs)
            or not roles <= {OrderRole.TAKE_PROFIT, OrderRole.STOP_LOSS}
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

    def with_role(self, role: OrderRole) -> tuple[OrderIntent, ...]:
        """Return the intents of one role, in plan order."""
        return tuple(intent for intent in self.intents if intent.role is role)

    @property
    def entries(self) -> tuple[OrderIntent, ...]:
        """Return the entry orders: one, or one per take-profit pair when several targets split it."""
        return self.with_role(OrderRole.ENTRY)

    @property
    def take_profits(self) -> tuple[OrderIntent, ...]:
        """Return the take-profit limit orders."""
        return self.with_role(OrderRole.TAKE_PROFIT)

    @property
    def stops(self) -> tuple[OrderIntent, ...]:
        """Return the stop-loss orders (one per take-profit pair, or one for the whole position)."""
        return self.with_role(OrderRole.STOP_LOSS)

    def bracket_of(self, key: str) -> tuple[str, ...] | None:
        """Return the bracket group holding this key, if any."""
        return next((group for group in self.brackets if key in group), None)

    @property
    def separate_intents(self) -> tuple[OrderIntent, ...]:
        """Return the intents sent on their own, in plan order."""
        bracketed = {key for group in self.brackets for key in group}
        return tuple(intent for intent in self.intents if intent.key not in bracketed)


def _beyond(reference: Decimal, distance: Decimal, direction: int, tick: Decimal) -> Decimal:
    """Return the grid price `distance` from `reference` in `direction`, rounded away, strictly past it."""
    if direction > 0:
        price = round_to_tick(reference + distance, tick, "up")
        if price <= reference:
            price = round_to_tick(reference, tick, "down") + tick
    else:
        price = round_to_tick(reference - distance, tick, "down")
        if price >= reference:
            price = round_to_tick(reference, tick, "up") - tick
    return price


def allocate_trims(targets: Sequence[TakeProfitTarget], quantity: int, *, multiplier: int = 1) -> list[int]:
    """Return contracts per target: each trim x multiplier capped by what remains, the last takes the rest."""
    remaining = _contracts(quantity, name="quantity", minimum=0)
    allocation = []
    for index, target in enumerate(targets):
        is_last = index == len(targets) - 1
        wanted = remaining if is_last or target.trim is None else target.trim * multiplier
        taken = min(wanted, remaining)
        allocation.append(taken)
        remaining -= taken
    return allocation


def blended_average(quantity: int, price: Decimal, added: int, added_price: Decimal) -> Decimal:
    """Return the average price of `quantity` at `price` plus `added` at `added_price` (not rounded)."""
    total = quantity + added
    if quantity < 0 or added < 0 or total <= 0:
        raise ValueError(f"Cannot average {quantity} and {added} contracts.")
    with localcontext() as context:
        context.prec = 40
        average = (
            to_decimal(price, name="price") * quantity + to_decimal(added_price, name="price") * added
        ) / total
        return average.quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)


def _stop_distance(
    settings: PlanSettings, contract: ContractInfo, reference: Decimal, quantity: int, notes: list[str]
) -> Decimal:
    if settings.sl_units is not OffsetUnit.DOLLARS:
        return offset_in_points(settings.sl_amount, settings.sl_units, contract, reference)
    ticks = stop_ticks_for_dollar_loss(settings.sl_amount, contract, quantity)
    if ticks < 1:
        # No stop can honour the amount; the tightest stop protects better than none.
        notes.append(
            f"A ${settings.sl_amount} stop is less than one tick (${contract.tick_value * quantity}) on "
            f"{quantity} {contract.root} contracts: the stop is one tick away."
        )
        ticks = 1
    return ticks * contract.tick_size


def _protection(
    *,
    side: Side,
    quantity: int,
    reference: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int,
    notes: list[str],
) -> list[tuple[OrderIntent, ...]]:
    """Return take-profit and stop orders covering `quantity` contracts held at `reference`.

    One group per take-profit (the target and its own stop), or the lone stop when there is no target.
    """
    tick = contract.tick_size
    exit_action = _exit_action(side)
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    if settings.places_stop:
        distance = _stop_distance(settings, contract, reference, quantity, notes)
        stop_price = _beyond(reference, distance, -side.sign, tick)
        if settings.sl_type is StopType.TRAILING:
            trail = max(tick, round_to_tick(distance, tick, "up"))

    def stop(key: str, contracts: int, oco: str = "") -> OrderIntent:
        order_type = OrderType.STOP if trail is None else OrderType.TRAILING_STOP
        return OrderIntent(
            OrderRole.STOP_LOSS, exit_action, order_type, contracts, None, stop_price, trail, key, oco
        )

    groups: list[tuple[OrderIntent, ...]] = []
    trims = allocate_trims(settings.tp_targets, quantity, multiplier=multiplier)
    number = 0
    for target, contracts in zip(settings.tp_targets, trims, strict=True):
        if contracts == 0:
            continue
        number += 1
        distance = offset_in_points(target.value, settings.tp_units, contract, reference)
        price = _beyond(reference, distance, side.sign, tick)
        oco = f"exit{number}" if stop_price is not None else ""
        take_profit = OrderIntent(
            OrderRole.TAKE_PROFIT, exit_action, OrderType.LIMIT, contracts, price, key=f"tp{number}", oco=oco
        )
        if stop_price is None:
            groups.append((take_profit,))
        else:
            groups.append((take_profit, stop(f"sl{number}", contracts, oco)))
    if stop_price is not None and not trims:
        groups.append((stop("sl", quantity),))
    return groups


def _flat(groups: Iterable[tuple[OrderIntent, ...]]) -> list[OrderIntent]:
    return [intent for group in groups for intent in group]


def _average_down(
    *,
    side: Side,
    reference: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int,
    notes: list[str],
) -> list[OrderIntent]:
    if not settings.avg_down_enabled or settings.avg_down_amount == 0:
        return []
    distance = offset_in_points(settings.avg_down_point, settings.avg_down_units, contract, reference)
    if distance <= 0:
        notes.append("Average-down is on but its distance is 0: no average-down order was planned.")
        return []
    price = _beyond(reference, distance, -side.sign, contract.tick_size)
    contracts = settings.avg_down_amount * multiplier
    return [
        OrderIntent(
            OrderRole.AVERAGE_DOWN, _entry_action(side), OrderType.LIMIT, contracts, price, key="avg1"
        )
    ]


def _bracketed_entries(
    side: Side, quantity: int, exits: Sequence[tuple[OrderIntent, ...]]
) -> tuple[list[OrderIntent], tuple[tuple[str, ...], ...]]:
    """Return the entry orders with their exits, and the bracket groups that send each entry with its exits.

    One group of exits: one entry of the whole quantity. Several (one per take-profit target): one entry per
    group of that group's quantity, so every contract's own take-profit and stop are on the book the moment
    it fills, and no stop is ever larger than the position left after a target fills.
    """
    action = _entry_action(side)
    if not exits:
        return [OrderIntent(OrderRole.ENTRY, action, OrderType.MARKET, quantity, key="entry")], ()
    intents: list[OrderIntent] = []
    brackets: list[tuple[str, ...]] = []
    for number, group in enumerate(exits, start=1):
        key = "entry" if len(exits) == 1 else f"entry{number}"
        entry = OrderIntent(OrderRole.ENTRY, action, OrderType.MARKET, group[0].quantity, key=key)
        intents += [entry, *group]
        brackets.append((key, *(intent.key for intent in group)))
    return intents, tuple(brackets)


def _check(multiplier: int, reference: Decimal | int | str) -> Decimal:
    _contracts(multiplier, name="multiplier")
    return to_decimal(reference, name="price")


def plan_open(
    *,
    side: Side,
    quantity: int,
    entry_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
) -> OrderPlan:
    """Plan a new position: market entry in brackets with take-profit/stop pairs from `entry_price`, then
    the average-down limit."""
    reference = _check(multiplier, entry_price)
    quantity = _contracts(quantity, name="The entry quantity")
    notes: list[str] = []
    exits = _protection(
        side=side,
        quantity=quantity,
        reference=reference,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
        notes=notes,
    )
    averages = _average_down(
        side=side,
        reference=reference,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
        notes=notes,
    )
    entries, brackets = _bracketed_entries(side, quantity, exits)
    return OrderPlan((*entries, *averages), brackets, False, tuple(notes))


def plan_protection(
    *,
    side: Side,
    quantity: int,
    average_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
    include_average_down: bool = False,
) -> OrderPlan:
    """Plan exits for a held position from its average price rounded to the tick; replaces working ones."""
    reference = round_to_tick(_check(multiplier, average_price), contract.tick_size, "nearest")
    quantity = _contracts(quantity, name="The position's quantity")
    notes: list[str] = []
    intents = _flat(
        _protection(
            side=side,
            quantity=quantity,
            reference=reference,
            contract=contract,
            settings=settings,
            multiplier=multiplier,
            notes=notes,
        )
    )
    if include_average_down:
        intents += _average_down(
            side=side,
            reference=reference,
            contract=contract,
            settings=settings,
            multiplier=multiplier,
            notes=notes,
        )
    return OrderPlan(tuple(intents), (), True, tuple(notes))


def replan_after_average_down(
    *,
    side: Side,
    quantity: int,
    average_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
) -> OrderPlan:
    """Recompute take-profits and stop for the new size from the new average price rounded to the tick."""
    return plan_protection(
        side=side,
        quantity=quantity,
        average_price=average_price,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )


def plan_add(
    *,
    side: Side,
    quantity: int,
    position_quantity: int,
    average_price: Decimal,
    entry_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
) -> OrderPlan:
    """Plan an add: market entry, then exits for the whole new size from the expected average price."""
    quantity = _contracts(quantity, name="The add quantity")
    held = _contracts(position_quantity, name="The position's quantity")
    expected = blended_average(
        held, _check(multiplier, average_price), quantity, _check(multiplier, entry_price)
    )
    protection = plan_protection(
        side=side,
        quantity=held + quantity,
        average_price=expected,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )
    entry = OrderIntent(OrderRole.ENTRY, _entry_action(side), OrderType.MARKET, quantity, key="entry")
    return OrderPlan((entry, *protection.intents), (), True, protection.notes)


def plan_reduce(
    *,
    side: Side,
    quantity: int,
    position_quantity: int,
    average_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
) -> OrderPlan:
    """Plan a partial exit: market exit of `quantity`, then exits for what remains from the average price."""
    quantity = _contracts(quantity, name="The exit quantity")
    held = _contracts(position_quantity, name="The position's quantity")
    if quantity >= held:
        return plan_close(position=held * side.sign)
    exit_order = OrderIntent(OrderRole.EXIT, _exit_action(side), OrderType.MARKET, quantity, key="exit")
    protection = plan_protection(
        side=side,
        quantity=held - quantity,
        average_price=average_price,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )
    return OrderPlan((exit_order, *protection.intents), (), True, protection.notes)


def plan_close(*, position: int) -> OrderPlan:
    """Plan a flatten: cancel the working exits and send one market exit (none when already flat)."""
    position = int(position)
    side = Side.of(position)
    if side is None:
        return OrderPlan((), (), True, ("The position is already flat: only working orders are cancelled.",))
    exit_order = OrderIntent(OrderRole.EXIT, _exit_action(side), OrderType.MARKET, abs(position), key="exit")
    return OrderPlan((exit_order,), (), True)


def plan_reverse(
    *,
    position: int,
    quantity: int,
    entry_price: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int = 1,
) -> OrderPlan:
    """Plan a reversal: market exit of the whole position, then a new entry on the other side."""
    side = Side.of(int(position))
    if side is None:
        raise ValueError("A reversal needs an open position.")
    opened = plan_open(
        side=side.opposite,
        quantity=quantity,
        entry_price=entry_price,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )
    exit_order = OrderIntent(OrderRole.EXIT, _exit_action(side), OrderType.MARKET, abs(position), key="exit")
    return OrderPlan((exit_order, *opened.intents), opened.brackets, True, opened.notes)


def plan_for_decision(
    decision: Decision,
    *,
    contract: ContractInfo,
    settings: PlanSettings,
    entry_price: Decimal | None = None,
    average_price: Decimal | None = None,
    multiplier: int = 1,
) -> OrderPlan:
    """Return the plan for an allowed decision (an empty plan for a refused one).

    `entry_price` is the expected fill (the signal's or the last price), needed for entries;
    `average_price` is the held position's average, needed for adds and partial exits.
    """
    if not decision.allowed or decision.move is None:
        return OrderPlan()
    move, before = decision.move, decision.position_before
    side = Side.of(before)
    if move is Move.CLOSE:
        return plan_close(position=before)
    if move in (Move.ADD, Move.REDUCE):
        if average_price is None or side is None:
            raise ValueError(f"Planning a {move.value} needs the held position and its average price.")
        if move is Move.REDUCE:
            return plan_reduce(
                side=side,
                quantity=decision.exit_quantity,
                position_quantity=abs(before),
                average_price=average_price,
                contract=contract,
                settings=settings,
                multiplier=multiplier,
            )
        if entry_price is None:
            raise ValueError("Planning an add needs the expected entry price.")
        return plan_add(
            side=side,
            quantity=decision.entry_quantity,
            position_quantity=abs(before),
            average_price=average_price,
            entry_price=entry_price,
            contract=contract,
            settings=settings,
            multiplier=multiplier,
        )
    if entry_price is None:
        raise ValueError(f"Planning an {move.value} needs the expected entry price.")
    if move is Move.REVERSE:
        return plan_reverse(
            position=before,
            quantity=decision.entry_quantity,
            entry_price=entry_price,
            contract=contract,
            settings=settings,
            multiplier=multiplier,
        )
    entry_side = Side.of(decision.position_after)
    if entry_side is None:
        raise ValueError("An open decision must end in a position.")
    return plan_open(
        side=entry_side,
        quantity=decision.entry_quantity,
        entry_price=entry_price,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )
