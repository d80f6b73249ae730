"""Account sync: the broker's orders, fills and positions in; needless protection out; re-plans."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from trading import plans, risk
from trading.brokers import registry
from trading.brokers.base import (
    Broker,
    BrokerError,
    OrderRejected,
)
from trading.errors import RetryLater
from trading.models import (
    BrokerAccount,
    Fill,
    Order,
    Position,
    TraderSubAccount,
)
from trading.selectors import (
    contract_for_symbol,
    recorder_plan_settings,
)
from trading.services.contracts import contract_root
from trading.services.orders import (
    ORDER_STATUS_FROM_BROKER,
    RESTING_ROLES,
    broker_position,
    later_orders_exist,
    new_client_id,
    oco_partner,
    order_submit,
)
from trading.symbols import SymbolError

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What one sync changed."""

    orders_updated: int = 0
    fills_applied: int = 0
    positions_corrected: int = 0
    orders_cancelled: int = 0
    protection_replanned: int = 0


def account_sync(*, account: BrokerAccount, broker: Broker | None = None) -> SyncReport:
    """Bring our orders, fills and positions of a broker account in line with what the broker reports."""
    broker = broker or registry.broker_for_account(account)
    report = SyncReport()
    account_ids = set(account.subaccounts.filter(active=True).values_list("broker_id", flat=True))
    account_ids |= set(
        Position.objects.filter(broker_account=account)
        .exclude(quantity=0)
        .values_list("account_id", flat=True)
    )
    for account_id in sorted(account_ids):
        broker_orders = broker.list_orders(account_id)
        fills = broker.list_fills(account_id)
        positions = broker.list_positions(account_id)
        report.orders_updated += _sync_orders(account, account_id, broker_orders)
        report.fills_applied += _apply_fills(account, account_id, fills)
        report.positions_corrected += _correct_positions(account, account_id, positions)
        report.orders_cancelled += _cancel_needless_protection(account, account_id, broker)
        report.protection_replanned += _average_downs_replan(account, account_id, broker)
    return report


def _cancel_needless_protection(account: BrokerAccount, account_id: str, broker: Broker) -> int:
    """Cancel exits whose one-cancels-other partner filled, and exits and average-downs of a flat position.

    The broker pairs the two exits of a bracket or an OCO order itself; this catches a pair whose cancel it
    missed and exits placed apart. Left working, a stop after its take-profit filled would open a position
    the other way.
    """
    partner_filled = Order.objects.filter(
        decision_id=OuterRef("decision_id"),
        account_id=OuterRef("account_id"),
        oco_group=OuterRef("oco_group"),
        status=Order.Status.FILLED,
    ).exclude(pk=OuterRef("pk"))
    working = Order.objects.filter(
        broker_account=account, account_id=account_id, status=Order.Status.WORKING, role__in=RESTING_ROLES
    )
    needless = list(working.exclude(oco_group="").filter(Exists(partner_filled), decision__isnull=False))
    flat = set(
        Position.objects.filter(broker_account=account, account_id=account_id, quantity=0).values_list(
            "symbol", flat=True
        )
    )
    entering = set(
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            role=Order.Role.ENTRY,
            status__in=(
                Order.Status.PENDING,
                Order.Status.SUBMITTING,
                Order.Status.WORKING,
                Order.Status.UNKNOWN,
            ),
        ).values_list("symbol", flat=True)
    )
    # A flat position with no entry on its way has nothing to protect and nothing to average.
    orphaned = flat - entering
    if orphaned:
        needless += [order for order in working.filter(symbol__in=orphaned) if order not in needless]
    cancelled = 0
    for order in needless:
        try:
            if order.broker_order_id:
                broker.cancel_order(order.broker_order_id)
        except OrderRejected as error:
            logger.info("Order %s was not cancelled: %s", order.pk, error.text)
            continue
        except BrokerError as error:
            logger.warning("Order %s could not be cancelled: %s", order.pk, error.message)
            continue
        cancelled += Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
            status=Order.Status.CANCELLED,
            error="Cancelled: nothing left for it to protect.",
            cancel_reason=Order.CancelReason.NOTHING_TO_PROTECT,
        )
    return cancelled


# Protection re-planned after an average-down filled sorts after the plan's own orders and restored copies.
AVERAGE_DOWN_SEQUENCE = 20_000


def _average_downs_replan(account: BrokerAccount, account_id: str, broker: Broker) -> int:
    """Re-plan the protection of each open position whose latest average-down filled; return orders sent."""
    sent = 0
    for position in Position.objects.filter(broker_account=account, account_id=account_id).exclude(
        quantity=0
    ):
        average_down = (
            Order.objects.select_related("decision__trader__recorder")
            .filter(
                broker_account=account,
                account_id=account_id,
                symbol=position.symbol,
                role=Order.Role.AVERAGE_DOWN,
                status=Order.Status.FILLED,
                decision__isnull=False,
            )
            .order_by("-pk")
            .first()
        )
        if average_down is not None:
            sent += _average_down_replan(broker, average_down, position)
    return sent


def _average_down_plan(average_down: Order, quantity: int, average: Decimal | None) -> plans.OrderPlan | None:
    """Take-profits and stops for the whole position from its average; None when there is nothing to plan."""
    side = risk.Side.LONG if average_down.action == Order.Action.BUY else risk.Side.SHORT
    if average is None or risk.Side.of(quantity) is not side:
        return None  # flat, or no longer the position the average-down grew
    trader = average_down.decision.trader
    link = TraderSubAccount.objects.filter(
        trader=trader, subaccount__broker_id=average_down.account_id
    ).first()
    try:
        return plans.replan_after_average_down(
            side=side,
            quantity=abs(quantity),
            average_price=average,
            contract=contract_for_symbol(trader.recorder.symbol),
            settings=recorder_plan_settings(trader.recorder, trader),
            multiplier=link.multiplier if link is not None else 1,
        )
    except (ValueError, SymbolError) as error:
        logger.warning("Average-down %s: its protection cannot be re-planned: %s", average_down.pk, error)
        return None


def _average_down_replan(broker: Broker, average_down: Order, position: Position) -> int:
    """Cover the position an average-down grew: cancel its exits, then send new ones from the new average.

    The new orders belong to the average-down's decision under plan keys naming it, so a repeat (the next
    sync, a second worker, a crash between steps) finds them made and sends only what is still pending.
    Nothing is sent until every old exit is confirmed gone at the broker: stacked stops could reverse it.
    """
    suffix = f"-a{average_down.pk}"
    ours = Q(decision_id=average_down.decision_id, plan_key__endswith=suffix)
    replanned = Order.objects.filter(ours, account_id=average_down.account_id)
    statuses = set(replanned.values_list("status", flat=True))
    if statuses and Order.Status.PENDING not in statuses:
        return 0  # done; reconciliation owns the protection from here
    if later_orders_exist(average_down):
        return 0  # a later signal planned this position's protection
    if not statuses:
        expected = _average_down_plan(average_down, position.quantity, position.avg_price)
        if expected is None or not expected.intents:
            return 0
    account_id, root = average_down.account_id, average_down.symbol
    old = list(
        Order.objects.filter(
            broker_account_id=average_down.broker_account_id,
            account_id=account_id,
            symbol=root,
            status=Order.Status.WORKING,
            role__in=(Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS),
        ).exclude(ours)
    )
    try:
        for order in old:
            if not order.broker_order_id:
                continue
            try:
                broker.cancel_order(order.broker_order_id)
            except OrderRejected as error:
                # Filled or cancelled already: the next sync records which; the position is read below.
                logger.info("Cancel of order %s refused: %s", order.pk, error.text)
                continue
            Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
                status=Order.Status.CANCELLED,
                error=f"Cancelled: replaced by the protection of average-down order {average_down.pk}.",
                cancel_reason=Order.CancelReason.AVERAGE_DOWN_REPLAN,
            )
        still_open = {item.broker_order_id for item in broker.list_orders(account_id) if item.is_open}
        if still_open & {order.broker_order_id for order in old}:
            logger.warning(
                "Average-down %s: an old exit is still working; nothing new is sent", average_down.pk
            )
            return 0
        quantity, average = broker_position(broker, account_id, root)
    except BrokerError as error:
        # A cancel of unknown outcome: new protection now could stack on the old. The next sync tries again.
        logger.warning("Average-down %s: protection not re-planned yet: %s", average_down.pk, error.message)
        return 0
    if not statuses:
        plan = _average_down_plan(average_down, quantity, average)
        if plan is None:
            return 0
        try:
            with transaction.atomic():
                for number, intent in enumerate(plan.intents):
                    Order.objects.create(
                        decision_id=average_down.decision_id,
                        signal_id=average_down.signal_id,
                        trader_id=average_down.trader_id,
                        broker_account_id=average_down.broker_account_id,
                        account_id=account_id,
                        account_name=average_down.account_name,
                        symbol=root,
                        broker_symbol=average_down.broker_symbol,
                        client_id=new_client_id(),
                        plan_key=f"{intent.key}{suffix}"[:16],
                        sequence=AVERAGE_DOWN_SEQUENCE + number,
                        # Pairs stay paired (sent as one OCO), in groups apart from the plan's own.
                        oco_group=f"a{average_down.pk}-{intent.oco}"[:16] if intent.oco else "",
                        role=intent.role.value,
                        action=intent.action.value,
                        order_type=intent.order_type.value,
                        quantity=intent.quantity,
                        price=intent.price,
                        stop_price=intent.stop_price,
                        trail_distance=intent.trail_distance,
                    )
        except IntegrityError:
            pass  # made by a run alongside this one; sent below if still pending
    pending = list(replanned.filter(status=Order.Status.PENDING).order_by("sequence", "pk"))
    sent = 0
    for order in pending:
        order.refresh_from_db()
        if order.status != Order.Status.PENDING:
            continue  # sent with its OCO partner, or by a run alongside this one
        partner = oco_partner(order, pending)
        try:
            order_submit(order=order, broker=broker, oco_partner=partner)
        except RetryLater as error:
            logger.warning(
                "Average-down %s: protection waits for the broker: %s", average_down.pk, error.message
            )
            break
        sent += 1 if partner is None else 2
    return sent


def _sync_orders(account: BrokerAccount, account_id: str, broker_orders) -> int:
    known = {order.broker_order_id: order for order in broker_orders}
    ours = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        broker_order_id__in=list(known),
        status=Order.Status.WORKING,
    )
    changed = 0
    for order in ours:
        status = ORDER_STATUS_FROM_BROKER.get(known[order.broker_order_id].status)
        if status is not None and status != order.status:
            changed += Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(status=status)
    return changed


def _apply_fills(account: BrokerAccount, account_id: str, fills) -> int:
    if not fills:
        return 0
    seen = set(
        Fill.objects.filter(
            broker_account=account, broker_fill_id__in=[fill.broker_fill_id for fill in fills]
        ).values_list("broker_fill_id", flat=True)
    )
    applied = 0
    contracts = {}
    for fill in sorted(
        (fill for fill in fills if fill.broker_fill_id not in seen),
        key=lambda item: (item.timestamp or timezone.now(), item.broker_fill_id),
    ):
        try:
            root = contract_root(fill.symbol)
            contract = contracts.get(root) or contract_for_symbol(root)
        except SymbolError:
            logger.warning(
                "Fill %s of account %s is in an unknown contract %s",
                fill.broker_fill_id,
                account.pk,
                fill.symbol,
            )
            continue
        contracts[root] = contract
        with transaction.atomic():
            Position.objects.get_or_create(broker_account=account, account_id=account_id, symbol=root)
            position = Position.objects.select_for_update().get(
                broker_account=account, account_id=account_id, symbol=root
            )
            if Fill.objects.filter(broker_account=account, broker_fill_id=fill.broker_fill_id).exists():
                continue
            signed = fill.quantity if fill.action == "Buy" else -fill.quantity
            book = risk.RecorderBook(position.quantity, position.avg_price, position.realized_pnl)
            book, realized = book.fill(signed, fill.price, contract)
            position.quantity, position.avg_price, position.realized_pnl = (
                book.position,
                book.avg_price,
                book.realized_pnl,
            )
            if not position.account_name:
                position.account_name = (
                    account.subaccounts.filter(broker_id=account_id).values_list("name", flat=True).first()
                    or ""
                )
            position.save()
            # Matched by the broker's order id together with the account, never by client id alone.
            order = Order.objects.filter(broker_account=account, broker_order_id=fill.broker_order_id).first()
            filled_at = fill.timestamp or timezone.now()
            Fill.objects.create(
                broker_account=account,
                account_id=account_id,
                order=order,
                broker_fill_id=fill.broker_fill_id,
                broker_order_id=fill.broker_order_id,
                symbol=root,
                action=fill.action,
                quantity=fill.quantity,
                price=fill.price,
                realized_pnl=realized,
                session=risk.session_key(filled_at),
                filled_at=filled_at,
            )
            if order is not None:
                _order_filled(order, fill.quantity, fill.price)
            applied += 1
    return applied


def _order_filled(order: Order, quantity: int, price: Decimal) -> None:
    locked = Order.objects.select_for_update().get(pk=order.pk)
    filled = min(locked.quantity, locked.filled_quantity + quantity)
    previous = locked.filled_quantity
    if locked.avg_fill_price is None or previous == 0:
        average = price
    else:
        average = (
            (locked.avg_fill_price * previous + price * (filled - previous)) / filled if filled else price
        )
    locked.filled_quantity = filled
    locked.avg_fill_price = average.quantize(Decimal("1e-8"))
    if filled >= locked.quantity and locked.status in (
        Order.Status.WORKING,
        Order.Status.UNKNOWN,
        Order.Status.SUBMITTING,
    ):
        locked.status = Order.Status.FILLED
    locked.save(update_fields=["filled_quantity", "avg_fill_price", "status", "updated_at"])


def _correct_positions(account: BrokerAccount, account_id: str, positions) -> int:
    """The broker is the truth for positions: ours take its quantity and average where they differ."""
    truth: dict[str, tuple[int, Decimal | None]] = {}
    for position in positions:
        try:
            root = contract_root(position.symbol)
        except SymbolError:
            continue
        quantity, average = truth.get(root, (0, None))
        truth[root] = (quantity + position.quantity, position.avg_price if average is None else average)
    corrected = 0
    ours = {row.symbol: row for row in Position.objects.filter(broker_account=account, account_id=account_id)}
    for root in set(truth) | {symbol for symbol, row in ours.items() if row.quantity}:
        quantity, average = truth.get(root, (0, None))
        row = ours.get(root)
        if row is not None and row.quantity == quantity and (quantity == 0 or row.avg_price == average):
            continue
        if row is not None and row.quantity == quantity and quantity and average is None:
            continue
        with transaction.atomic():
            Position.objects.get_or_create(broker_account=account, account_id=account_id, symbol=root)
            locked = Position.objects.select_for_update().get(
                broker_account=account, account_id=account_id, symbol=root
            )
            if locked.quantity != quantity:
                logger.warning(
                    "Position of account %s/%s in %s corrected from %s to %s (the broker's)",
                    account.pk,
                    account_id,
                    root,
                    locked.quantity,
                    quantity,
                )
            locked.quantity = quantity
            locked.avg_price = (average if average is not None else locked.avg_price) if quantity else None
            if quantity and locked.avg_price is None:
                continue
            locked.save(update_fields=["quantity", "avg_price", "updated_at"])
            corrected += 1
    return corrected
