"""Steps 3 and 4: flatten a position past its cutoff, and put back the protection an open position lacks."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from trading import plans
from trading.brokers.base import (
    BrokerOrder,
    OrderOutcomeUnknown,
    OrderRejected,
)
from trading.brokers.base import OrderStatus as BrokerOrderStatus
from trading.models import (
    BrokerAccount,
    Decision,
    Order,
    ReconcileAction,
    Trader,
    TraderSubAccount,
)
from trading.risk import Side, auto_flat_due
from trading.selectors import contract_for_symbol, recorder_plan_settings, recorder_risk_settings
from trading.services.orders import (
    ORDER_STATUS_FROM_BROKER,
    PROTECTION_ROLES,
    new_client_id,
)
from trading.services.reconciliation.broker import BrokerSnapshot, order_outcome, order_send, root_of
from trading.services.reconciliation.record import (
    FLATTEN_BACKOFF,
    IN_FLIGHT_STATUSES,
    LOST_STATUSES,
    REPLACE_BACKOFF,
    STOP_TYPES,
    Kind,
    ReconcileLog,
    order_describe,
)


@dataclass
class Repair:
    """Orders to cancel (ours, open at the broker) and new ones to place for one position."""

    why: str
    cancel: list[Order]
    place: list[Order]


def position_repair(
    log: ReconcileLog,
    broker: BrokerSnapshot,
    account: BrokerAccount,
    account_id: str,
    root: str,
    quantity: int,
    average: Decimal | None,
    now: datetime,
    blocked: str | None,
) -> None:
    where = f"{root} {quantity:+d} on {account_id}"
    link = _follower(account, account_id, root)
    if link is None:
        log.note(f"{where}: no single enabled trader follows it here, so it is left alone.")
        return
    busy = _busy(broker, account, account_id, root, link, quantity)
    if busy:
        log.note(f"{where}: {busy}")
        return
    trader, recorder = link.trader, link.trader.recorder
    anchor = _opening_decision(account, account_id, root, trader)
    if anchor is None:
        log.note(f"{where}: no order of JustTrades opened it, so it is left alone.")
        return
    risk_settings = recorder_risk_settings(recorder, trader)
    if auto_flat_due(now, risk_settings, quantity):
        if blocked:
            log.note(f"{where}: auto-flat is due, but {blocked}")
            return
        _flatten(log, broker, account, link, root, quantity, now, risk_settings.window_label())
        return
    if average is None:
        log.note(f"{where}: the broker gives no average price, so its protection cannot be checked.")
        return
    repair = _protection_repair(log, broker, account, link, root, quantity, average, anchor, now)
    if repair is None:
        return
    if blocked:
        log.note(f"{where}: {repair.why} Nothing is sent: {blocked}")
        return
    _carry_out(log, broker, account_id, root, repair)


def _opening_decision(account: BrokerAccount, account_id: str, root: str, trader: Trader) -> int | None:
    """The decision whose entry opened (or last grew) the position, unless a close of ours came after it."""
    entry = (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            trader=trader,
            decision__isnull=False,
            role__in=(Order.Role.ENTRY, Order.Role.AVERAGE_DOWN),
            # Working too: a dry run has not yet taken the fill the broker reports.
            status__in=(Order.Status.WORKING, Order.Status.FILLED),
        )
        .order_by("-pk")
        .first()
    )
    if entry is None:
        return None
    closed_after = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        pk__gt=entry.pk,
        via_liquidation=True,
        status=Order.Status.FILLED,
    ).exists()
    return None if closed_after else entry.decision_id


def _follower(account: BrokerAccount, account_id: str, root: str) -> TraderSubAccount | None:
    """The one enabled trader link that trades this position; with several, the one that traded it last."""
    links = [
        link
        for link in TraderSubAccount.objects.filter(
            trader__account=account,
            trader__enabled=True,
            subaccount__broker_id=account_id,
            subaccount__active=True,
        ).select_related("trader__recorder", "subaccount")
        if root_of(link.trader.recorder.symbol) == root
    ]
    if len(links) <= 1:
        return links[0] if links else None
    last = (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            trader_id__in=[link.trader_id for link in links],
        )
        .order_by("-pk")
        .values_list("trader_id", flat=True)
        .first()
    )
    return next((link for link in links if link.trader_id == last), None)


def _busy(
    broker: BrokerSnapshot,
    account: BrokerAccount,
    account_id: str,
    root: str,
    link: TraderSubAccount,
    quantity: int,
) -> str | None:
    """Why the pipeline may be acting on this position right now (then it is left alone), else None."""
    if Order.objects.filter(
        broker_account=account, account_id=account_id, symbol=root, status__in=IN_FLIGHT_STATUSES
    ).exists():
        return "orders of JustTrades are on their way or unsettled; it is looked at again next time."
    if Decision.objects.filter(
        trader=link.trader, status__in=(Decision.Status.PENDING, Decision.Status.EXECUTING)
    ).exists():
        return "its trader is executing a signal; it is looked at again next time."
    entry_side = "Buy" if quantity > 0 else "Sell"
    for order in broker.list_orders(account_id):
        if root_of(order.symbol) != root or not order.is_open:
            continue
        if order.status == BrokerOrderStatus.PENDING or (
            order.action == entry_side and order.order_type == "Market"
        ):
            return "an entry is still working at the broker; it is looked at again next time."
    return None


def _flatten(
    log: ReconcileLog,
    broker: BrokerSnapshot,
    account: BrokerAccount,
    link: TraderSubAccount,
    root: str,
    quantity: int,
    now: datetime,
    window: str,
) -> None:
    account_id = link.subaccount.broker_id
    recent = ReconcileAction.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        kind=Kind.FLATTEN,
        created_at__gte=now - FLATTEN_BACKOFF,
    ).exists()
    if recent:
        log.note(
            f"{root} on {account_id}: a flatten was tried less than {FLATTEN_BACKOFF} ago; waiting for it."
        )
        return
    recorder = link.trader.recorder
    reason = (
        f"Auto-flat: {quantity:+d} {root} was open after the cutoff of {recorder.name} "
        f"(trading window {window})."
    )
    if log.dry_run:
        log.step(Kind.FLATTEN, f"{reason} It would be liquidated.", account_id=account_id, symbol=root)
        return
    order = Order.objects.create(
        trader=link.trader,
        broker_account=account,
        account_id=account_id,
        account_name=link.subaccount.name,
        symbol=root,
        broker_symbol=recorder.symbol,
        client_id=new_client_id(),
        plan_key="flatten",
        via_liquidation=True,
        role=Order.Role.EXIT,
        action="Sell" if quantity > 0 else "Buy",
        order_type=Order.Type.MARKET,
        quantity=abs(quantity),
    )
    sent = order_send(order, broker)
    log.step(Kind.FLATTEN, f"{reason} {order_outcome(sent)}", account_id=account_id, symbol=root, order=sent)


def _protection_repair(
    log: ReconcileLog,
    broker: BrokerSnapshot,
    account: BrokerAccount,
    link: TraderSubAccount,
    root: str,
    quantity: int,
    average: Decimal,
    anchor: int,
    now: datetime,
) -> Repair | None:
    """Compare the position's working exits at the broker with what its plan wants; None when they match."""
    account_id = link.subaccount.broker_id
    trader, recorder = link.trader, link.trader.recorder
    side = Side.of(quantity)
    if side is None:
        return None
    plan = plans.plan_protection(
        side=side,
        quantity=abs(quantity),
        average_price=average,
        contract=contract_for_symbol(recorder.symbol),
        settings=recorder_plan_settings(recorder, trader),
        multiplier=link.multiplier,
    )
    need_tp, need_sl = bool(plan.take_profits), bool(plan.stops)
    if not need_tp and not need_sl:
        return None
    exit_action = "Sell" if quantity > 0 else "Buy"
    listed = broker.list_orders(account_id)
    exits = [
        order
        for order in listed
        if order.is_open and order.action == exit_action and root_of(order.symbol) == root
    ]
    take_profits = [order for order in exits if order.order_type == "Limit"]
    stops = [order for order in exits if order.order_type in STOP_TYPES]
    tp_cover = sum(order.quantity or 0 for order in take_profits)
    sl_cover = sum(order.quantity or 0 for order in stops)
    size = abs(quantity)
    if (not need_tp or tp_cover == size) and (not need_sl or sl_cover == size):
        return None
    where = f"{root} {quantity:+d} on {account_id}"
    ours = {
        order.broker_order_id: order
        for order in Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            broker_order_id__in=[item.broker_order_id for item in take_profits + stops],
        )
    }
    if any(item.broker_order_id not in ours for item in take_profits + stops):
        log.note(
            f"{where}: protective orders placed outside JustTrades work on it, so none are added. "
            "Check them at the broker."
        )
        return None
    listed_ids = {order.broker_order_id for order in listed}
    if (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            status=Order.Status.WORKING,
            role__in=PROTECTION_ROLES,
        )
        .exclude(broker_order_id__in=listed_ids)
        .exists()
    ):
        log.note(
            f"{where}: the broker no longer lists one of its working exits; nothing is placed until it does."
        )
        return None
    if ReconcileAction.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        kind=Kind.PLACE_PROTECTION,
        created_at__gte=now - REPLACE_BACKOFF,
        order__status=Order.Status.REJECTED,
    ).exists():
        log.note(
            f"{where}: the broker refused protection placed again less than {REPLACE_BACKOFF} ago; waiting."
        )
        return None
    wants = []
    if need_tp and tp_cover != size:
        wants.append(f"take-profits cover {tp_cover}")
    if need_sl and sl_cover != size:
        wants.append(f"stops cover {sl_cover}")
    why = f"The position is {quantity:+d} {root} but its working " + " and ".join(wants) + f" of {size}."
    open_ours = [ours[item.broker_order_id] for item in take_profits + stops]
    suffix = secrets.token_hex(3)
    at_broker = {order.broker_order_id: order for order in listed}
    broken = [
        (survivor, lost)
        for survivor, lost in _lost_partners(open_ours, at_broker)
        if (need_tp if lost.role == Order.Role.TAKE_PROFIT else need_sl)
    ]
    restored_tp = sum(survivor.quantity for survivor, lost in broken if lost.role == Order.Role.TAKE_PROFIT)
    restored_sl = sum(survivor.quantity for survivor, lost in broken if lost.role == Order.Role.STOP_LOSS)
    if (
        broken
        and (not need_tp or tp_cover + restored_tp == size)
        and (not need_sl or sl_cover + restored_sl == size)
    ):
        # The lost halves come back at their own prices. The survivors are cancelled and sent again with
        # them, so that each pair is one OCO at the broker rather than two orders only our sync pairs.
        return Repair(why, [survivor for survivor, _ in broken], _pair_again(broken, suffix, at_broker))
    # The pairs cannot be mended one by one: replace the whole protection, cancelling the old orders first.
    fresh = [
        Order(
            decision_id=anchor,
            trader=trader,
            broker_account=account,
            account_id=account_id,
            account_name=link.subaccount.name,
            symbol=root,
            broker_symbol=recorder.symbol,
            client_id=new_client_id(),
            plan_key=f"{intent.key}.{suffix}",
            sequence=number,
            oco_group=f"{intent.oco}.{suffix}" if intent.oco else "",
            role=intent.role.value,
            action=intent.action.value,
            order_type=intent.order_type.value,
            quantity=intent.quantity,
            price=intent.price,
            stop_price=intent.stop_price,
            trail_distance=intent.trail_distance,
        )
        for number, intent in enumerate(plan.intents, start=1)
    ]
    return Repair(why, open_ours, fresh)


def _lost_partners(
    open_orders: Sequence[Order], at_broker: dict[str, BrokerOrder]
) -> list[tuple[Order, Order]]:
    """(survivor, lost partner) for our one-cancels-other pairs that lost one half and still work the other.

    Lost: refused, cancelled or never placed. The broker's word on the lost half counts before ours (a dry
    run has not taken the broker's statuses yet); a half that filled is no loss (its partner is cancelled).
    """
    pairs = []
    for order in open_orders:
        if not order.oco_group or order.decision_id is None:
            continue
        other_role = Order.Role.STOP_LOSS if order.role == Order.Role.TAKE_PROFIT else Order.Role.TAKE_PROFIT
        partner = (
            Order.objects.filter(
                decision_id=order.decision_id,
                account_id=order.account_id,
                oco_group=order.oco_group,
                role=other_role,
            )
            .exclude(pk=order.pk)
            .order_by("-pk")
            .first()
        )
        if partner is None:
            continue
        status = partner.status
        seen = at_broker.get(partner.broker_order_id or "")
        if status == Order.Status.WORKING and seen is not None:
            status = ORDER_STATUS_FROM_BROKER.get(seen.status, status)
        if status in LOST_STATUSES:
            pairs.append((order, partner))
    return pairs


def _copy(original: Order, *, quantity: int, oco_group: str, suffix: str, seen: BrokerOrder | None) -> Order:
    """A new order like `original` (fresh client id), at the broker's current prices when it reports them."""
    price, stop_price = original.price, original.stop_price
    if seen is not None and seen.order_type == original.order_type:
        # A trailing stop moves at the broker: keep where it stands now, not where it started.
        price = seen.price if seen.price is not None else price
        stop_price = seen.stop_price if seen.stop_price is not None else stop_price
    return Order(
        decision_id=original.decision_id,
        signal_id=original.signal_id,
        trader_id=original.trader_id,
        broker_account_id=original.broker_account_id,
        account_id=original.account_id,
        account_name=original.account_name,
        symbol=original.symbol,
        broker_symbol=original.broker_symbol,
        client_id=new_client_id(),
        plan_key=f"{original.plan_key.split('.')[0][:9]}.{suffix}",
        sequence=original.sequence,
        oco_group=oco_group,
        role=original.role,
        action=original.action,
        order_type=original.order_type,
        quantity=quantity,
        price=price,
        stop_price=stop_price,
        trail_distance=original.trail_distance,
    )


def _pair_again(
    pairs: Sequence[tuple[Order, Order]], suffix: str, at_broker: dict[str, BrokerOrder]
) -> list[Order]:
    """Both halves of each broken pair as new orders in a new group: they go out as one OCO pair."""
    fresh = []
    for survivor, lost in pairs:
        group = f"{survivor.oco_group.split('.')[0][:9]}.{suffix}"
        halves = [
            _copy(survivor, quantity=survivor.quantity, oco_group=group, suffix=suffix,
                  seen=at_broker.get(survivor.broker_order_id or "")),
            _copy(lost, quantity=survivor.quantity, oco_group=group, suffix=suffix, seen=None),
        ]  # fmt: skip
        fresh += sorted(halves, key=lambda order: order.role != Order.Role.TAKE_PROFIT)
    return fresh


def _carry_out(log: ReconcileLog, broker: BrokerSnapshot, account_id: str, root: str, repair: Repair) -> None:
    """Cancel the old exits, confirm they are gone, then place the new ones (a dry run only reports)."""
    if log.dry_run:
        for order in repair.cancel:
            log.step(
                Kind.CANCEL_REPLACED,
                f"{repair.why} Would cancel {order_describe(order)} before placing new protection.",
                account_id=account_id,
                symbol=root,
                order=order,
            )
        for order in repair.place:
            log.step(
                Kind.PLACE_PROTECTION,
                f"{repair.why} Would place {order_describe(order)}.",
                account_id=account_id,
                symbol=root,
            )
        return
    for order in repair.cancel:
        try:
            broker.cancel_order(order.broker_order_id or "")
        except (OrderRejected, OrderOutcomeUnknown) as error:
            # The order changed meanwhile (filled, already cancelled): look again next time, never stack.
            described = order_describe(order)
            log.note(f"{described} could not be cancelled ({error.message}); nothing new is placed now.")
            return
    if repair.cancel:
        # A cancel's answer proves nothing: read the orders again; place nothing while an old one works.
        broker.forget()
        now_at_broker = {order.broker_order_id: order for order in broker.list_orders(account_id)}
        for order in repair.cancel:
            seen = now_at_broker.get(order.broker_order_id or "")
            if seen is not None and seen.is_open:
                described = order_describe(order)
                log.note(f"{described} still works after its cancel; nothing is placed until it is gone.")
                return
            status = ORDER_STATUS_FROM_BROKER.get(seen.status) if seen is not None else Order.Status.CANCELLED
            if status == Order.Status.FILLED:
                log.note(
                    f"{order_describe(order)} filled before its cancel; the position is looked at next time."
                )
                return
            Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
                status=Order.Status.CANCELLED,
                error="Cancelled by reconciliation: replaced by new protection.",
                cancel_reason=Order.CancelReason.RECONCILIATION,
            )
            log.step(
                Kind.CANCEL_REPLACED,
                f"{repair.why} Cancelled {order_describe(order)} before placing new protection.",
                account_id=account_id,
                symbol=root,
                order=order,
            )
    with transaction.atomic():
        for order in repair.place:
            order.save(force_insert=True)
    for order in repair.place:
        order.refresh_from_db()
        if order.status != Order.Status.PENDING:
            continue  # sent with its OCO partner
        partner = _pending_partner(order, repair.place)
        sent = order_send(order, broker, oco_partner=partner)
        halves = [sent, Order.objects.get(pk=partner.pk)] if partner else [sent]
        for placed in halves:
            log.step(
                Kind.PLACE_PROTECTION,
                f"{repair.why} Placed {order_describe(placed)}{' as an OCO pair' if partner else ''}. "
                f"{order_outcome(placed)}",
                account_id=account_id,
                symbol=root,
                order=placed,
            )
        if partner and sent.status == Order.Status.REJECTED:
            _stop_alone(log, broker, account_id, root, halves)


def _stop_alone(
    log: ReconcileLog, broker: BrokerSnapshot, account_id: str, root: str, halves: list[Order]
) -> None:
    """After the broker refused a pair that replaced cancelled protection, place its stop on its own.

    The position must not be left without the stop it had. The take-profit does not go alone: with a stop
    that is not its OCO partner, two quick prices could fill both and reverse the position.
    """
    for half in halves:
        if half.role != Order.Role.STOP_LOSS:
            continue
        alone = _copy(
            half, quantity=half.quantity, oco_group=half.oco_group, suffix=secrets.token_hex(3), seen=None
        )
        alone.save(force_insert=True)
        alone = order_send(alone, broker)
        log.step(
            Kind.PLACE_PROTECTION,
            f"The broker refused the pair, so {order_describe(alone)} went out on its own. "
            f"{order_outcome(alone)}",
            account_id=account_id,
            symbol=root,
            order=alone,
        )


def _pending_partner(order: Order, batch: Sequence[Order]) -> Order | None:
    """The other half of `order`'s take-profit/stop pair in the same batch, when it still waits to be sent."""
    if not order.oco_group:
        return None
    for other in batch:
        if (
            other.pk != order.pk
            and other.oco_group == order.oco_group
            and other.role != order.role
            and (other.action, other.quantity) == (order.action, order.quantity)
        ):
            other.refresh_from_db()
            return other if other.status == Order.Status.PENDING else None
    return None
