"""The orders around an entry: take-profit/stop pairs, the average-down limit, bracketed entries."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from trading.plans.enums import IntentRole, IntentType, StopKind, entry_action, exit_action
from trading.plans.intents import OrderIntent
from trading.plans.settings import PlanSettings, TakeProfitTarget
from trading.plans.values import contract_count
from trading.risk import Side
from trading.symbols import (
    ContractInfo,
    OffsetUnit,
    offset_in_points,
    round_to_tick,
    stop_ticks_for_dollar_loss,
)


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
    remaining = contract_count(quantity, name="quantity", minimum=0)
    allocation = []
    for index, target in enumerate(targets):
        is_last = index == len(targets) - 1
        wanted = remaining if is_last or target.trim is None else target.trim * multiplier
        taken = min(wanted, remaining)
        allocation.append(taken)
        remaining -= taken
    return allocation


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


def exit_groups(
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
    closing_action = exit_action(side)
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    if settings.places_stop:
        distance = _stop_distance(settings, contract, reference, quantity, notes)
        stop_price = _beyond(reference, distance, -side.sign, tick)
        if settings.sl_type is StopKind.TRAILING:
            trail = max(tick, round_to_tick(distance, tick, "up"))

    def stop(key: str, contracts: int, oco: str = "") -> OrderIntent:
        order_type = IntentType.STOP if trail is None else IntentType.TRAILING_STOP
        return OrderIntent(
            IntentRole.STOP_LOSS, closing_action, order_type, contracts, None, stop_price, trail, key, oco
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
            IntentRole.TAKE_PROFIT,
            closing_action,
            IntentType.LIMIT,
            contracts,
            price,
            key=f"tp{number}",
            oco=oco,
        )
        if stop_price is None:
            groups.append((take_profit,))
        else:
            groups.append((take_profit, stop(f"sl{number}", contracts, oco)))
    if stop_price is not None and not trims:
        groups.append((stop("sl", quantity),))
    return groups


def average_down_orders(
    *,
    side: Side,
    reference: Decimal,
    contract: ContractInfo,
    settings: PlanSettings,
    multiplier: int,
    notes: list[str],
) -> list[OrderIntent]:
    """Return the average-down limit `avg_down_point` beyond `reference` against the position, if it is on."""
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
            IntentRole.AVERAGE_DOWN, entry_action(side), IntentType.LIMIT, contracts, price, key="avg1"
        )
    ]


def bracketed_entries(
    side: Side, quantity: int, exits: Sequence[tuple[OrderIntent, ...]]
) -> tuple[list[OrderIntent], tuple[tuple[str, ...], ...]]:
    """Return the entry orders with their exits, and the bracket groups that send each entry with its exits.

    One group of exits: one entry of the whole quantity. Several (one per take-profit target): one entry per
    group of that group's quantity, so every contract's own take-profit and stop are on the book the moment
    it fills, and no stop is ever larger than the position left after a target fills.
    """
    action = entry_action(side)
    if not exits:
        return [OrderIntent(IntentRole.ENTRY, action, IntentType.MARKET, quantity, key="entry")], ()
    intents: list[OrderIntent] = []
    brackets: list[tuple[str, ...]] = []
    for number, group in enumerate(exits, start=1):
        key = "entry" if len(exits) == 1 else f"entry{number}"
        entry = OrderIntent(IntentRole.ENTRY, action, IntentType.MARKET, group[0].quantity, key=key)
        intents += [entry, *group]
        brackets.append((key, *(intent.key for intent in group)))
    return intents, tuple(brackets)
