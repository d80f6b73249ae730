"""Steps 1 and 2: settle unknown outcomes from the broker's lists; take its statuses, fills, positions."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from trading.brokers.base import OrderStatus as BrokerOrderStatus
from trading.models import (
    BrokerAccount,
    Fill,
    Order,
    Position,
    ReconcileAction,
)
from trading.services.decisions import decision_refresh
from trading.services.orders import (
    ORDER_STATUS_FROM_BROKER,
    RESTING_ROLES,
    new_client_id,
    order_settle,
)
from trading.services.reconciliation.broker import (
    BrokerSnapshot,
    broker_positions,
    order_outcome,
    order_send,
    root_of,
)
from trading.services.reconciliation.record import (
    FLATTEN_BACKOFF,
    IN_FLIGHT_STATUSES,
    UNKNOWN_GRACE,
    Kind,
    ReconcileLog,
    order_describe,
)
from trading.services.sync import account_sync


def unknown_settle(
    log: ReconcileLog, broker: BrokerSnapshot, account: BrokerAccount, account_id: str, now: datetime
) -> None:
    unknown = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        status=Order.Status.UNKNOWN,
        updated_at__lt=now - UNKNOWN_GRACE,
    ).order_by("pk")
    for order in unknown:
        if order.via_liquidation:
            _settle_liquidation(log, broker, account, order)
            continue
        if log.dry_run:
            found = broker.find_order_by_client_id(account_id, order.client_id)
            if found is None:
                reason = (
                    f"The broker has no order {order.client_id}: it would be marked not placed, never resent."
                )
            else:
                reason = (
                    f"The broker holds {order.client_id} as order {found.broker_order_id} "
                    f"({found.raw_status}): its id and status would be adopted."
                )
            log.step(Kind.SETTLE, reason, account_id=account_id, symbol=order.symbol, order=order)
            continue
        settled = order_settle(order_id=order.pk, broker=broker)
        if settled is None or settled.status == Order.Status.UNKNOWN:
            log.note(f"Order {order.pk} ({order.client_id}) is still unknown: the broker could not be asked.")
            continue
        if settled.status == Order.Status.FAILED:
            reason = (
                f"The broker has no order {order.client_id}: it was never placed and is not sent again. "
                "Missing protection is placed again below if the position needs it."
            )
        else:
            reason = (
                f"The broker holds {order.client_id} as order {settled.broker_order_id}: "
                f"adopted as {settled.get_status_display().lower()}."
            )
        log.step(Kind.SETTLE, reason, account_id=account_id, symbol=order.symbol, order=settled)


def _settle_liquidation(
    log: ReconcileLog, broker: BrokerSnapshot, account: BrokerAccount, order: Order
) -> None:
    """A liquidation carries no client id of ours: the position says whether it went through."""
    quantity, _ = broker_positions(broker, order.account_id).get(order.symbol, (0, None))
    broker_order_id = None
    if quantity == 0:
        known = set(
            Order.objects.filter(broker_account=account, broker_order_id__isnull=False).values_list(
                "broker_order_id", flat=True
            )
        )
        closing = next(
            (
                item
                for item in broker.list_orders(order.account_id)
                if item.client_id is None
                and item.order_type == "Market"
                and item.action == order.action
                and item.status == BrokerOrderStatus.FILLED
                and item.broker_order_id not in known
                and root_of(item.symbol) == order.symbol
            ),
            None,
        )
        if closing is not None:
            status, broker_order_id = Order.Status.FILLED, closing.broker_order_id
            reason = f"The position is flat: the liquidation went through as order {broker_order_id}."
        else:
            status = Order.Status.CANCELLED
            reason = "The position is flat and no closing order was found: nothing was left to close."
    else:
        status = Order.Status.FAILED
        reason = f"The broker still holds {quantity:+d} {order.symbol}: the liquidation did not take effect."
    if not log.dry_run:
        updated = Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=status, broker_order_id=broker_order_id, error=reason
        )
        if updated and order.decision_id:
            decision_refresh(order.decision_id)
    log.step(Kind.SETTLE, reason, account_id=order.account_id, symbol=order.symbol, order=order)
    if status == Order.Status.FAILED:
        _liquidate_again(log, broker, account, order)


def _liquidate_again(log: ReconcileLog, broker: BrokerSnapshot, account: BrokerAccount, lost: Order) -> None:
    """Send a close whose liquidation never took effect once more: it closes only what is open.

    Not when a later signal has acted on the position since (its orders decide now), and not twice within
    FLATTEN_BACKOFF.
    """
    where = f"{lost.symbol} on {lost.account_id}"
    later = Order.objects.filter(
        broker_account=account,
        account_id=lost.account_id,
        symbol=lost.symbol,
        pk__gt=lost.pk,
        decision__isnull=False,
    ).exists()
    if later:
        log.note(f"{where}: a later signal acted on the position, so the failed close is not sent again.")
        return
    if ReconcileAction.objects.filter(
        broker_account=account,
        account_id=lost.account_id,
        symbol=lost.symbol,
        kind=Kind.FLATTEN,
        created_at__gte=timezone.now() - FLATTEN_BACKOFF,
    ).exists():
        log.note(f"{where}: the close was sent again less than {FLATTEN_BACKOFF} ago; waiting for it.")
        return
    reason = f"The close of {where} never took effect: its liquidation is sent again."
    if log.dry_run:
        log.step(Kind.FLATTEN, reason, account_id=lost.account_id, symbol=lost.symbol)
        return
    order = Order.objects.create(
        signal_id=lost.signal_id,
        trader_id=lost.trader_id,
        broker_account=account,
        account_id=lost.account_id,
        account_name=lost.account_name,
        symbol=lost.symbol,
        broker_symbol=lost.broker_symbol,
        client_id=new_client_id(),
        plan_key="flatten",
        via_liquidation=True,
        role=Order.Role.EXIT,
        action=lost.action,
        order_type=Order.Type.MARKET,
        quantity=lost.quantity,
    )
    sent = order_send(order, broker)
    log.step(
        Kind.FLATTEN,
        f"{reason} {order_outcome(sent)}",
        account_id=lost.account_id,
        symbol=lost.symbol,
        order=sent,
    )


def account_sync_step(log: ReconcileLog, broker: BrokerSnapshot, account: BrokerAccount) -> None:
    """Run account_sync and record what it changed."""
    working = list(
        Order.objects.filter(broker_account=account, status=Order.Status.WORKING).values_list("pk", flat=True)
    )
    positions = {
        (row.account_id, row.symbol): row.quantity for row in Position.objects.filter(broker_account=account)
    }
    fills_before = Fill.objects.filter(broker_account=account).count()
    account_sync(account=account, broker=broker)
    for order in Order.objects.filter(pk__in=working).exclude(status=Order.Status.WORKING).order_by("pk"):
        if (
            order.status == Order.Status.CANCELLED
            and order.cancel_reason == Order.CancelReason.NOTHING_TO_PROTECT
        ):
            kind = Kind.CANCEL_ORPHAN
            reason = (
                f"Cancelled {order_describe(order)}: nothing left for it to protect "
                "(its position is flat, or the other order of its pair filled)."
            )
        else:
            kind = Kind.ORDER_STATUS
            reason = f"The broker reports {order_describe(order)} as {order.get_status_display().lower()}."
        log.step(kind, reason, account_id=order.account_id, symbol=order.symbol, order=order)
    applied = Fill.objects.filter(broker_account=account).count() - fills_before
    if applied:
        log.step(Kind.FILLS, f"Applied {applied} fill(s) the broker reported.")
    for row in Position.objects.filter(broker_account=account).order_by("account_id", "symbol"):
        before = positions.get((row.account_id, row.symbol), 0)
        if row.quantity != before:
            log.step(
                Kind.POSITION,
                f"{row.symbol} is now {row.quantity:+d} (was {before:+d}), as the broker holds it.",
                account_id=row.account_id,
                symbol=row.symbol,
            )


def account_sync_preview(
    log: ReconcileLog, broker: BrokerSnapshot, account: BrokerAccount, account_id: str
) -> None:
    """What account_sync would change, read-only (a dry run)."""
    at_broker = {order.broker_order_id: order for order in broker.list_orders(account_id)}
    working = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        status=Order.Status.WORKING,
        broker_order_id__in=list(at_broker),
    )
    for order in working:
        status = ORDER_STATUS_FROM_BROKER.get(at_broker[order.broker_order_id].status)
        if status is not None and status != Order.Status.WORKING:
            log.step(
                Kind.ORDER_STATUS,
                f"The broker reports {order_describe(order)} as {Order.Status(status).label.lower()}.",
                account_id=account_id,
                symbol=order.symbol,
                order=order,
            )
    fills = broker.list_fills(account_id)
    seen = set(
        Fill.objects.filter(
            broker_account=account, broker_fill_id__in=[fill.broker_fill_id for fill in fills]
        ).values_list("broker_fill_id", flat=True)
    )
    unseen = [fill for fill in fills if fill.broker_fill_id not in seen]
    if unseen:
        log.step(Kind.FILLS, f"Would apply {len(unseen)} fill(s) the broker reported.", account_id=account_id)
    truth = broker_positions(broker, account_id)
    ours = dict(
        Position.objects.filter(broker_account=account, account_id=account_id).values_list(
            "symbol", "quantity"
        )
    )
    for root in sorted(set(truth) | {symbol for symbol, quantity in ours.items() if quantity}):
        quantity = truth.get(root, (0, None))[0]
        if ours.get(root, 0) != quantity:
            log.step(
                Kind.POSITION,
                f"{root} would become {quantity:+d} (ours says {ours.get(root, 0):+d}), "
                "as the broker holds it.",
                account_id=account_id,
                symbol=root,
            )
    entering = set(
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            role=Order.Role.ENTRY,
            status__in=IN_FLIGHT_STATUSES,
        ).values_list("symbol", flat=True)
    )
    still_open = [
        order
        for order in Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            status=Order.Status.WORKING,
            role__in=RESTING_ROLES,
        ).order_by("pk")
        if order.broker_order_id in at_broker and at_broker[order.broker_order_id].is_open
    ]
    for order in still_open:
        if order.symbol not in truth and order.symbol not in entering:
            log.step(
                Kind.CANCEL_ORPHAN,
                f"Would cancel {order_describe(order)}: its position is flat at the broker.",
                account_id=account_id,
                symbol=order.symbol,
                order=order,
            )
