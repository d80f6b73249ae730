"""Planning: the order plan for each kind of move (open, add, reduce, close, reverse) and for a verdict."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext

from trading.plans.enums import IntentRole, IntentType, entry_action, exit_action
from trading.plans.intents import OrderIntent, OrderPlan
from trading.plans.protection import average_down_orders, bracketed_entries, exit_groups
from trading.plans.settings import PlanSettings
from trading.plans.values import contract_count
from trading.risk import Move, Side, Verdict
from trading.symbols import ContractInfo, round_to_tick, to_decimal


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


def _flat(groups: Iterable[tuple[OrderIntent, ...]]) -> list[OrderIntent]:
    return [intent for group in groups for intent in group]


def _check(multiplier: int, reference: Decimal | int | str) -> Decimal:
    contract_count(multiplier, name="multiplier")
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
    quantity = contract_count(quantity, name="The entry quantity")
    notes: list[str] = []
    exits = exit_groups(
        side=side,
        quantity=quantity,
        reference=reference,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
        notes=notes,
    )
    averages = average_down_orders(
        side=side,
        reference=reference,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
        notes=notes,
    )
    entries, brackets = bracketed_entries(side, quantity, exits)
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
    quantity = contract_count(quantity, name="The position's quantity")
    notes: list[str] = []
    intents = _flat(
        exit_groups(
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
        intents += average_down_orders(
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
    quantity = contract_count(quantity, name="The add quantity")
    held = contract_count(position_quantity, name="The position's quantity")
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
    entry = OrderIntent(IntentRole.ENTRY, entry_action(side), IntentType.MARKET, quantity, key="entry")
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
    quantity = contract_count(quantity, name="The exit quantity")
    held = contract_count(position_quantity, name="The position's quantity")
    if quantity >= held:
        return plan_close(position=held * side.sign)
    exit_order = OrderIntent(IntentRole.EXIT, exit_action(side), IntentType.MARKET, quantity, key="exit")
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
    exit_order = OrderIntent(IntentRole.EXIT, exit_action(side), IntentType.MARKET, abs(position), key="exit")
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
    exit_order = OrderIntent(IntentRole.EXIT, exit_action(side), IntentType.MARKET, abs(position), key="exit")
    return OrderPlan((exit_order, *opened.intents), opened.brackets, True, opened.notes)


def plan_for_verdict(
    verdict: Verdict,
    *,
    contract: ContractInfo,
    settings: PlanSettings,
    entry_price: Decimal | None = None,
    average_price: Decimal | None = None,
    multiplier: int = 1,
) -> OrderPlan:
    """Return the plan for an allowed verdict (an empty plan for a refused one).

    `entry_price` is the expected fill (the signal's or the last price), needed for entries;
    `average_price` is the held position's average, needed for adds and partial exits.
    """
    if not verdict.allowed or verdict.move is None:
        return OrderPlan()
    move, before = verdict.move, verdict.position_before
    side = Side.of(before)
    if move is Move.CLOSE:
        return plan_close(position=before)
    if move in (Move.ADD, Move.REDUCE):
        if average_price is None or side is None:
            raise ValueError(f"Planning a {move.value} needs the held position and its average price.")
        if move is Move.REDUCE:
            return plan_reduce(
                side=side,
                quantity=verdict.exit_quantity,
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
            quantity=verdict.entry_quantity,
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
            quantity=verdict.entry_quantity,
            entry_price=entry_price,
            contract=contract,
            settings=settings,
            multiplier=multiplier,
        )
    entry_side = Side.of(verdict.position_after)
    if entry_side is None:
        raise ValueError("An open decision must end in a position.")
    return plan_open(
        side=entry_side,
        quantity=verdict.entry_quantity,
        entry_price=entry_price,
        contract=contract,
        settings=settings,
        multiplier=multiplier,
    )
